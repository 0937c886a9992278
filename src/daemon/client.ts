import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync } from "node:fs";
import { BangerError, ERROR_CODES, type ErrorCode } from "../core/errors.ts";
import { daemonPaths, type DaemonPaths } from "../core/paths.ts";
import { createProcs } from "../host/procs.ts";
import { FULL_VERSION } from "../version.ts";
import { refuseForeign } from "./owner.ts";
import type { StreamEvent } from "./http.ts";

/** What the user sees when the daemon went away in the middle of their request (killed, crashed, restarted). */
export const DAEMON_DROPPED_MESSAGE = "the daemon stopped while handling this request (banger daemon logs)";

/** The connection was made and then cut: the daemon died or dropped us mid-request. */
function droppedMidRequest(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code ?? "";
  return code === "ECONNRESET" || code === "EPIPE" || code === "ERR_STREAM_PREMATURE_CLOSE";
}

/** Any transport error of an answer being read becomes the one line a person can act on. */
export async function readingAnswer<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (droppedMidRequest(e)) throw new BangerError("E_DAEMON", DAEMON_DROPPED_MESSAGE, { cause: e });
    throw e;
  }
}

/** How often ensure() starts a daemon again when the one it started exited at once. */
const MAX_RESPAWNS = 3;

export interface Health {
  version: string;
  pid: number;
  home: string;
  startedAt: string;
  reconcile: unknown;
}

/** How to start ourselves: the compiled binary is its own daemon; from source, bun runs the entry file. */
export function selfCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
  return compiled ? [process.execPath] : [process.execPath, Bun.main];
}

export class DaemonClient {
  readonly paths: DaemonPaths;
  constructor(home: string) {
    this.paths = daemonPaths(home);
  }

  async fetch(method: string, path: string, body?: unknown, signal?: AbortSignal, raw?: Uint8Array): Promise<Response> {
    try {
      return await fetch(`http://banger${path}`, {
        method,
        unix: this.paths.socket,
        headers: body !== undefined ? { "content-type": "application/json" } : raw ? { "content-type": "application/octet-stream" } : undefined,
        body: body !== undefined ? JSON.stringify(body) : raw,
        signal,
      } as RequestInit);
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      if (code === "EACCES" || code === "EPERM") {
        throw new BangerError("E_DAEMON", `no permission to talk to the daemon socket ${this.paths.socket} (owned by another user?)`);
      }
      if (droppedMidRequest(e)) throw new BangerError("E_DAEMON", DAEMON_DROPPED_MESSAGE, { cause: e });
      throw new BangerError("E_DAEMON", `daemon not reachable at ${this.paths.socket}: ${code || (e as Error).message}`);
    }
  }

  /** JSON request; a non-2xx answer becomes a BangerError with the daemon's code and message. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.fetch(method, path, body);
    const text = await readingAnswer(res.text());
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      throw new BangerError("E_DAEMON", `daemon sent a non-JSON answer (${res.status}): ${text.slice(0, 200)}`);
    }
    if (!res.ok) throw toError(data, res.status);
    return data as T;
  }

  /** NDJSON stream of events; the final event is returned, earlier ones go to onEvent. */
  async stream(method: string, path: string, body: unknown, onEvent: (ev: StreamEvent) => void, signal?: AbortSignal): Promise<StreamEvent> {
    const res = await this.fetch(method, path, body, signal);
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
        else onEvent(ev);
      }
    }
    if (!last) throw new BangerError("E_DAEMON", DAEMON_DROPPED_MESSAGE);
    if (last.type === "error") throw toError(last, 500);
    return last;
  }

  async health(timeoutMs = 1000): Promise<Health | null> {
    if (!existsSync(this.paths.socket)) return null;
    try {
      const res = await this.fetch("GET", "/v1/health", undefined, AbortSignal.timeout(timeoutMs));
      if (!res.ok) return null;
      return (await res.json()) as Health;
    } catch (e) {
      if (e instanceof BangerError && /permission/.test(e.message)) throw e;
      return null;
    }
  }

  /** Make sure a daemon of *this* build answers: start one (detached) or replace one from another build. */
  async ensure(opts: { onStart?: (why: string) => void } = {}): Promise<Health> {
    refuseForeign(this.paths.home, "state dir", { follow: true });
    refuseForeign(this.paths.socket, "daemon socket");
    let h = await this.health();
    if (h && h.version === FULL_VERSION) return h;
    if (h) {
      opts.onStart?.(`replacing daemon ${h.version} with ${FULL_VERSION}`);
      await this.fetch("POST", "/v1/shutdown").catch(() => {});
      await this.waitGone(h.pid, 15_000);
    } else {
      opts.onStart?.("starting daemon");
    }
    mkdirSync(this.paths.home, { recursive: true, mode: 0o700 });
    const [cmd, ...args] = selfCommand();
    // execa is loaded only here: importing it up front costs every command ~20 ms of start-up
    const { createExec } = await import("../host/exec.ts");
    const spawn = () => createExec().spawnDetached(cmd!, [...args, "daemon"], { logPath: this.paths.log, env: process.env });
    let pid = await spawn();
    let respawns = 0;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      h = await this.health();
      if (h && h.version === FULL_VERSION) return h;
      // A daemon that is already gone lost the race for the lock to one still shutting down
      // (`daemon stop` returns once the socket is gone): start another rather than wait out the deadline.
      if (!h && !(await createProcs().info(pid))) {
        if (++respawns > MAX_RESPAWNS) {
          throw new BangerError("E_DAEMON", `the daemon exited at start ${respawns} times: ${lastLine(this.paths.log)} (see ${this.paths.log})`);
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
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      // a zombie (exited, not yet reaped by its parent) counts as gone
      if (!(await createProcs().info(pid))) return;
      await Bun.sleep(25);
    }
    throw new BangerError("E_DAEMON", `old daemon (pid ${pid}) did not exit`);
  }
}

/** The last non-empty line of a log file (its tail only), for an error message. */
function lastLine(path: string): string {
  try {
    const fd = openSync(path, "r");
    try {
      const size = fstatSync(fd).size;
      const buf = Buffer.alloc(Math.min(size, 4096));
      readSync(fd, buf, 0, buf.length, size - buf.length);
      return buf.toString("utf8").trim().split("\n").at(-1)?.trim() || "(empty log)";
    } finally {
      closeSync(fd);
    }
  } catch {
    return "(no log)";
  }
}

function toError(data: unknown, status: number): BangerError {
  const err = (data as { error?: { code?: string; message?: string; undoFailures?: unknown } }).error;
  const code = (err?.code && err.code in ERROR_CODES ? err.code : status >= 500 ? "E_DAEMON" : "E_BAD_REQUEST") as ErrorCode;
  const undoFailures = Array.isArray(err?.undoFailures) ? err.undoFailures.map(String) : [];
  return new BangerError(code, err?.message ?? `daemon answered ${status}`, { undoFailures });
}

