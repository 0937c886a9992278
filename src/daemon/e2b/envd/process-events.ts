import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BangerError, errorMessage, type ErrorCode } from "../../../shared/errors.ts";
import type { GuestSession } from "../../../shared/model.ts";
import { ProcessEventSchema, type ProcessEvent } from "../gen/process/process_pb.ts";
import { EnvdUserError } from "./user.ts";

/** What a process stream carries, as protobuf messages. */
export function startEvent(pid: number): ProcessEvent {
  return create(ProcessEventSchema, { event: { case: "start", value: { pid } } });
}

export function dataEvent(stream: "stdout" | "stderr" | "pty", data: Uint8Array): ProcessEvent {
  return create(ProcessEventSchema, { event: { case: "data", value: { output: { case: stream, value: data } } } });
}

export function keepaliveEvent(): ProcessEvent {
  return create(ProcessEventSchema, { event: { case: "keepalive", value: {} } });
}

// bash reports a death by signal n as 128+n; envd (Go) reports such a process as "signal: …", exit code -1
const _SIGNALED: Record<number, string> = { 129: "hangup", 130: "interrupt", 137: "killed", 143: "terminated" };

/** The end of a session as envd tells it: exit code, whether it exited on its own, Go's status words. */
export function endEvent(s: GuestSession): ProcessEvent {
  const code = s.exitCode;
  const signaled = code !== null ? _SIGNALED[code] : undefined;
  let value: { exitCode: number; exited: boolean; status: string; error?: string };
  if (code === null) {
    value = { exitCode: -1, exited: false, status: s.status, error: s.launchMessage || `process ended without an exit code (${s.status})` };
  } else if (signaled) {
    value = { exitCode: -1, exited: false, status: `signal: ${signaled}` };
  } else {
    value = { exitCode: code, exited: true, status: `exit status ${code}` };
  }
  return create(ProcessEventSchema, { event: { case: "end", value } });
}

const _CODES: Partial<Record<ErrorCode, Code>> = {
  E_USAGE: Code.InvalidArgument,
  E_BAD_NAME: Code.InvalidArgument,
  E_BAD_REQUEST: Code.InvalidArgument,
  E_NOT_FOUND: Code.NotFound,
  E_VM_NOT_FOUND: Code.NotFound,
  E_SESSION_NOT_FOUND: Code.NotFound,
  E_STATE: Code.FailedPrecondition,
  E_TIMEOUT: Code.DeadlineExceeded,
  E_PERMISSION: Code.PermissionDenied,
};

/** A banger error as the Connect error the SDK maps (NotFound → false from kill, InvalidArgument → InvalidArgumentError, …). */
export function toConnectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  // envd's answer to a user it cannot act as: the SDK's AuthenticationError
  if (e instanceof EnvdUserError) return new ConnectError(e.message, Code.Unauthenticated);
  if (e instanceof BangerError) return new ConnectError(e.message, _CODES[e.code] ?? Code.Internal);
  return new ConnectError(errorMessage(e), Code.Internal);
}

/**
 * Events pushed from callbacks, pulled by a server stream: ends after close(),
 * throws what fail() was given, and stops (with the abort's reason) when the
 * call's signal aborts.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private readonly _items: T[] = [];
  private _done = false;
  private _error: unknown = null;
  private _wake: (() => void) | null = null;

  constructor(private readonly _signal?: AbortSignal) {
    _signal?.addEventListener("abort", () => this._poke(), { once: true });
  }

  push(item: T): void {
    if (this._done) return;
    this._items.push(item);
    this._poke();
  }

  close(): void {
    this._done = true;
    this._poke();
  }

  fail(e: unknown): void {
    if (this._done) return;
    this._error = e;
    this._done = true;
    this._poke();
  }

  private _poke(): void {
    const w = this._wake;
    this._wake = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this._items.length > 0) {
        yield this._items.shift()!;
        continue;
      }
      if (this._error !== null) throw this._error;
      if (this._done) return;
      if (this._signal?.aborted) throw ConnectError.from(this._signal.reason);
      await new Promise<void>((r) => (this._wake = r));
    }
  }
}
