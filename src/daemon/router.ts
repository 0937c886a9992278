// The daemon's router: matches a request against the declared routes
// (src/shared/routes.ts), checks its query and body against the declaration
// and calls the route's handler, typed from the same declaration.
import type { StreamEvent } from "../shared/api.ts";
import { BangerError } from "../shared/errors.ts";
import { routes, type BodyOf, type JsonOf, type ParamsOf, type QueryOf, type QuerySpec, type RouteDef, type RouteName, type StreamOf } from "../shared/routes.ts";
import { briefValue, errorResponse, json, ndjson, parseBody, type Emitter } from "./http.ts";

/** What a handler gets: the request, and its path parameters, query and body already checked. */
export interface RouteContext<K extends RouteName> {
  req: Request;
  url: URL;
  params: ParamsOf<K>;
  query: QueryOf<K>;
  body: BodyOf<K>;
  /** Answer with this route's NDJSON stream: `fn`'s result is its last line. */
  ndjson(fn: (emit: Emitter) => Promise<StreamOf<K>>): Response;
}

/** A route's handler: its declared JSON answer (sent with the declared status), or a Response it made (a stream, raw bytes). */
export type Handler<K extends RouteName> = (ctx: RouteContext<K>) => Promise<JsonOf<K> | Response>;
export type Handlers = { [K in RouteName]: Handler<K> };
/** The handlers of one group of routes: every route whose name starts with P. */
export type HandlersFor<P extends string> = { [K in RouteName as K extends `${P}${string}` ? K : never]: Handler<K> };

/** The router's own view of a handler: the table's types were checked where the handler was written. */
type AnyHandler = (ctx: {
  req: Request;
  url: URL;
  params: Record<string, string>;
  query: Record<string, unknown>;
  body: unknown;
  ndjson(fn: (emit: Emitter) => Promise<StreamEvent>): Response;
}) => Promise<unknown>;

const table = Object.entries(routes as Record<string, RouteDef>).map(([name, def]) => ({ name: name as RouteName, def, segments: def.path.split("/").filter(Boolean) }));

/** A path's segments, each percent-decoded on its own (so an encoded "/" stays inside its segment). */
function _segments(pathname: string): string[] {
  try {
    return pathname.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new BangerError("E_BAD_REQUEST", `malformed percent-encoding in the path ${briefValue(pathname)}`);
  }
}

function _params(segments: string[], parts: string[]): Record<string, string> | null {
  if (segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s.startsWith(":")) params[s.slice(1)] = parts[i]!;
    else if (s !== parts[i]) return null;
  }
  return params;
}

/** The declared query parameters, parsed; undeclared ones are ignored. */
export function parseQuery(spec: QuerySpec, search: URLSearchParams): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, type] of Object.entries(spec)) {
    const v = search.get(key);
    if (type === "string") out[key] = v ?? undefined;
    else if (type === "flag") out[key] = v === "1";
    else {
      const n = v === null || v === "" ? 0 : Number(v);
      if (!Number.isSafeInteger(n) || n < 0) throw new BangerError("E_BAD_REQUEST", `${key} must be a byte offset >= 0, not ${briefValue(v)}`);
      out[key] = n;
    }
  }
  return out;
}

/**
 * The request handler for the declared routes that have a handler here. An
 * unknown path is a 404 naming it; a known path asked with another method is
 * a 405 whose Allow header lists the methods it takes.
 */
export function createRouter(handlers: Partial<Handlers>): (req: Request) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    const parts = _segments(url.pathname);
    if (parts[0] !== "v1") throw new BangerError("E_NOT_FOUND", `no such route: ${req.method} ${url.pathname} (routes live under /v1)`);
    for (const r of table) {
      if (r.def.method !== req.method) continue;
      const params = _params(r.segments, parts);
      if (!params) continue;
      const handler = handlers[r.name] as AnyHandler | undefined;
      if (!handler) break;
      const query = r.def.query ? parseQuery(r.def.query, url.searchParams) : {};
      const body = r.def.body && r.def.body !== "raw" ? await parseBody(req, r.def.body, r.def.maxBytes) : undefined;
      const out = await handler({ req, url, params, query, body, ndjson: (fn) => ndjson(req, fn) });
      return out instanceof Response ? out : json(out, r.def.status ?? 200);
    }
    const allowed = table.filter((r) => handlers[r.name] && _params(r.segments, parts)).map((r) => r.def.method);
    if (allowed.length) {
      const res = errorResponse(new BangerError("E_METHOD", `${url.pathname} takes ${allowed.join(", ")}, not ${req.method}`));
      res.headers.set("allow", allowed.join(", "));
      return res;
    }
    throw new BangerError("E_NOT_FOUND", `no such route: ${req.method} ${url.pathname}`);
  };
}
