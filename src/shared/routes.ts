// Every route of the daemon's HTTP API, declared once: method, path, query,
// body schema and what it answers. The daemon's router (src/daemon/router.ts)
// matches and validates requests against this table and types its handlers
// from it; the CLI's client (src/client/daemon-client.ts) builds requests from
// it and types the answers. Plain data and types: it is on every command's
// hot path, so it imports nothing but types.
import type { FetchResult, FileInfo, Health, LoadedPlugin, PortsView, SshInfo, VMStats, VMView, Workspace } from "./api.ts";
import type { GuestSession, ImageRecord, SnapshotRecord } from "./model.ts";
import type { EgressView } from "./egress.ts";
import type { ImageChainLink } from "./image-recipe.ts";
import type { E2BKeyInfo, E2BStatus } from "./e2b.ts";

/** JSON request bodies are small (names, argv, paths): anything bigger is refused before it is buffered. */
export const MAX_JSON_BODY_BYTES = 1 << 20;
/** exec carries its stdin in the body (base64): the one route with a bigger allowance. */
export const MAX_EXEC_BODY_BYTES = 64 << 20;
/** The most stdin `vm exec --stdin` carries: what fits the body as base64 beside a JSON body's worth of argv and options. */
export const MAX_EXEC_STDIN_BYTES = Math.floor(((MAX_EXEC_BODY_BYTES - MAX_JSON_BODY_BYTES) * 3) / 4);
/** The most one `session send` writes to a session's stdin (its raw body, held whole: it goes to the guest in one upload; Bun's own default body cap). */
export const MAX_SESSION_SEND_BYTES = 128 << 20;

export type FieldType = "string" | "number" | "integer" | "boolean" | "string[]";
export interface Field {
  readonly type: FieldType;
  readonly required?: boolean;
}
/** A JSON object body: its fields, each with a type; unknown fields are refused. */
export type Schema = { readonly [field: string]: Field };

type ValueOf<T extends FieldType> = T extends "string" ? string : T extends "boolean" ? boolean : T extends "string[]" ? string[] : number;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** The object a schema accepts: required fields as declared, the others optional. */
export type Infer<S extends Schema> = Simplify<
  { -readonly [K in keyof S as S[K] extends { required: true } ? K : never]: ValueOf<S[K]["type"]> } & {
    -readonly [K in keyof S as S[K] extends { required: true } ? never : K]?: ValueOf<S[K]["type"]>;
  }
>;

/**
 * A query parameter: a string (absent: undefined), a flag ("1" is true,
 * anything else false) or a byte offset (a whole number >= 0; absent: 0).
 * Parameters a route does not declare are ignored, as they always were.
 */
export type QueryType = "string" | "flag" | "offset";
export type QuerySpec = { readonly [param: string]: QueryType };
type QueryValue<T extends QueryType> = T extends "string" ? string | undefined : T extends "flag" ? boolean : number;
export type InferQuery<Q extends QuerySpec> = { -readonly [K in keyof Q]: QueryValue<Q[K]> };

/** A type the table carries for the compiler; nothing at run time. */
export interface Res<T> {
  readonly _type?: T;
}
export const res = <T>(): Res<T> => ({});

/** The last line of a successful NDJSON stream (an `error` line becomes a thrown BangerError on the client). */
export type ResultEvent<T> = { type: "result"; data: T };
export type ExitEvent = { type: "exit"; code: number };

export interface RouteDef {
  readonly method: "GET" | "POST" | "DELETE";
  /** Under /v1; a `:name` segment is a path parameter (one segment, percent-decoded). */
  readonly path: string;
  readonly query?: QuerySpec;
  /** A JSON object checked against this schema, or "raw": bytes the handler reads itself. None: the body is not read. */
  readonly body?: Schema | "raw";
  /** The body's size cap in bytes (default MAX_JSON_BODY_BYTES). */
  readonly maxBytes?: number;
  /** Answers JSON of this type, with `status` (default 200). */
  readonly json?: Res<unknown>;
  readonly status?: number;
  /** Answers an NDJSON stream: progress and output events, then this one. */
  readonly ndjson?: Res<ResultEvent<unknown> | ExitEvent>;
  /** Answers raw bytes (a patch). */
  readonly raw?: true;
}

