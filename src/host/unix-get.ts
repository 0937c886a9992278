/**
 * One HTTP/1.1 GET over a unix socket on the main thread's own event loop
 * (Bun.connect), for the CLI's early read (src/client/early.ts). fetch()
 * hands the request to Bun's HTTP client thread and its answer comes back as
 * a Response, which together cost a compiled `vm list --json` ~0.6 ms of CPU
 * more (P1 in bench/results.md). Kept to what that path can afford: no
 * Buffer (its first use loads node:buffer, ~0.5 ms), no regular expressions
 * and no Array callbacks (each compiles on first use).
 *
 * The answer is read to the end of the connection (`connection: close`) and
 * taken only when it is plain: an ASCII head, no transfer-encoding, and a
 * body of the length it declares. Anything else rejects with code
 * E_EARLY_UNREAD, and the caller asks again with fetch().
 */

/** An answer as read: status line, headers (names in lower case) and the body as text. */
export interface UnixAnswer {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: string;
}

/** The value of a header (the first of that name, given in lower case), or null. */
export function answerHeader(a: UnixAnswer, name: string): string | null {
  for (let i = 0; i < a.headers.length; i++) if (a.headers[i]![0] === name) return a.headers[i]![1];
  return null;
}

/** The answer as a fetch() Response. */
export function answerResponse(a: UnixAnswer): Response {
  const empty = a.status === 204 || a.status === 304;
  return new Response(empty ? null : a.body, { status: a.status, statusText: a.statusText, headers: a.headers });
}

/** The code of an answer this reader does not take: not a transport failure, so the caller asks again. */
export const EARLY_UNREAD = "E_EARLY_UNREAD";

function _unread(why: string): Error {
  return Object.assign(new Error(`the daemon's answer is not one the early reader takes: ${why}`), { code: EARLY_UNREAD });
}

/** A decimal number of digits only, or -1. */
function _digits(s: string): number {
  if (s === "" || s.length > 15) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
  }
  return Number(s);
}

/** The answer in `text` (all of the connection's bytes, `bytes` of them, decoded as UTF-8). */
export function parseAnswer(text: string, bytes: number): UnixAnswer {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw _unread("no end of the head");
  // an ASCII head: then its length in characters is its length in bytes, and the body's byte count follows
  // (as many characters as bytes, the usual answer, leaves only bytes that are not UTF-8 to rule out)
  const replaced = text.indexOf("\uFFFD");
  if (replaced >= 0 && replaced < end) throw _unread("a head that is not ASCII");
  if (text.length !== bytes) for (let i = 0; i < end; i++) if (text.charCodeAt(i) > 127) throw _unread("a head that is not ASCII");
  let eol = text.indexOf("\r\n");
  const first = text.slice(0, eol);
  const status = _digits(first.slice(9, 12));
  if (!(first.startsWith("HTTP/1.1 ") || first.startsWith("HTTP/1.0 ")) || status < 100 || (first.length > 12 && first[12] !== " ")) {
    throw _unread(`the status line ${JSON.stringify(first.slice(0, 80))}`);
  }
  const headers: [string, string][] = [];
  while (eol < end) {
    const next = text.indexOf("\r\n", eol + 2);
    const line = text.slice(eol + 2, next);
    const colon = line.indexOf(":");
    if (colon <= 0) throw _unread(`the header line ${JSON.stringify(line.slice(0, 80))}`);
    headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
    eol = next;
  }
  const a: UnixAnswer = { status, statusText: first.slice(13), headers, body: text.slice(end + 4) };
  if (answerHeader(a, "transfer-encoding") !== null) throw _unread("a transfer-encoding");
  const length = answerHeader(a, "content-length");
  if (length === null || _digits(length) !== bytes - (end + 4)) throw _unread(`content-length ${JSON.stringify(length)} for ${bytes - (end + 4)} bytes`);
  return a;
}

/**
 * GET `path` from the HTTP server on `socket`, with these headers (values
 * of ours: no CR or LF). Rejects with the connect error (its `code`: ENOENT,
 * ECONNREFUSED, EACCES…) when nothing listens there, and with code
 * E_EARLY_UNREAD when the answer is not one this reader takes.
 */
export function unixGet(socket: string, path: string, headers: readonly (readonly [string, string])[] = []): Promise<UnixAnswer> {
  let request = `GET ${path} HTTP/1.1\r\nhost: banger\r\nconnection: close\r\n`;
  for (let i = 0; i < headers.length; i++) request += `${headers[i]![0]}: ${headers[i]![1]}\r\n`;
  request += "\r\n";
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  let settled = false;
  const { promise, resolve, reject } = Promise.withResolvers<UnixAnswer>();
  const fail = (e: unknown) => {
    if (settled) return;
    settled = true;
    reject(e);
  };
  Bun.connect({
    unix: socket,
    socket: {
      // not Buffer: its first use loads node:buffer
      binaryType: "uint8array",
      open(s) {
        // a few hundred bytes into a new connection's empty buffer: one write takes them all
        if (s.write(request) !== request.length) {
          s.end();
          fail(_unread("the request did not go out in one write"));
        }
      },
      data(_s, chunk) {
        bytes += chunk.length;
        text += decoder.decode(chunk, { stream: true });
      },
      close() {
        if (settled) return;
        settled = true;
        try {
          resolve(parseAnswer(text + decoder.decode(), bytes));
        } catch (e) {
          reject(e);
        }
      },
      error: (_s, e) => fail(e),
    },
  }).catch(fail);
  return promise;
}
