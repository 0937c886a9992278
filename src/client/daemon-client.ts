// No node:fs (nor anything that loads it, src/host/fs.ts included) up here: this module is on every command's hot path,
// and node:fs costs a compiled `banger vm list` about 1 ms of its ~5. The slow paths import src/host/fs.ts lazily.
import { BangerError, ERROR_CODES, type ErrorCode } from "../shared/errors.ts";
import { daemonPaths, type DaemonPaths } from "../shared/paths.ts";
import { nowMs } from "../host/clock.ts";
import { environ } from "../host/config.ts";
import { mark } from "../host/profile.ts";
import { FULL_VERSION, VERSION_HEADER } from "../version.ts";
import { refuseForeignAsync, refuseOwner } from "../host/owner.ts";
import type { Health, StreamEvent } from "../shared/api.ts";
import { daemonRequest, takeEarly } from "./early.ts";
import { requestPath, routes, type JsonOf, type JsonRoute, type RawRoute, type RequestArgs, type RequestOf, type RouteDef, type RouteName, type StreamOf, type StreamRoute } from "../shared/routes.ts";

export type { Health };

/** What the user sees when the daemon went away in the middle of their request (killed, crashed, restarted). */
export const DAEMON_DROPPED_MESSAGE = "the daemon stopped while handling this request (banger daemon logs)";

/** The connection was made and then cut: the daemon died or dropped us mid-request. */
function droppedMidRequest(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code ?? "";
  return code === "ECONNRESET" || code === "EPIPE" || code === "ERR_STREAM_PREMATURE_CLOSE";
}

/** Any transport error of an answer being read becomes the one line a person can act on. */
async function readingAnswer<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (droppedMidRequest(e)) throw new BangerError("E_DAEMON", DAEMON_DROPPED_MESSAGE, { cause: e });
    throw e;
  }
}

/** How often ensure() starts a daemon again when the one it started exited at once. */
const MAX_RESPAWNS = 3;

/** How to start ourselves: the compiled binary is its own daemon; from source, bun runs the entry file. */
export function selfCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
  return compiled ? [process.execPath] : [process.execPath, Bun.main];
}

/** A bare read: sending it twice, or to a socket not yet known to be ours, does nothing and tells nothing. */
function _idempotent(method: string, body: unknown, raw: Uint8Array | undefined): boolean {
  return (method === "GET" || method === "HEAD") && body === undefined && raw === undefined;
}

/** Method, path (with parameters and query) and body of a request to a declared route. */
function _request<K extends RouteName>(name: K, req: RequestOf<K> | undefined) {
  const def = routes[name];
  const r = (req ?? {}) as { params?: Record<string, string>; query?: Record<string, string | number | boolean | undefined>; body?: unknown; raw?: Uint8Array };
  return { method: def.method, path: requestPath(def, r), body: r.body, raw: r.raw };
}

/** Why a first attempt at a request may be sent again after ensure(): it was never carried out. */
type Attempt = { res: Response } | { retry: BangerError };

export class DaemonClient {
  readonly paths: DaemonPaths;
  private ownerChecked = false;
  private ensuring: Promise<Health> | null = null;
  constructor(
    home: string,
    private readonly opts: { onStart?: (why: string) => void } = {},
  ) {
    this.paths = daemonPaths(home);
  }

  /**
   * One request, the version handshake riding on it: our FULL_VERSION goes in
   * a header and the answer carries the daemon's. When no daemon listens
   * (no socket, refused) or one of another build refused the request unread,
   * ensure() starts or replaces it and the request is sent once more. Nothing
   * that may have reached a daemon's handler is ever sent twice.
   */
  async fetch(method: string, path: string, body?: unknown, signal?: AbortSignal, raw?: Uint8Array): Promise<Response> {
    const bareRead = _idempotent(method, body, raw);
    // sent as the process started (src/client/early.ts): the same request, already on its way
    const early = bareRead && !signal ? takeEarly(this.paths.socket, method, path) : null;
    const earlyOwner = early?.owner.then((uid) => refuseOwner(this.paths.socket, "daemon socket", uid));
    // awaited below unless this client checked already: handled either way
    earlyOwner?.catch(() => {});
    const first = await this.ownerCheckedFirst(bareRead, () => this.attempt(method, path, body, signal, raw, early?.res), earlyOwner);
    if ("res" in first) return first.res;
    await this.ensure();
    const second = await this.attempt(method, path, body, signal, raw);
    if ("res" in second) return second.res;
    throw second.retry;
  }