/** Identity, for the types: keeps each path and schema as the literal it is. */
export const defineRoutes = <const T extends Record<string, RouteDef>>(routes: T): T => routes;

export const routes = defineRoutes({
  health: { method: "GET", path: "/v1/health", json: res<Health>() },
  shutdown: { method: "POST", path: "/v1/shutdown", json: res<{ ok: boolean }>() },
  pluginList: { method: "GET", path: "/v1/plugins", json: res<{ plugins: LoadedPlugin[] }>() },

  vmList: { method: "GET", path: "/v1/vms", json: res<{ vms: VMView[] }>() },
  vmCreate: {
    method: "POST",
    path: "/v1/vms",
    body: {
      name: { type: "string", required: true },
      image: { type: "string" },
      cpus: { type: "integer" },
      memoryMiB: { type: "integer" },
      diskMiB: { type: "integer" },
      workDiskMiB: { type: "integer" },
      driver: { type: "string" },
      net: { type: "string" },
      storage: { type: "string" },
      publish: { type: "string[]" },
      egress: { type: "string" },
      start: { type: "boolean" },
      ttlMs: { type: "integer" },
      ttlAction: { type: "string" },
      idleTimeoutMs: { type: "integer" },
      idleAction: { type: "string" },
      /** VM@SNAP: a clone of that snapshot (its shape; the sizes above must not be given). */
      from: { type: "string" },
      /** With start: boot cold even when a warm-start template of this image and shape exists. */
      cold: { type: "boolean" },
    },
    ndjson: res<ResultEvent<VMView>>(),
  },
  vmShow: { method: "GET", path: "/v1/vms/:vm", json: res<VMView>() },
  vmDelete: { method: "DELETE", path: "/v1/vms/:vm", query: { force: "flag", withSnapshots: "flag" }, json: res<{ deleted: string; id: string; snapshots?: string[] }>() },
  vmStart: { method: "POST", path: "/v1/vms/:vm/start", body: {}, ndjson: res<ResultEvent<VMView>>() },
  vmRestart: { method: "POST", path: "/v1/vms/:vm/restart", body: {}, ndjson: res<ResultEvent<VMView>>() },
  vmStop: { method: "POST", path: "/v1/vms/:vm/stop", body: { force: { type: "boolean" }, timeoutMs: { type: "integer" } }, json: res<VMView>() },
  vmPause: { method: "POST", path: "/v1/vms/:vm/pause", body: {}, json: res<VMView>() },
  vmResume: { method: "POST", path: "/v1/vms/:vm/resume", body: {}, json: res<VMView>() },
  vmExec: {
    method: "POST",
    path: "/v1/vms/:vm/exec",
    body: {
      argv: { type: "string[]", required: true },
      stdin: { type: "string" },
      // ExecOptions (src/shared/exec-options.ts): env as KEY=VALUE entries, cwd, user (NAME|UID[:GROUP|GID]), timeoutMs (exit 124)
      env: { type: "string[]" },
      cwd: { type: "string" },
      user: { type: "string" },
      timeoutMs: { type: "integer" },
    },
    maxBytes: MAX_EXEC_BODY_BYTES,
    ndjson: res<ExitEvent>(),
  },
  /** A signal for a running `vm exec` (its stream's `exec` event names it): INT, TERM or HUP, as Ctrl-C, timeout(1) or a closed terminal send. */
  vmExecSignal: { method: "POST", path: "/v1/vms/:vm/exec/:exec/signal", body: { signal: { type: "string", required: true } }, json: res<{ sent: string }>() },
  vmSshInfo: { method: "GET", path: "/v1/vms/:vm/ssh-info", json: res<SshInfo>() },
  /** The egress policy (with ?log=1 every denied attempt). */
  vmEgress: { method: "GET", path: "/v1/vms/:vm/egress", query: { log: "flag" }, json: res<EgressView>() },
  /** Change the egress policy; a running VM's enforcer has it before the answer goes out. */
  vmEgressSet: { method: "POST", path: "/v1/vms/:vm/egress", body: { policy: { type: "string", required: true } }, json: res<EgressView>() },
  vmLogs: { method: "GET", path: "/v1/vms/:vm/logs", query: { follow: "flag", offset: "offset" }, ndjson: res<ResultEvent<{ offset: number }>>() },
  /** Set a VM's TTL (from now; 0: none) and/or idle timeout (0: none); a field left out stays as it is. */
  lifetimeSet: {
    method: "POST",
    path: "/v1/vms/:vm/lifetime",
    body: { ttlMs: { type: "integer" }, ttlAction: { type: "string" }, idleTimeoutMs: { type: "integer" }, idleAction: { type: "string" } },
    json: res<VMView>(),
  },
  /**
   * Hold a VM in use: an NDJSON stream that stays open until the client goes away (or the VM is deleted), and keeps
   * the VM's idle timeout from firing meanwhile: an interactive `vm ssh` holds one for as long as its shell is open.
   */
  lifetimeHold: { method: "GET", path: "/v1/vms/:vm/hold", ndjson: res<ResultEvent<{ heldMs: number }>>() },

  /** Published ports: what the VM record has, with the host port each one got (`vm port ls`). */
  portList: { method: "GET", path: "/v1/vms/:vm/ports", json: res<PortsView>() },
  /** Publish one more (`[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]`): forwarded at once on a running VM, else at its next start. */
  portAdd: { method: "POST", path: "/v1/vms/:vm/ports", body: { spec: { type: "string", required: true } }, json: res<PortsView>(), status: 201 },
  /** Unpublish what `spec` names: a guest port (every forward to it) or a spec. */
  portRemove: { method: "DELETE", path: "/v1/vms/:vm/ports", query: { spec: "string" }, json: res<PortsView>() },

  /** CPU, memory, disk and uptime of one running VM (`vm stats VM`). */
  statsShow: { method: "GET", path: "/v1/vms/:vm/stats", json: res<VMStats>() },
  /** The same for every running VM. */
  statsList: { method: "GET", path: "/v1/stats", json: res<{ vms: VMStats[] }>() },

  snapshotCreate: { method: "POST", path: "/v1/vms/:vm/snapshots", body: { name: { type: "string" } }, ndjson: res<ResultEvent<SnapshotRecord>>() },
  snapshotRollback: { method: "POST", path: "/v1/vms/:vm/rollback", body: { snapshot: { type: "string", required: true } }, ndjson: res<ResultEvent<VMView>>() },
  /** Snapshot VM and make `names` clones of it that run on from that instant; the source runs on. */
  snapshotFork: { method: "POST", path: "/v1/vms/:vm/fork", body: { names: { type: "string[]", required: true } }, ndjson: res<ResultEvent<{ snapshot: SnapshotRecord; vms: VMView[] }>>() },
  /** Boot the image at this shape and keep it as a warm-start template (a snapshot); matching starts clone it. */
  snapshotWarm: { method: "POST", path: "/v1/images/:name/warm", body: { cpus: { type: "integer" }, memoryMiB: { type: "integer" }, driver: { type: "string" } }, ndjson: res<ResultEvent<SnapshotRecord>>() },
  snapshotList: { method: "GET", path: "/v1/snapshots", query: { vm: "string" }, json: res<{ snapshots: SnapshotRecord[] }>() },
  /** `:snap` is VM@SNAP. */
  snapshotShow: { method: "GET", path: "/v1/snapshots/:snap", json: res<SnapshotRecord>() },
  snapshotRemove: { method: "DELETE", path: "/v1/snapshots/:snap", json: res<{ deleted: string }>() },

  imageList: { method: "GET", path: "/v1/images", json: res<{ images: ImageRecord[] }>() },
  imageBuild: {
    method: "POST",
    path: "/v1/images/build",
    body: {
      name: { type: "string" },
      force: { type: "boolean" },
      // a derived image (any of these): built on `from` (default "default")
      from: { type: "string" },
      packages: { type: "string[]" },
      run: { type: "string[]" },
      copy: { type: "string[]" },
      env: { type: "string[]" },
      size: { type: "string" },
    },
    ndjson: res<ResultEvent<ImageRecord & { built: boolean; manifest: unknown; chain: ImageChainLink[] }>>(),
  },
  imageImport: {
    method: "POST",
    path: "/v1/images/import",
    body: {
      name: { type: "string", required: true },
      kernel: { type: "string", required: true },
      rootfs: { type: "string", required: true },
      initrd: { type: "string" },
    },
    json: res<ImageRecord>(),
    status: 201,
  },
  imageImportOci: {
    method: "POST",
    path: "/v1/images/import-oci",
    body: { name: { type: "string", required: true }, path: { type: "string", required: true }, base: { type: "string" } },
    ndjson: res<ResultEvent<ImageRecord & { manifest: unknown }>>(),
  },
  imageCommit: {
    method: "POST",
    path: "/v1/images/commit",
    body: { vm: { type: "string", required: true }, name: { type: "string", required: true } },
    ndjson: res<ResultEvent<ImageRecord & { manifest: unknown; chain: ImageChainLink[] }>>(),
  },
  imageShow: { method: "GET", path: "/v1/images/:name", json: res<ImageRecord & { manifest: unknown; chain: ImageChainLink[] }>() },
  imageRemove: { method: "DELETE", path: "/v1/images/:name", query: { force: "flag" }, json: res<{ deleted: string }>() },

  sessionList: { method: "GET", path: "/v1/vms/:vm/sessions", json: res<{ sessions: GuestSession[] }>() },
  sessionStart: {
    method: "POST",
    path: "/v1/vms/:vm/sessions",
    body: {
      name: { type: "string" },
      command: { type: "string", required: true },
      args: { type: "string[]" },
      cwd: { type: "string" },
      stdinMode: { type: "string" },
      requiredCommands: { type: "string[]" },
      // as vmExec's: used to launch the process, not kept in the session's row (env may hold secrets)
      env: { type: "string[]" },
      user: { type: "string" },
      timeoutMs: { type: "integer" },
    },
    json: res<GuestSession>(),
    status: 201,
  },
  sessionShow: { method: "GET", path: "/v1/vms/:vm/sessions/:session", json: res<GuestSession>() },
  sessionRemove: { method: "DELETE", path: "/v1/vms/:vm/sessions/:session", query: { force: "flag" }, json: res<{ deleted: string }>() },
  sessionSend: { method: "POST", path: "/v1/vms/:vm/sessions/:session/send", body: "raw", json: res<{ bytesWritten: number; session: GuestSession }>() },
  /** The session's command reads EOF on its stdin pipe; closed false when its runner was gone. */
  sessionCloseStdin: { method: "POST", path: "/v1/vms/:vm/sessions/:session/close-stdin", json: res<{ closed: boolean; session: GuestSession }>() },
  sessionStop: { method: "POST", path: "/v1/vms/:vm/sessions/:session/stop", body: { graceMs: { type: "integer" } }, json: res<GuestSession>() },
  sessionKill: { method: "POST", path: "/v1/vms/:vm/sessions/:session/kill", body: { graceMs: { type: "integer" } }, json: res<GuestSession>() },
  sessionLogs: {
    method: "GET",
    path: "/v1/vms/:vm/sessions/:session/logs",
    query: { stream: "string", offset: "offset", follow: "flag" },
    ndjson: res<ResultEvent<{ offset: number; session?: GuestSession }>>(),
  },

  /** JSON (201), or with ?stream=1 an NDJSON stream with progress. */
  workspacePrepare: {
    method: "POST",
    path: "/v1/vms/:vm/workspace",
    query: { stream: "flag" },
    body: { sourcePath: { type: "string", required: true }, guestPath: { type: "string" }, readOnly: { type: "boolean" }, force: { type: "boolean" } },
    json: res<Workspace>(),
    status: 201,
    ndjson: res<ResultEvent<Workspace>>(),
  },
  /** The patch vs HEAD as raw bytes, or with ?format=json as {patch}. */
  workspaceDiff: { method: "GET", path: "/v1/vms/:vm/workspace/diff", query: { guestPath: "string", format: "string" }, raw: true, json: res<{ patch: string }>() },
  /** {format: "patch"}: raw format-patch bytes; {format: "fetch", sourcePath}: refs fetched into the source repo (JSON). */
  workspaceExport: {
    method: "POST",
    path: "/v1/vms/:vm/workspace/export",
    body: { format: { type: "string", required: true }, guestPath: { type: "string" }, sourcePath: { type: "string" } },
    raw: true,
    json: res<FetchResult>(),
  },

  // Files in a running VM, over its pooled SSH connection; every path is an absolute guest path.
  // Bodies and answers that carry file bytes stream (raw), never held whole by the daemon.
  fileStat: { method: "GET", path: "/v1/vms/:vm/files/stat", query: { path: "string" }, json: res<FileInfo>() },
  /** Entries under a dir, `depth` levels down (default 1). */
  fileList: { method: "GET", path: "/v1/vms/:vm/files/list", query: { path: "string", depth: "offset" }, json: res<{ entries: FileInfo[] }>() },
  fileRead: { method: "GET", path: "/v1/vms/:vm/files/read", query: { path: "string" }, raw: true },
  /** The body (streamed) becomes the file, atomically; parent dirs are made; `mode` is octal. */
  fileWrite: { method: "POST", path: "/v1/vms/:vm/files/write", query: { path: "string", mode: "string" }, body: "raw", json: res<FileInfo>() },
  fileMkdir: { method: "POST", path: "/v1/vms/:vm/files/mkdir", body: { path: { type: "string", required: true }, parents: { type: "boolean" } }, json: res<FileInfo & { created: boolean }>() },
  fileRemove: { method: "DELETE", path: "/v1/vms/:vm/files", query: { path: "string", recursive: "flag" }, json: res<{ deleted: string }>() },
  /** NDJSON `file` events (ready first) until the client goes away or the dir does; `interval` in ms (polled in the guest). */
  fileWatch: { method: "GET", path: "/v1/vms/:vm/files/watch", query: { path: "string", recursive: "flag", interval: "offset" }, ndjson: res<ResultEvent<{ events: number }>>() },
  /** A tar of the path with its basename as the one top-level entry (`vm cp VM:SRC …`). */
  fileArchiveGet: { method: "GET", path: "/v1/vms/:vm/files/archive", query: { path: "string" }, raw: true },
  /** Untar the body at `path` by docker cp's rules (`name`: the tar's one top-level entry; none: a user's tar into an existing dir; `contents`: SRC was DIR/.; `kind`: dir or file, what `name` is, when the sender knows). */
  fileArchivePut: {
    method: "POST",
    path: "/v1/vms/:vm/files/archive",
    query: { path: "string", name: "string", contents: "flag", kind: "string" },
    body: "raw",
    json: res<{ path: string; bytes: number }>(),
  },

  // The E2B endpoint (`banger e2b …`): opt-in, remembered across daemon restarts; src/daemon/e2b/.
  e2bStatus: { method: "GET", path: "/v1/e2b", json: res<E2BStatus>() },
  /** Listen (default 127.0.0.1:49982, or where the last serve listened); `vmm`: what sandboxes boot with ("" = the default). */
  e2bServe: { method: "POST", path: "/v1/e2b/serve", body: { listen: { type: "string" }, vmm: { type: "string" } }, json: res<E2BStatus>() },
  e2bStop: { method: "POST", path: "/v1/e2b/stop", body: {}, json: res<E2BStatus>() },
  /** The three variables; the key is `key` checked, or banger's own env key (made once, kept 0600). */
  e2bEnv: { method: "POST", path: "/v1/e2b/env", body: { key: { type: "string" } }, json: res<{ apiUrl: string; sandboxUrl: string; apiKey: string; keyId: string; created: boolean }>() },
  /** The key itself is in this answer only: stored hashed, never shown again. */
  e2bKeyCreate: { method: "POST", path: "/v1/e2b/keys", body: { name: { type: "string" } }, json: res<E2BKeyInfo & { key: string }>(), status: 201 },
  e2bKeyList: { method: "GET", path: "/v1/e2b/keys", json: res<{ keys: E2BKeyInfo[] }>() },
  e2bKeyRemove: { method: "DELETE", path: "/v1/e2b/keys/:key", json: res<{ deleted: string; id: string }>() },
  /** Build (or find cached) the image behind the `base` template. */
  e2bTemplateBuild: { method: "POST", path: "/v1/e2b/templates/base/build", body: { force: { type: "boolean" } }, ndjson: res<ResultEvent<{ image: string }>>() },
});

