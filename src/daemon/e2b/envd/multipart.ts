/**
 * multipart/form-data read as it arrives, one part at a time, so an upload
 * of any size goes to the guest without the daemon holding it (a form
 * parser buffers the whole body). Each part's body must be read (or left)
 * before the next part is asked for.
 */

export interface Part {
  /** The form field's name. */
  name: string;
  /** The part's filename (the SDK puts the file's path there), "" when none. */
  filename: string;
  body: AsyncIterable<Uint8Array>;
}

export class MultipartError extends Error {}

/** The boundary of a multipart/form-data Content-Type, or null. */
export function boundaryOf(contentType: string): string | null {
  const m = /;\s*boundary=(?:"([^"]+)"|([^\s;]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]!) : null;
}

/** A Content-Disposition parameter, with the HTML form encoding's %22, %0A and %0D decoded. */
function _param(disposition: string, key: string): string | null {
  const m = new RegExp(`;\\s*${key}="((?:[^"\\\\]|\\\\.)*)"`, "i").exec(disposition) ?? new RegExp(`;\\s*${key}=([^;\\s]*)`, "i").exec(disposition);
  if (!m) return null;
  return m[1]!.replace(/\\(.)/g, "$1").replace(/%(22|0A|0D)/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** The parts of a multipart body, in order. */
export async function* multipartParts(stream: AsyncIterable<Uint8Array>, boundary: string): AsyncGenerator<Part> {
  const it = stream[Symbol.asyncIterator]();
  let buf = Buffer.alloc(0);
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    buf = buf.length ? Buffer.concat([buf, r.value]) : Buffer.from(r.value);
    return true;
  };
  const cut = (what: string) => new MultipartError(`the multipart body ended ${what}`);

  // the first delimiter (anything before it is a preamble)
  const first = Buffer.from(`--${boundary}`);
  let at: number;
  while ((at = buf.indexOf(first)) < 0) {
    if (buf.length > first.length) buf = buf.subarray(buf.length - first.length);
    if (!(await more())) throw cut("before its first boundary");
  }
  buf = buf.subarray(at + first.length);
  const delimiter = Buffer.from(`\r\n--${boundary}`);

  for (;;) {
    // after a delimiter: "--" ends the body, CRLF starts a part
    while (buf.length < 2) if (!(await more())) throw cut("after a boundary");
    if (buf[0] === 0x2d && buf[1] === 0x2d) return;
    if (buf[0] !== 0x0d || buf[1] !== 0x0a) throw new MultipartError("the multipart body has a malformed boundary line");
    buf = buf.subarray(2);
    let headEnd: number;
    while ((headEnd = buf.indexOf("\r\n\r\n")) < 0) {
      if (buf.length > 16384) throw new MultipartError("a multipart part's headers are too long");
      if (!(await more())) throw cut("in a part's headers");
    }
    const headers = buf.subarray(0, headEnd).toString("utf8").split("\r\n");
    buf = buf.subarray(headEnd + 4);
    const disposition = headers.find((h) => /^content-disposition\s*:/i.test(h)) ?? "";
    let done = false;
    const body = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) {
        const i = buf.indexOf(delimiter);
        if (i >= 0) {
          if (i > 0) yield new Uint8Array(buf.subarray(0, i));
          buf = buf.subarray(i + delimiter.length);
          done = true;
          return;
        }
        // all but what could be the start of a delimiter split across chunks
        const safe = buf.length - (delimiter.length - 1);
        if (safe > 0) {
          const out = new Uint8Array(buf.subarray(0, safe));
          buf = buf.subarray(safe);
          yield out;
        }
        if (!(await more())) throw cut("in a part's body");
      }
    };
    yield { name: _param(disposition, "name") ?? "", filename: _param(disposition, "filename") ?? "", body: body() };
    // a part its reader left: skip what is left of it
    if (!done) for await (const _ of body()) void _;
  }
}
