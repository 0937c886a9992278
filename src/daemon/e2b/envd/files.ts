import type { Body } from "../../../files/guest.ts";
import type { EnvdDeps, EnvdSandbox } from "./context.ts";
import { SandboxFs } from "./fs-guest.ts";
import { MultipartError, boundaryOf, multipartParts } from "./multipart.ts";
import { EnvdFsError, type FsErrorKind, type GuestEntry } from "./fs-scripts.ts";
import { EnvdUserError, callUser, type CallUser } from "./user.ts";

/**
 * envd's plain-HTTP `/files`: GET downloads a file (gzip when the client
 * accepts it), POST uploads one or more (multipart/form-data, one file per
 * part named by its path; or the raw body, application/octet-stream;
 * either gzip with Content-Encoding). `path` may be relative to the home of
 * `username` (default envd's default user), who owns what is made.
 */

const _STATUS: Record<FsErrorKind, number> = {
  not_found: 404,
  invalid: 400,
  exists: 400,
  user: 401,
  precondition: 400,
  permission: 403,
  no_space: 507,
  internal: 500,
};

/** envd's error body: `{code, message}` with the HTTP status as code. */
function _error(e: unknown): Response {
  const status = e instanceof EnvdFsError ? _STATUS[e.kind] : e instanceof EnvdUserError ? _STATUS.user : 500;
  const message = e instanceof Error ? e.message : String(e);
  return Response.json({ code: status, message }, { status });
}

function _user(req: Request, url: URL): CallUser {
  return callUser({ query: url.searchParams.get("username"), authorization: req.headers.get("authorization") });
}

/**
 * The encoding a download goes out in, from Accept-Encoding: null when
 * neither gzip nor identity is acceptable (406). Runtimes' fetch asks for
 * "gzip, deflate, br, zstd" on every request by itself, and the bytes only
 * cross loopback and the VM's SSH channel: compressing them costs the guest
 * more than it saves (3× slower for 10 MiB here). So gzip only when the
 * client names it alone (the SDK's `gzip: true` sends exactly "gzip") or
 * refuses the bytes as they are; identity stays the answer otherwise, which
 * HTTP allows whenever identity is acceptable.
 */
export function downloadEncoding(header: string | null): "gzip" | "identity" | null {
  let gzip = false;
  let identity = true;
  let star: boolean | null = null;
  const others: string[] = [];
  for (const part of (header ?? "").split(",")) {
    const [raw = "", ...params] = part.trim().toLowerCase().split(";");
    const name = raw.trim();
    if (!name) continue;
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    const ok = q === undefined || Number(q) > 0;
    if (name === "gzip" || name === "x-gzip") gzip = ok;
    else if (name === "identity") identity = ok;
    else if (name === "*") star = ok;
    else if (ok) others.push(name);
  }
  const named = /(^|[\s,])(x-)?gzip\b/i.test(header ?? "");
  if (!named && star !== null) gzip = star;
  if (!identity) return gzip ? "gzip" : null;
  return gzip && named && others.length === 0 ? "gzip" : "identity";
}

/** The upload as envd answers it: one {name, type, path} per file written. */
function _written(e: GuestEntry) {
  return { name: e.name, type: "file", path: e.path };
}

/** A request body read as it arrives, that knows whether it reached its end. */
function _body(stream: AsyncIterable<Uint8Array> | null): Body {
  let whole = false;
  const chunks = (async function* () {
    if (!stream) {
      whole = true;
      return;
    }
    for await (const c of stream) yield c;
    whole = true;
  })();
  return { chunks, whole: () => whole };
}

async function _download(fs: SandboxFs, req: Request, url: URL, sandbox: EnvdSandbox): Promise<Response> {
  const enc = downloadEncoding(req.headers.get("accept-encoding"));
  if (!enc) return Response.json({ code: 406, message: "no acceptable encoding found, supported: [identity, gzip]" }, { status: 406 });
  const path = url.searchParams.get("path") ?? "";
  const body = await fs.read(sandbox.vm, _user(req, url), path, enc === "gzip");
  const name = path.slice(path.lastIndexOf("/") + 1) || "download";
  const headers: Record<string, string> = {
    "content-type": "application/octet-stream",
    "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
  };
  if (enc === "gzip") headers["content-encoding"] = "gzip";
  return new Response(body, { headers });
}

async function _upload(fs: SandboxFs, req: Request, url: URL, sandbox: EnvdSandbox): Promise<Response> {
  const user = _user(req, url);
  const path = url.searchParams.get("path");
  const type = (req.headers.get("content-type") ?? "").toLowerCase();
  const gzip = /^\s*(x-)?gzip\s*$/i.test(req.headers.get("content-encoding") ?? "");
  const enc = req.headers.get("content-encoding");
  if (enc && !gzip && enc.trim().toLowerCase() !== "identity") throw new EnvdFsError("invalid", `unsupported Content-Encoding ${JSON.stringify(enc)}: supported are identity and gzip`);
  if (type.startsWith("multipart/form-data")) {
    const boundary = boundaryOf(req.headers.get("content-type") ?? "");
    if (!boundary) throw new EnvdFsError("invalid", "a multipart/form-data upload needs a boundary in its Content-Type");
    const raw = req.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    // read part by part as it arrives: each file streams to the guest, the daemon never holds one
    const out: ReturnType<typeof _written>[] = [];
    try {
      for await (const part of multipartParts(gzip ? raw.pipeThrough(new DecompressionStream("gzip")) : raw, boundary)) {
        if (part.name !== "file") continue;
        // the query path names the first file (the SDK's single write); more files go by their part's filename (its path)
        const target: string = (out.length === 0 && path) || part.filename;
        if (!target) throw new EnvdFsError("invalid", "a file part has no path: give ?path= or a filename");
        out.push(_written(await fs.write(sandbox.vm, user, target, _body(part.body), false)));
      }
    } catch (e) {
      if (e instanceof MultipartError) throw new EnvdFsError("invalid", e.message);
      throw e;
    }
    if (out.length === 0) throw new EnvdFsError("invalid", `the multipart body has no "file" part`);
    return Response.json(out);
  }
  if (!path) throw new EnvdFsError("invalid", `the "path" query parameter is required for an ${type || "untyped"} upload`);
  return Response.json([_written(await fs.write(sandbox.vm, user, path, _body(req.body), gzip))]);
}

/** An HttpEndpoint (context.ts); a declaration, so index.ts may list it however the modules load. */
export async function filesEndpoint(req: Request, url: URL, sandbox: EnvdSandbox, deps: EnvdDeps): Promise<Response | null> {
  if (url.pathname !== "/files") return null;
  const fs = new SandboxFs((vm) => deps.ssh.get(vm));
  try {
    if (req.method === "GET" || req.method === "HEAD") return await _download(fs, req, url, sandbox);
    if (req.method === "POST" || req.method === "PUT") return await _upload(fs, req, url, sandbox);
    return Response.json({ code: 405, message: `/files takes GET or POST, not ${req.method}` }, { status: 405, headers: { allow: "GET, POST" } });
  } catch (e) {
    return _error(e);
  }
}