  /**
   * The socket must be ours before anything it answers is used, and before
   * anything but a bare read is sent to it: a GET without a body tells its
   * listener nothing, so it goes out while the owner check runs (an async
   * stat waits its turn on a busy machine; P1 in bench/results.md).
   */
  private async ownerCheckedFirst(bareRead: boolean, send: () => Promise<Attempt>, started?: Promise<void>): Promise<Attempt> {
    if (this.ownerChecked) return send();
    const check = started ?? refuseForeignAsync(this.paths.socket, "daemon socket");
    if (!bareRead) {
      await check;
      this.ownerChecked = true;
      return send();
    }
    const sent = send();
    try {
      await check;
    } catch (e) {
      // not ours: say so now, whether or not (or whenever) its listener answers; an answer is dropped unread
      void sent.then((a) => ("res" in a ? a.res.body?.cancel() : undefined)).catch(() => {});
      throw e;
    }
    this.ownerChecked = true;
    return sent;
  }

  private async attempt(method: string, path: string, body: unknown, signal: AbortSignal | undefined, raw: Uint8Array | undefined, sent?: Promise<Response>): Promise<Attempt> {
    let res: Response;
    try {
      res = await this.send(method, path, { body, signal, raw, versioned: true, sent });
    } catch (e) {
      // not reachable (no socket, refused…): the request never left, so it may go again;
      // cut before an answer (a daemon killed a moment ago): only a read may be asked again
      if (e instanceof BangerError && e.message.startsWith("daemon not reachable")) return { retry: e };
      if (e instanceof BangerError && e.message === DAEMON_DROPPED_MESSAGE && _idempotent(method, body, raw)) return { retry: e };
      throw e;
    }
    const theirs = res.headers.get(VERSION_HEADER);
    if (theirs === FULL_VERSION) return { res };
    if (theirs !== null) {
      // a daemon of another build refused it unread (E_DAEMON_VERSION): replace it, resend
      await res.body?.cancel().catch(() => {});
      return { retry: new BangerError("E_DAEMON_VERSION", `the daemon (${theirs}) is not of this build (${FULL_VERSION})`) };
    }
    // No header at all: a daemon from before the handshake moved onto requests; it has carried
    // the request out. A read may be asked again of its replacement; anything else stands as answered.
    if (_idempotent(method, body, raw)) {
      await res.body?.cancel().catch(() => {});
      return { retry: new BangerError("E_DAEMON_VERSION", `the daemon is of an older build than ${FULL_VERSION}`) };
    }
    return { res };
  }

  /** The request itself; transport failures become one-line BangerErrors. */
  private async send(
    method: string,
    path: string,
    o: { body?: unknown; signal?: AbortSignal; raw?: Uint8Array | ReadableStream<Uint8Array>; versioned?: boolean; sent?: Promise<Response> } = {},
  ): Promise<Response> {
    const contentType = o.body !== undefined ? "application/json" : o.raw ? "application/octet-stream" : undefined;
    try {
      return await (o.sent ?? daemonRequest(this.paths.socket, method, path, { body: o.body !== undefined ? JSON.stringify(o.body) : o.raw, contentType, signal: o.signal, versioned: o.versioned }));
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      if (code === "EACCES" || code === "EPERM") {
        throw new BangerError("E_DAEMON", `no permission to talk to the daemon socket ${this.paths.socket} (owned by another user?)`);
      }
      if (droppedMidRequest(e)) throw new BangerError("E_DAEMON", DAEMON_DROPPED_MESSAGE, { cause: e });
      if (o.signal?.aborted) throw e;
      throw new BangerError("E_DAEMON", `daemon not reachable at ${this.paths.socket}: ${code || (e as Error).message}`);
    }
  }

  /** Ask the daemon to shut down, whatever its build (unversioned, so never refused). */
  async shutdown(): Promise<void> {
    const res = await this.send(routes.shutdown.method, routes.shutdown.path);
    await res.body?.cancel().catch(() => {});
  }

