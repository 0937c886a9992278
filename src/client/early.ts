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
 *
 * The read goes out on the main thread (src/host/unix-get.ts, not fetch()),
 * and everything up to a printed `--json` answer is written for a path that
 * runs once per process: few functions, no regular expressions, no Array
 * callbacks, no Buffer (each costs its first use, in the interpreter the
 * binary starts in: scripts/build.sh). What it imports is as lean: every
 * function of a module loaded at start costs start-up whether or not it runs
 * (~4 µs each, P1 in bench/results.md), so the owner check is a bare uid
 * (src/host/owner-uid.ts; DaemonClient turns a foreign one into its
 * refusal) and the paths are src/shared/home.ts, not paths.ts.
 */
import { environ } from "../host/environ.ts";
import { ownedByMe, ownerUid } from "../host/owner-uid.ts";
import { daemonSocket, resolveHome } from "../shared/home.ts";
import { FULL_VERSION, VERSION_HEADER } from "../version.ts";
import { answerHeader, answerResponse, EARLY_UNREAD, unixGet, type UnixAnswer } from "../host/unix-get.ts";

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

/** An early read in flight: its answer, and the owner of its socket (null: none there) for the caller to refuse if foreign (refuseOwner). */
export interface EarlyRead {
  res: Promise<Response>;
  owner: Promise<number | null>;
}

/**
 * In flight: the answer as read on the main thread (a Response is made only
 * if DaemonClient takes it), or fetch()'s Response.
 */
let _early: { socket: string; method: string; path: string; owner: Promise<number | null>; answer: Promise<UnixAnswer> | null; res: Promise<Response> | null } | null = null;

/**
 * GET this path (a route's, without parameters) of this BANGER_HOME's daemon
 * now, for earlyField or DaemonClient to take. `alone`: the process waits for
 * the answer with nothing else to do (`--json`), so it goes out on the main
 * thread (src/host/unix-get.ts), which costs less than fetch(); but a socket
 * there writes only when the event loop next turns, which loading the CLI
 * does not do, so a command that loads the CLI meanwhile sends with fetch(),
 * whose own thread writes at once.
 */
export function sendEarly(path: string, alone: boolean): void {
  // "/v1/" and then only a-z, "/" and "-": no parameter, no query
  let bare = path.startsWith("/v1/");
  for (let i = 4; bare && i < path.length; i++) {
    const c = path.charCodeAt(i);
    bare = (c >= 97 && c <= 122) || c === 47 || c === 45;
  }
  if (!bare) throw new Error(`an early read is a GET of a route without parameters: ${path}`);
  const socket = daemonSocket(resolveHome(environ()));
  const owner = ownerUid(socket);
  const answer = alone ? unixGet(socket, path, [[VERSION_HEADER, FULL_VERSION]]) : null;
  const res = alone ? null : daemonRequest(socket, "GET", path, { versioned: true });
  // handled now, awaited later: a rejection nobody takes (the command asked something else) must not crash the CLI
  owner.catch(_ignore);
  answer?.catch(_ignore);
  res?.catch(_ignore);
  _early = { socket, method: "GET", path, owner, answer, res };
}

function _ignore(): void {}

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
  if (!e?.answer) return undefined;
  let a: UnixAnswer;
  let data: unknown;
  try {
    // first, and alone: a foreign socket is refused at once, even if its listener never answers
    if (!ownedByMe(await e.owner)) return undefined;
    a = await e.answer;
    if (a.status !== 200 || answerHeader(a, VERSION_HEADER) !== FULL_VERSION) return undefined;
    data = JSON.parse(a.body);
  } catch {
    // not ours, no answer, or not JSON: DaemonClient meets the same and says so
    return undefined;
  }
  if (data === null || typeof data !== "object" || !(key in data)) return undefined;
  _early = null;
  return (data as Record<string, unknown>)[key];
}

/** The early read of exactly this request, once; null when there is none (or it was of another). */
export function takeEarly(socket: string, method: string, path: string): EarlyRead | null {
  const e = _early;
  if (!e || e.socket !== socket || e.method !== method || e.path !== path) return null;
  _early = null;
  if (e.res) return { res: e.res, owner: e.owner };
  // an answer the early reader does not take (src/host/unix-get.ts) was asked for nothing: ask again as DaemonClient would have
  const res = e.answer!.then(answerResponse, (err: unknown) => {
    if ((err as { code?: string } | null)?.code !== EARLY_UNREAD) throw err;
    return daemonRequest(socket, method, path, { versioned: true });
  });
  return { res, owner: e.owner };
}
