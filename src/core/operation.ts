import type { Host } from "../host/types.ts";
import { BangerError, errorMessage, hostDiskFull } from "../shared/errors.ts";
import type { VMRecord } from "../shared/model.ts";
import type { Logger } from "../shared/logger.ts";

/** Something made that must be unmade if a later step of the same operation fails. */
export type Undo = () => void | Promise<void>;

export interface ProgressSink {
  (message: string): void;
}

/**
 * One multi-step request (create, start, prepare…): what it works on and
 * the one undo stack. Hooks receive it; a handler defers the undo of what
 * it made right after making it (even before it may fail itself). If any
 * step fails, every undo runs once, in reverse, and the error the caller
 * sees is the first failure with each undo failure attached.
 */
export interface Operation {
  /** What is being done, for logs and messages: "vm start box". */
  readonly name: string;
  /** The VM it works on, when there is one. */
  readonly vm?: VMRecord;
  readonly host: Host;
  readonly log: Logger;
  /** Tell the person waiting what is happening (a progress line). */
  readonly progress: ProgressSink;
  /** Aborted when the person waiting went away. */
  readonly signal: AbortSignal;
  /** Push the undo of something just acquired; runs only if the operation fails, after the undos deferred later. */
  defer(label: string, undo: Undo): void;
}

export interface OperationOptions {
  name: string;
  vm?: VMRecord;
  host: Host;
  log: Logger;
  progress?: ProgressSink;
  signal?: AbortSignal;
}

const _noProgress: ProgressSink = () => {};

/**
 * Run `body` as one operation. On success the deferred undos are dropped.
 * On failure they run once each, last deferred first; an undo that fails is
 * logged (warn) and kept, never thrown; then one error is thrown: the first
 * failure's code and message, with `undoFailures` listing every undo that
 * failed (the original error as its cause).
 */
export async function runOperation<T>(opts: OperationOptions, body: (op: Operation) => Promise<T>): Promise<T> {
  const stack: { label: string; fn: Undo }[] = [];
  let open = true;
  const op: Operation = {
    name: opts.name,
    vm: opts.vm,
    host: opts.host,
    log: opts.log,
    progress: opts.progress ?? _noProgress,
    signal: opts.signal ?? new AbortController().signal,
    defer(label, fn) {
      // deferred after the operation ended (a stray promise): nothing would ever run it, so say so
      if (!open) return opts.log.warn(`${opts.name}: undo "${label}" deferred after the operation ended; it will not run`);
      stack.push({ label, fn });
    },
  };
  try {
    const out = await body(op);
    open = false;
    return out;
  } catch (e) {
    open = false;
    // nobody is left to read the error: the daemon log is where it shows
    if (op.signal.aborted) opts.log.info(`${opts.name}: stopped, its requester went away (${errorMessage(e).split("\n")[0]}); undoing it`);
    const failures: string[] = [];
    // reverse order so changes unwind like defer
    for (let item = stack.pop(); item; item = stack.pop()) {
      try {
        await item.fn();
      } catch (u) {
        const line = `${item.label}: ${errorMessage(u).split("\n")[0]}`;
        failures.push(line);
        opts.log.warn(`${opts.name}: undo ${line}`);
      }
    }
    throw operationError(hostDiskFull(e, { name: opts.name, undone: failures.length === 0 }) ?? e, failures);
  }
}

/** The first failure, as a BangerError carrying the undo failures (the error itself when there are none). */
export function operationError(e: unknown, undoFailures: string[]): unknown {
  if (undoFailures.length === 0) return e;
  const code = e instanceof BangerError ? e.code : "E_INTERNAL";
  const all = [...(e instanceof BangerError ? e.undoFailures : []), ...undoFailures];
  return new BangerError(code, errorMessage(e), { cause: e, undoFailures: all });
}

/** The same operation seen by one plugin: its undo labels name the plugin and hook ("net-tap:vm:start:before: tap"). */
export function labelledOperation(op: Operation, prefix: string): Operation {
  return {
    name: op.name,
    vm: op.vm,
    host: op.host,
    log: op.log,
    progress: op.progress,
    signal: op.signal,
    defer: (label, fn) => op.defer(`${prefix}: ${label}`, fn),
  };
}
