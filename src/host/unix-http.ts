import { createConnection } from "node:net";
import { BangerError } from "../shared/errors.ts";

export interface UnixHttpRequest {
  method: string;
  path: string;
  /** JSON text; sent with Content-Type: application/json and its Content-Length. */
  body?: string;
}

export interface UnixHttpResponse {
  status: number;
  body: string;
}

/** One HTTP/1.1 exchange over a unix socket (Firecracker's API socket). */
export interface UnixHttp {
  request(sockPath: string, req: UnixHttpRequest, timeoutMs: number): Promise<UnixHttpResponse>;
}

/** The raw request bytes: HTTP/1.1, always a Content-Length (Firecracker rejects bodies without one). */
export function formatHttpRequest(req: UnixHttpRequest): string {
  const body = req.body ?? "";
  const head = [`${req.method} ${req.path} HTTP/1.1`, "Host: localhost", "Accept: application/json", "Connection: close"];
  if (req.body !== undefined) head.push("Content-Type: application/json");
  head.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${head.join("\r\n")}\r\n\r\n${body}`;
}

/**
 * Parse a complete response if `buf` holds one (status line, headers, and
 * Content-Length bytes of body); null while more bytes are needed. Without a
 * Content-Length the body runs to the end of the connection (`ended`).
 */
export function parseHttpResponse(buf: Buffer, ended: boolean): UnixHttpResponse | null {
  const sep = buf.indexOf("\r\n\r\n");
  if (sep < 0) {
    if (ended) throw new Error(`incomplete HTTP response (${buf.length} bytes)`);
    return null;
  }
  const lines = buf.subarray(0, sep).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const status = Number(m[1]);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  const rest = buf.subarray(sep + 4);
  if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    const body = _dechunk(rest);
    if (body === null) {
      if (ended) throw new Error("truncated chunked HTTP response");
      return null;
    }
    return { status, body };
  }
  const len = headers.get("content-length");
  if (len !== undefined) {
    const n = Number(len);
    if (!Number.isInteger(n) || n < 0) throw new Error(`bad Content-Length: ${len}`);
    if (rest.length < n) {
      if (ended) throw new Error(`truncated HTTP body: ${rest.length} of ${n} bytes`);
      return null;
    }
    return { status, body: rest.subarray(0, n).toString("utf8") };
  }
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, body: "" };
  return ended ? { status, body: rest.toString("utf8") } : null;
}

function _dechunk(buf: Buffer): string | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return null;
    const size = parseInt(buf.subarray(at, eol).toString("latin1"), 16);
    if (!Number.isFinite(size)) throw new Error("bad chunk size in HTTP response");
    if (size === 0) return Buffer.concat(parts).toString("utf8");
    if (buf.length < eol + 2 + size + 2) return null;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** The real transport: node:net to the socket, one request per connection, the whole exchange bounded by timeoutMs. */
export function createUnixHttp(): UnixHttp {
  return {
    request(sockPath, req, timeoutMs) {
      return new Promise<UnixHttpResponse>((resolve, reject) => {
        const sock = createConnection({ path: sockPath });
        let buf = Buffer.alloc(0);
        let settled = false;
        const done = (err: Error | null, res?: UnixHttpResponse) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          sock.destroy();
          if (err) reject(err);
          else resolve(res!);
        };
        const timer = setTimeout(
          () => done(new BangerError("E_TIMEOUT", `${req.method} ${req.path} on ${sockPath} timed out after ${timeoutMs} ms`)),
          timeoutMs,
        );
        const tryParse = (ended: boolean) => {
          try {
            const res = parseHttpResponse(buf, ended);
            if (res) done(null, res);
          } catch (e) {
            done(e as Error);
          }
        };
        sock.on("connect", () => sock.write(formatHttpRequest(req)));
        sock.on("data", (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          tryParse(false);
        });
        sock.on("end", () => tryParse(true));
        sock.on("error", (e) => done(e));
        sock.on("close", () => done(new Error(`connection to ${sockPath} closed before a response`)));
      });
    },
  };
}