  /** A route that answers JSON: the answer typed as the route declares it; a non-2xx answer becomes a BangerError with the daemon's code and message. */
  async call<K extends JsonRoute>(name: K, ...[req]: RequestArgs<K>): Promise<JsonOf<K>> {
    const { method, path, body, raw } = _request(name, req);
    const res = await this.fetch(method, path, body, undefined, raw);
    mark("answered (owner check + request)");
    const text = await readingAnswer(res.text());
    mark("body read");
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      throw new BangerError("E_DAEMON", `daemon sent a non-JSON answer (${res.status}): ${text.slice(0, 200)}`);
    }
    if (!res.ok) throw toError(data, res.status);
    // the one place the wire is trusted to match the table: the daemon's handlers are typed from it
    return data as JsonOf<K>;
  }

  /** A route that answers raw bytes (a patch), exactly as sent; an error answer becomes a BangerError. */
  async raw<K extends RawRoute>(name: K, ...[req]: RequestArgs<K>): Promise<Uint8Array> {
    const { method, path, body, raw } = _request(name, req);
    const res = await this.fetch(method, path, body, undefined, raw);
    const bytes = new Uint8Array(await readingAnswer(res.arrayBuffer()));
    if (!res.ok) {
      let data: unknown = {};
      try {
        data = JSON.parse(new TextDecoder().decode(bytes));
      } catch {}
      throw toError(data, res.status);
    }
    return bytes;
  }

  /** A raw route's answer as a stream (a file, a tar), read from the daemon as fast as the caller reads it; an error answer becomes a BangerError. */
  async download<K extends RawRoute>(name: K, ...[req]: RequestArgs<K>): Promise<ReadableStream<Uint8Array>> {
    const { method, path, body, raw } = _request(name, req);
    const res = await this.fetch(method, path, body, undefined, raw);
    if (!res.ok) throw toError(await _errorData(res), res.status);
    return res.body ?? new ReadableStream({ start: (c) => c.close() });
  }

  /**
   * A JSON route whose request body is a stream (a file, a tar): sent once,
   * to a daemon of this build made sure of first, since a stream cannot be
   * sent a second time.
   */
  async upload<K extends JsonRoute>(name: K, req: Omit<RequestOf<K>, "raw">, body: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<JsonOf<K>> {
    const { method, path } = _request(name, req as RequestOf<K>);
    await this.ensure();
    const res = await this.send(method, path, { raw: body, signal, versioned: true });
    const data = await _errorData(res);
    if (!res.ok) throw toError(data, res.status);
    return data as JsonOf<K>;
  }

  /** A route that answers an NDJSON stream: earlier events go to onEvent, the final one is returned (an error event is thrown). */
  /** A streaming route's events to `onEvent`, in order; one that returns a promise (its output is behind) is awaited before the next is read. */
  async stream<K extends StreamRoute>(name: K, req: RequestOf<K>, onEvent: (ev: StreamEvent) => void | Promise<void>, signal?: AbortSignal): Promise<StreamOf<K>> {
    const { method, path, body, raw } = _request(name, req);
    const res = await this.fetch(method, path, body, signal, raw);
    if (!res.ok) {
      const text = await readingAnswer(res.text());
      let data: unknown = {};
      try {
        data = JSON.parse(text);
      } catch {}
      throw toError(data, res.status);
    }
    let last: StreamEvent | null = null;
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await readingAnswer(reader.read());
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as StreamEvent;
        if (ev.type === "result" || ev.type === "exit" || ev.type === "error") last = ev;
        else {
          const behind = onEvent(ev);
          if (behind) await behind;
        }
      }
    }
    if (!last) throw new BangerError("E_DAEMON", DAEMON_DROPPED_MESSAGE);
    if (last.type === "error") throw toError(last, 500);
    return last as StreamOf<K>;
  }

  /**
   * A read for shell completion: only a daemon already up is asked (none is
   * started or replaced), whatever its build, with a short deadline; null
   * when none answers, or its socket is not ours.
   */
  async peek<K extends JsonRoute>(name: K, req?: RequestOf<K>, timeoutMs = 500): Promise<JsonOf<K> | null> {
    const def: RouteDef = routes[name];
    if (def.method !== "GET") throw new Error(`peek is for reads: ${name} is ${def.method}`);
    try {
      await refuseForeignAsync(this.paths.socket, "daemon socket");
      const res = await this.send(def.method, requestPath(def, req as { params?: Record<string, string> }), { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        return null;
      }
      return (await res.json()) as JsonOf<K>;
    } catch {
      return null;
    }
  }

  /** GET /v1/health of whatever daemon answers (unversioned); null when none does. */
  async health(timeoutMs = 1000): Promise<Health | null> {
    if (!(await Bun.file(this.paths.socket).stat().then(() => true, () => false))) return null;
    try {
      const res = await this.send(routes.health.method, routes.health.path, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) return null;
      return (await res.json()) as Health;
    } catch (e) {
      if (e instanceof BangerError && /permission/.test(e.message)) throw e;
      return null;
    }
  }

  /** Make sure a daemon of *this* build answers: start one (detached) or replace one from another build. */
  ensure(): Promise<Health> {
    // concurrent callers (attach's output pumps and its sender) share one check/start
    this.ensuring ??= this._ensure().finally(() => (this.ensuring = null));
    return this.ensuring;
  }

  private async _ensure(): Promise<Health> {
    await refuseForeignAsync(this.paths.home, "state dir");
    await refuseForeignAsync(this.paths.socket, "daemon socket");
    this.ownerChecked = true;
    const opts = this.opts;
    let h = await this.health();
    if (h && h.version === FULL_VERSION) return h;
    if (h) {
      opts.onStart?.(`replacing daemon ${h.version} with ${FULL_VERSION}`);
      await this.shutdown().catch(() => {});
      await this.waitGone(h.pid, 15_000);
    } else {
      opts.onStart?.("starting daemon");
    }
    const { createFS } = await import("../host/fs.ts");
    await createFS().mkdirp(this.paths.home, 0o700);
    const [cmd, ...args] = selfCommand();
    // execa is loaded only here: importing it up front costs every command ~20 ms of start-up
    const { createExec } = await import("../host/exec.ts");
    const { createProcs } = await import("../host/procs.ts");
    const spawn = () => createExec().spawnDetached(cmd!, [...args, "daemon"], { logPath: this.paths.log, env: environ() });
    let pid = await spawn();
    let respawns = 0;
    const deadline = nowMs() + 15_000;
    while (nowMs() < deadline) {
      h = await this.health();
      if (h && h.version === FULL_VERSION) return h;
      // A daemon that is already gone lost the race for the lock to one still shutting down
      // (`daemon stop` returns once the socket is gone): start another rather than wait out the deadline.
      if (!h && !(await createProcs().info(pid))) {
        if (++respawns > MAX_RESPAWNS) {
          throw new BangerError("E_DAEMON", `the daemon exited at start ${respawns} times: ${await lastLine(this.paths.log)} (see ${this.paths.log})`);
        }
        await Bun.sleep(100 * respawns);
        pid = await spawn();
      }
      // short: auto-start is on the critical path of the first command
      await Bun.sleep(10);
    }
    throw new BangerError("E_DAEMON", `the daemon did not start within 15 s (see ${this.paths.log})`);
  }

  private async waitGone(pid: number, timeoutMs: number): Promise<void> {
    const { createProcs } = await import("../host/procs.ts");
    const deadline = nowMs() + timeoutMs;
    while (nowMs() < deadline) {
      // a zombie (exited, not yet reaped by its parent) counts as gone
      if (!(await createProcs().info(pid))) return;
      await Bun.sleep(25);
    }
    throw new BangerError("E_DAEMON", `old daemon (pid ${pid}) did not exit`);
  }
}

/** The last non-empty line of a log file (its tail only), for an error message. */
async function lastLine(path: string): Promise<string> {
  const { createFS } = await import("../host/fs.ts");
  const fs = createFS();
  try {
    const size = (await fs.stat(path))?.size;
    if (size === undefined) return "(no log)";
    const len = Math.min(size, 4096);
    const text = new TextDecoder().decode(await fs.readRange(path, size - len, len));
    return text.trim().split("\n").at(-1)?.trim() || "(empty log)";
  } catch {
    return "(no log)";
  }
}

/** An answer's JSON body ({} when it has none or is not JSON: the status then speaks for it). */
async function _errorData(res: Response): Promise<unknown> {
  const text = await readingAnswer(res.text());
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    return {};
  }
}

function toError(data: unknown, status: number): BangerError {
  const err = (data as { error?: { code?: string; message?: string; undoFailures?: unknown } } | null)?.error;
  const code = (err?.code && err.code in ERROR_CODES ? err.code : status >= 500 ? "E_DAEMON" : "E_BAD_REQUEST") as ErrorCode;
  const undoFailures = Array.isArray(err?.undoFailures) ? err.undoFailures.map(String) : [];
  return new BangerError(code, err?.message ?? `daemon answered ${status}`, { undoFailures });
}

