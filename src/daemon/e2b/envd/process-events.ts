import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Backlog, type FlowControl } from "../../../shared/backlog.ts";
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

/** How much output may wait for an E2B client that reads slowly before the process's output is held in the guest. */
export const EVENT_BACKLOG_BYTES = 4 << 20;

/**
 * Events pushed from callbacks, pulled by a server stream: ends after close(),
 * throws what fail() was given, and stops (with the abort's reason) when the
 * call's signal aborts. The bytes pushed and not pulled yet are counted: past
 * EVENT_BACKLOG_BYTES the producers given to flow() are paused and caughtUp()
 * waits, until the client has taken most of it.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private readonly _items: Array<{ item: T; bytes: number }> = [];
  private readonly _backlog = new Backlog(EVENT_BACKLOG_BYTES);
  private _done = false;
  private _error: unknown = null;
  private _wake: (() => void) | null = null;

  constructor(private readonly _signal?: AbortSignal) {
    _signal?.addEventListener(
      "abort",
      () => {
        this._backlog.release();
        this._poke();
      },
      { once: true },
    );
  }

  /** `bytes`: how much of the client's reading this item stands for (its output's length). */
  push(item: T, bytes = 0): void {
    if (this._done) return;
    this._items.push({ item, bytes });
    this._backlog.added(bytes);
    this._poke();
  }

  /** What produces the output: paused while the client is behind. */
  flow(ctl: FlowControl): void {
    this._backlog.flow(ctl);
  }

  /** Resolves once the client has caught up (at once when it is not behind): for a producer that pulls. */
  caughtUp(): Promise<void> {
    return this._backlog.caughtUp();
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
    try {
      for (;;) {
        const next = this._items.shift();
        if (next) {
          this._backlog.taken(next.bytes);
          yield next.item;
          continue;
        }
        if (this._error !== null) throw this._error;
        if (this._done) return;
        if (this._signal?.aborted) throw ConnectError.from(this._signal.reason);
        await new Promise<void>((r) => (this._wake = r));
      }
    } finally {
      // the client is gone or the stream ended: nothing waits for it any more
      this._backlog.release();
    }
  }
}
