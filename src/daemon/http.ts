import { Backlog } from "../shared/backlog.ts";
import type { ErrorBody, StreamEvent } from "../shared/api.ts";
import { BangerError, errorMessage, hostDiskFull, isBangerError } from "../shared/errors.ts";
import { MAX_JSON_BODY_BYTES, type FieldType, type Schema } from "../shared/routes.ts";
import { currentScope } from "./request-scope.ts";

export { MAX_EXEC_BODY_BYTES, MAX_JSON_BODY_BYTES, type Schema } from "../shared/routes.ts";

export function json(data: unknown, status = 200): Response {
  return new Response(JSON.stringify(data), { status, headers: { "content-type": "application/json" } });
}
export type { ErrorBody };

/** The envelope body of any error; never a stack trace. */
export function errorBody(e: unknown): ErrorBody {
  // what filled the host's disk says so, wherever it came from (an operation's own says more: hostDiskFull keeps it)
  const full = hostDiskFull(e);
  if (full) e = full;
  if (!isBangerError(e)) return { code: "E_INTERNAL", message: errorMessage(e) };
  return e.undoFailures.length ? { code: e.code, message: e.message, undoFailures: e.undoFailures } : { code: e.code, message: e.message };
}

/** The one error envelope: `{ error: { code, message, undoFailures? } }`. */
export function errorResponse(e: unknown): Response {
  const said = hostDiskFull(e) ?? e;
  return json({ error: errorBody(said) }, isBangerError(said) ? said.httpStatus : 500);
}

/** A value as it may appear in an error message: never a wall of attacker-sized text. */
export function briefValue(v: unknown, max = 60): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s;
}

function typeOk(v: unknown, t: FieldType): boolean {
  switch (t) {
    case "string":
      return typeof v === "string";
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "boolean":
      return typeof v === "boolean";
    case "string[]":
      return Array.isArray(v) && v.every((x) => typeof x === "string");
  }
}

/**
 * A whole body, refused (413) as soon as it passes maxBytes: the server
 * takes bodies of any size (file uploads stream), so a body read whole is
 * capped here, while it arrives, never after it was all buffered.
 */
export async function readCapped(req: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? 0);
  if (declared > maxBytes) throw new BangerError("E_TOO_LARGE", `request body of ${declared} bytes is over the ${maxBytes}-byte limit`);
  const parts: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    for await (const c of req.body) {
      size += c.length;
      if (size > maxBytes) throw new BangerError("E_TOO_LARGE", `request body of over ${maxBytes} bytes is over the ${maxBytes}-byte limit`);
      parts.push(c);
    }
  }
  return Buffer.concat(parts);
}

/** Parse and check a JSON body: malformed JSON, unknown fields and wrong types are 400s a person can act on. */
export async function parseBody<T>(req: Request, schema: Schema, maxBytes = MAX_JSON_BODY_BYTES): Promise<T> {
  const declared = Number(req.headers.get("content-length") ?? 0);
  if (declared > maxBytes) throw new BangerError("E_TOO_LARGE", `request body of ${declared} bytes is over the ${maxBytes}-byte limit`);
  const text = new TextDecoder().decode(await readCapped(req, maxBytes));
  let body: unknown = {};
  if (text.trim().length > 0) {
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new BangerError("E_BAD_REQUEST", `malformed JSON body: ${errorMessage(e)}`);
    }
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) throw new BangerError("E_BAD_REQUEST", "request body must be a JSON object");
  const obj = body as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    // hasOwn, not `in`: "__proto__", "constructor"… are in every object
    if (!Object.hasOwn(schema, key)) throw new BangerError("E_BAD_REQUEST", `unknown field ${briefValue(key)} (allowed: ${Object.keys(schema).join(", ") || "none"})`);
  }
  for (const [key, rule] of Object.entries(schema)) {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (rule.required) throw new BangerError("E_BAD_REQUEST", `missing required field "${key}"`);
      delete obj[key];
      continue;
    }
    if (!typeOk(v, rule.type)) throw new BangerError("E_BAD_REQUEST", `field "${key}" must be ${rule.type}, got ${briefValue(v)}`);
  }
  return obj as T;
}

