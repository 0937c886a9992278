/**
 * A bare read sent the moment the process starts, before the CLI's modules
 * load: the daemon answers (and the socket's owner is checked) while they do,
 * so a `vm list` pays for the round trip or for loading, not both, and
 * `vm list --json` prints a plain answer without loading the CLI at all (P1
 * in bench/results.md). Kept light: what it imports, every early read loads.
 *
 * It asks nothing DaemonClient would not: a GET without a body tells its
 * listener nothing, so like DaemonClient's own bare reads it goes out while
 * the owner check runs, and DaemonClient uses the answer only once the check
 * has passed, only for the same socket, method and path, and only once. A
 * failure (no daemon, another build) is handled as DaemonClient's own first
 * attempt would be: it starts or replaces the daemon and asks again.
 */
import { environ } from "../host/config.ts";
import { refuseForeignAsync } from "../host/owner.ts";
import { daemonPaths, resolveHome } from "../shared/paths.ts";
import { FULL_VERSION, VERSION_HEADER } from "../version.ts";

/** The one shape of a request to the daemon socket: DaemonClient's and the early read's alike. */
export function daemonRequest(
  socket: string,
  method: string,
  path: string,
  o: { body?: string | Uint8Array | ReadableStream<Uint8Array>; contentType?: string; signal?: AbortSignal; versioned?: boolean } = {},
): Promise<Response> {
  const headers: Record<string, string> = {};
  if (o.versioned) headers[VERSION_HEADER] = FULL_VERSION;
  if (o.contentType) headers["content-type"] = o.contentType;
  return fetch(`http://banger${path}`, { method, unix: socket, headers, body: o.body, signal: o.signal, duplex: "half" } as RequestInit);
}

/** An early read in flight: its answer and the owner check of its socket. */
export interface EarlyRead {
  res: Promise<Response>;
  owner: Promise<void>;
}

let _early: (EarlyRead & { socket: string; method: string; path: string }) | null = null;

/** Handled now, awaited later: a rejection nobody took (the command asked something else) must not crash the CLI. */
function _quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** GET this path (a route's, without parameters) of this BANGER_HOME's daemon now, for DaemonClient to take. */
export function sendEarly(path: string): void {
  if (!/^\/v1\/[a-z/-]+$/.test(path)) throw new Error(`an early read is a GET of a route without parameters: ${path}`);
  const socket = daemonPaths(resolveHome(environ())).socket;
  _early = {
    socket,
    method: "GET",
    path,
    owner: _quiet(refuseForeignAsync(socket, "daemon socket")),
    res: _quiet(daemonRequest(socket, "GET", path, { versioned: true })),
  };
}

/**
 * One field of the early read's JSON answer, when nothing more is needed to
 * use it: the socket is ours, and the daemon is of this build and answered
 * 200 with a JSON object that has the field. Anything else (no daemon,
 * another build, an error, a foreign socket) is undefined, and the read is
 * left for DaemonClient, which handles it as its own first attempt (starts or
 * replaces the daemon, or says what went wrong).
 */
export async function earlyField(key: string): Promise<unknown> {
  const e = _early;
  if (!e) return undefined;
  try {
    await e.owner;
  } catch {
    return undefined;
  }
  let res: Response;
  try {
    res = await e.res;
  } catch {
    return undefined;
  }
  if (res.status !== 200 || res.headers.get(VERSION_HEADER) !== FULL_VERSION) return undefined;
  let text: string;
  try {
    text = await res.text();
  } catch (cut) {
    // cut off mid-answer: DaemonClient meets the same failure (a read: it asks again)
    e.res = _quiet(Promise.reject(cut));
    return undefined;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {}
  if (data !== null && typeof data === "object" && key in data) {
    _early = null;
    return (data as Record<string, unknown>)[key];
  }
  // not what the command expects: DaemonClient gets the same answer and says so
  e.res = Promise.resolve(new Response(text, { status: res.status, headers: res.headers }));
  return undefined;
}

/** The early read of exactly this request, once; null when there is none (or it was of another). */
export function takeEarly(socket: string, method: string, path: string): EarlyRead | null {
  const e = _early;
  if (!e || e.socket !== socket || e.method !== method || e.path !== path) return null;
  _early = null;
  return { res: e.res, owner: e.owner };
}
