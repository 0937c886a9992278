/**
 * A bare read sent the moment the process starts, before the CLI's modules
 * load: the daemon answers (and the socket's owner is checked) while they do,
 * so a `vm list` pays for the round trip or for loading, not both (P1 in
 * bench/results.md).
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
import { requestPath, routes, type RouteName } from "../shared/routes.ts";
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

/** Send a parameterless GET route to this BANGER_HOME's daemon now, for DaemonClient to take. */
export function sendEarly(name: RouteName): void {
  const def = routes[name];
  if (def.method !== "GET" || def.path.includes(":")) throw new Error(`an early read is a GET without parameters: ${name} is ${def.method} ${def.path}`);
  const socket = daemonPaths(resolveHome(environ())).socket;
  const path = requestPath(def, {});
  _early = {
    socket,
    method: def.method,
    path,
    owner: _quiet(refuseForeignAsync(socket, "daemon socket")),
    res: _quiet(daemonRequest(socket, def.method, path, { versioned: true })),
  };
}

/** The early read of exactly this request, once; null when there is none (or it was of another). */
export function takeEarly(socket: string, method: string, path: string): EarlyRead | null {
  const e = _early;
  if (!e || e.socket !== socket || e.method !== method || e.path !== path) return null;
  _early = null;
  return { res: e.res, owner: e.owner };
}