export type { StreamEvent };

export interface Emitter {
  progress(message: string): void;
  stdout(chunk: Uint8Array, offset?: number): void;
  stderr(chunk: Uint8Array, offset?: number): void;
  /** Any other event of the stream (a watched file's change). */
  event(ev: StreamEvent): void;
  /** Set when the client went away. */
  readonly signal: AbortSignal;
  /**
   * What produces this stream's output (an exec's ExecStreamOptions.flow): paused while the client is more
   * than STREAM_QUEUE_BYTES behind, resumed as it catches up, so a slow reader holds the guest's writer back
   * instead of filling the daemon's memory.
   */
  flow(ctl: { pause(): void; resume(): void }): void;
  /** Resolves once the client has caught up (at once when it is not behind, or has gone): for a producer that pulls (a log read in chunks). */
  caughtUp(): Promise<void>;
}

/** How much of a stream's encoded output may wait for a slow client before its producer is paused. */
export const STREAM_QUEUE_BYTES = 4 << 20;
/** ... and how little must be left before it goes on: not at once, or a client a little slower than the guest pauses and resumes it at every chunk. */
const _STREAM_RESUME_BELOW = 1 << 20;

/**
 * A long operation as an NDJSON stream: progress/output events, then one
 * final `result`, `exit` or `error` event. Errors after the headers went out
 * travel in-band in the same envelope shape.
 */
export function ndjson(req: Request, fn: (emit: Emitter) => Promise<StreamEvent>): Response {
  const enc = new TextEncoder();
  // the stream outlives its route: a bug in it still fails this request, not the daemon
  const scope = currentScope();
  const releaseScope = scope?.hold();
  const abort = new AbortController();
  req.signal.addEventListener("abort", () => abort.abort(), { once: true });
  // a bug that failed this request also stops the work behind it, where that work listens
  scope?.failed.catch(() => abort.abort());
  let closed = false;
  // what waits for the client is the stream's own queue (desiredSize counts down from STREAM_QUEUE_BYTES)
  const backlog = new Backlog(STREAM_QUEUE_BYTES - 1, _STREAM_RESUME_BELOW);
  const waitingBytes = (c: ReadableStreamDefaultController<Uint8Array>) => STREAM_QUEUE_BYTES - (c.desiredSize ?? STREAM_QUEUE_BYTES);
  abort.signal.addEventListener("abort", () => backlog.release(), { once: true });
  const run = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
    const send = (ev: StreamEvent) => {
      if (closed) return;
      try {
        controller.enqueue(enc.encode(JSON.stringify(ev) + "\n"));
      } catch {
        closed = true;
        abort.abort();
        return;
      }
      backlog.at(waitingBytes(controller));
    };
    const emit: Emitter = {
      progress: (message) => send({ type: "progress", message }),
      stdout: (c, offset) => send({ type: "stdout", data: Buffer.from(c).toString("base64"), offset }),
      stderr: (c, offset) => send({ type: "stderr", data: Buffer.from(c).toString("base64"), offset }),
      event: send,
      signal: abort.signal,
      flow: (f) => backlog.flow(f),
      caughtUp: () => backlog.caughtUp(),
    };
    try {
      const work = fn(emit);
      send(await (scope ? scope.race(work) : work));
    } catch (e) {
      send({ type: "error", error: errorBody(e) });
    } finally {
      releaseScope?.();
      if (!closed) {
        closed = true;
        try {
          controller.close();
        } catch {}
      }
    }
  };
  const stream = new ReadableStream<Uint8Array>({
    // not awaited: a stream's pull (below) is not called until its start has returned
    start(controller) {
      // run catches what its work throws; this catch is for a throw of its own (none known)
      run(controller).catch((e: unknown) => controller.error(e));
    },
    // the client took some: what was paused for it goes on once most of it is gone
    pull(controller) {
      backlog.at(waitingBytes(controller));
    },
    cancel() {
      closed = true;
      abort.abort();
    },
  }, { highWaterMark: STREAM_QUEUE_BYTES, size: (chunk) => chunk?.byteLength ?? 0 });
  return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
}