export type Routes = typeof routes;
export type RouteName = keyof Routes;

type ParamNames<P extends string> = P extends `${string}:${infer N}/${infer Rest}` ? N | ParamNames<`/${Rest}`> : P extends `${string}:${infer N}` ? N : never;
/** Path parameters of route K, by name. */
export type ParamsOf<K extends RouteName> = { [N in ParamNames<Routes[K]["path"]>]: string };
/** Query of route K as its handler sees it (parsed, defaults filled in). */
export type QueryOf<K extends RouteName> = Routes[K] extends { query: infer Q extends QuerySpec } ? InferQuery<Q> : {};
/** Body of route K as its handler sees it (checked against the schema; a raw body is the handler's to read). */
export type BodyOf<K extends RouteName> = Routes[K] extends { body: infer S extends Schema } ? Infer<S> : undefined;
/** What route K answers as JSON. */
export type JsonOf<K extends RouteName> = Routes[K] extends { json: Res<infer T> } ? T : never;
/** The last event of route K's NDJSON stream. */
export type StreamOf<K extends RouteName> = Routes[K] extends { ndjson: Res<infer T> } ? T : never;

export type JsonRoute = { [K in RouteName]: Routes[K] extends { json: Res<unknown> } ? K : never }[RouteName];
export type StreamRoute = { [K in RouteName]: Routes[K] extends { ndjson: Res<unknown> } ? K : never }[RouteName];
export type RawRoute = { [K in RouteName]: Routes[K] extends { raw: true } ? K : never }[RouteName];

/** What a caller sends to route K: only the keys the route has (params, query, body or raw bytes). */
export type RequestOf<K extends RouteName> = Simplify<
  ([ParamNames<Routes[K]["path"]>] extends [never] ? {} : { params: ParamsOf<K> }) &
    (Routes[K] extends { query: QuerySpec } ? { query?: Partial<QueryOf<K>> } : {}) &
    (Routes[K] extends { body: "raw" }
      ? { raw: Uint8Array }
      : Routes[K] extends { body: infer S extends Schema }
        ? {} extends Infer<S>
          ? { body?: Infer<S> }
          : { body: Infer<S> }
        : {})
>;
/** The request argument: optional when the route needs nothing. */
export type RequestArgs<K extends RouteName> = {} extends RequestOf<K> ? [req?: RequestOf<K>] : [req: RequestOf<K>];

/** The path and query of a request to `def` (parameters percent-encoded; false flags and undefined values left out). */
export function requestPath(def: RouteDef, req: { params?: Record<string, string>; query?: Record<string, string | number | boolean | undefined> } = {}): string {
  const path = def.path.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const v = req.params?.[name];
    if (v === undefined) throw new Error(`${def.method} ${def.path}: path parameter "${name}" is missing`);
    return encodeURIComponent(v);
  });
  const q: string[] = [];
  for (const [k, v] of Object.entries(req.query ?? {})) {
    if (v === undefined || v === false) continue;
    q.push(`${encodeURIComponent(k)}=${v === true ? "1" : encodeURIComponent(String(v))}`);
  }
  return q.length ? `${path}?${q.join("&")}` : path;
}
