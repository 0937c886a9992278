import { randomBytes } from "node:crypto";
import type { Logger } from "../../core/plugin.ts";
import type { Clock } from "../../host/types.ts";
import type { VMStats, VMView } from "../../shared/api.ts";
import type { E2BSandboxRecord } from "../../shared/e2b.ts";
import { BangerError, errorMessage, isBangerError } from "../../shared/errors.ts";
import type { ImageRecord, SnapshotRecord } from "../../shared/model.ts";
import type { E2BRepo } from "../../store/e2b.ts";
import { faultPoint } from "../../host/faults.ts";
import { callDaemon, type DaemonApp } from "./internal.ts";
import { newAccessToken } from "./keys.ts";
import { BASE_IMAGE, BASE_TEMPLATE } from "./template.ts";

/**
 * The envd version sandboxes report. The SDK gates features on it (0.3.0:
 * stdin off, 0.4.0: no default user, 0.5.2: close stdin, 0.5.7: octet-stream
 * uploads, 0.6.x: file metadata and watch options); this is the newest gate,
 * the same behaviour as the SDK's debug mode that envd's own tests use.
 */
export const ENVD_VERSION = "0.6.4";
/**
 * The timeout of a create that names none (seconds): the SDK sends none by
 * default, and E2B's documented behaviour is five minutes (its OpenAPI says
 * 15, which a TCG boot would nearly use up).
 */
const DEFAULT_TIMEOUT_S = 300;
/** E2B's longest (Pro) timeout; banger's TTL takes up to 24 h too. */
const MAX_TIMEOUT_S = 86_400;
/** The deprecated clientID E2B still returns: a constant. */
const CLIENT_ID = "6532622b";
const PAGE_MAX = 100;

export interface ControlDeps {
  app: DaemonApp;
  repo: E2BRepo;
  log: Logger;
  clock: Clock;
  /** The VMM new sandboxes get ("": the daemon's default). */
  vmm(): string;
  /** Builds the `base` template's image the first time it is asked for. */
  base: { ensure(): Promise<void> };
  /** Returned as the sandbox's `domain`: getHost(port) is `PORT-ID.<domain>`, which the listener also routes. */
  domain(): string;
}

/** An E2B error: `{code, message}` with that HTTP status, as the SDK reads it. */
export function e2bError(code: number, message: string): Response {
  return Response.json({ code, message }, { status: code });
}

/** A banger error as E2B's shape: not found stays 404, bad input 400, a state clash 409, the rest 500. */
export function e2bErrorOf(e: unknown): Response {
  const status = isBangerError(e) ? (e.httpStatus === 413 ? 400 : e.httpStatus === 504 ? 500 : e.httpStatus) : 500;
  return e2bError(status, errorMessage(e));
}

type _Ctx = { req: Request; url: URL; deps: ControlDeps; m: RegExpExecArray };
type _Route = { method: string; re: RegExp; fn: (c: _Ctx) => Promise<Response> };

const ID = "([a-z0-9][a-z0-9-]{0,62})";

const ROUTES: _Route[] = [
  { method: "POST", re: /^\/(?:v2\/)?sandboxes$/, fn: (c) => _create(c) },
  { method: "GET", re: /^\/v2\/sandboxes$/, fn: (c) => _list(c, true) },
  { method: "GET", re: /^\/sandboxes$/, fn: (c) => _list(c, false) },
  { method: "GET", re: new RegExp(`^/sandboxes/${ID}$`), fn: (c) => _info(c) },
  { method: "DELETE", re: new RegExp(`^/sandboxes/${ID}$`), fn: (c) => _kill(c) },
  { method: "POST", re: new RegExp(`^/sandboxes/${ID}/timeout$`), fn: (c) => _setTimeout(c) },
  { method: "POST", re: new RegExp(`^/sandboxes/${ID}/pause$`), fn: (c) => _pause(c) },
  { method: "POST", re: new RegExp(`^/(?:v2/)?sandboxes/${ID}/(?:connect|resume)$`), fn: (c) => _connect(c) },
  { method: "POST", re: new RegExp(`^/sandboxes/${ID}/refreshes$`), fn: (c) => _refresh(c) },
  { method: "GET", re: new RegExp(`^/sandboxes/${ID}/metrics$`), fn: (c) => _metrics(c) },
  { method: "POST", re: new RegExp(`^/sandboxes/${ID}/snapshots$`), fn: (c) => _snapshot(c) },
  { method: "POST", re: new RegExp(`^/sandboxes/${ID}/fork$`), fn: (c) => _fork(c) },
  { method: "GET", re: /^\/snapshots$/, fn: (c) => _listSnapshots(c) },
  { method: "DELETE", re: /^\/templates\/([^/]+)$/, fn: (c) => _deleteSnapshot(c) },
];

/** A control-plane request whose API key the listener has already checked. */
export async function handleControl(req: Request, deps: ControlDeps): Promise<Response> {
  const url = new URL(req.url);
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch {
    return e2bError(400, "malformed percent-encoding in the path");
  }
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (!m || r.method !== req.method) continue;
    try {
      return await r.fn({ req, url, deps, m });
    } catch (e) {
      return e2bErrorOf(e);
    }
  }
  return e2bError(404, `banger's E2B endpoint has no ${req.method} ${url.pathname}`);
}

// --- shapes ---

function _state(vm: VMView): "running" | "paused" {
  // a stopped sandbox (its TTL stopped it, or `vm stop`) resumes like a paused one: connect boots it
  return vm.runtime.state === "running" && vm.alive ? "running" : "paused";
}

function _endAt(vm: VMView, sb: E2BSandboxRecord): string {
  return vm.lifetime?.expiresAt || new Date(Date.parse(sb.startedAt) + MAX_TIMEOUT_S * 1000).toISOString();
}

/** ListedSandbox: what list and info share. No access token: it is handed out by create and connect only. */
export function listedSandbox(sb: E2BSandboxRecord, vm: VMView) {
  return {
    templateID: sb.templateId,
    sandboxID: sb.id,
    clientID: CLIENT_ID,
    startedAt: sb.startedAt,
    endAt: _endAt(vm, sb),
    cpuCount: vm.spec.cpus,
    memoryMB: vm.spec.memoryMiB,
    diskSizeMB: vm.spec.diskMiB,
    metadata: sb.metadata,
    state: _state(vm),
    envdVersion: ENVD_VERSION,
    volumeMounts: [],
  };
}

function _created(sb: E2BSandboxRecord, domain: string) {
  return { templateID: sb.templateId, sandboxID: sb.id, clientID: CLIENT_ID, envdVersion: ENVD_VERSION, envdAccessToken: sb.accessToken, domain, ...(sb.trafficAccessToken ? { trafficAccessToken: sb.trafficAccessToken } : {}) };
}

/** `network.allowPublicTraffic: false`: guest ports want a token (anything else of `network` is not done: egress is `vm egress`). */
function _privateTraffic(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== "object" || Array.isArray(v)) throw new BangerError("E_BAD_REQUEST", "network must be an object");
  const allow = (v as { allowPublicTraffic?: unknown }).allowPublicTraffic;
  if (allow !== undefined && typeof allow !== "boolean") throw new BangerError("E_BAD_REQUEST", "network.allowPublicTraffic must be true or false");
  return allow === false;
}

// --- body checks ---

/** Control-plane bodies are small (ids, metadata, env vars), as the daemon's own JSON bodies are. */
const MAX_BODY_BYTES = 1 << 20;

async function _body(req: Request): Promise<Record<string, unknown>> {
  if (Number(req.headers.get("content-length") ?? 0) > MAX_BODY_BYTES) throw new BangerError("E_BAD_REQUEST", `the body is over ${MAX_BODY_BYTES} bytes`);
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) throw new BangerError("E_BAD_REQUEST", `the body is over ${MAX_BODY_BYTES} bytes`);
  if (!text) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new BangerError("E_BAD_REQUEST", "the body is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new BangerError("E_BAD_REQUEST", "the body must be a JSON object");
  return v as Record<string, unknown>;
}

function _strMap(v: unknown, what: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v) || !Object.values(v as object).every((x) => typeof x === "string")) throw new BangerError("E_BAD_REQUEST", `${what} must be an object of strings`);
  return { ...(v as Record<string, string>) };
}

/** A timeout in seconds → ms for banger's TTL. */
export function timeoutMs(v: unknown, fallbackS: number | undefined): number | undefined {
  if (v === undefined || v === null) return fallbackS === undefined ? undefined : fallbackS * 1000;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new BangerError("E_BAD_REQUEST", `timeout must be whole seconds >= 0, got ${JSON.stringify(v).slice(0, 40)}`);
  if (v > MAX_TIMEOUT_S) throw new BangerError("E_BAD_REQUEST", `timeout is at most ${MAX_TIMEOUT_S} seconds (24 h), got ${v}`);
  return v * 1000;
}

// --- lookups ---

/** The sandbox and its VM; a sandbox whose VM is gone (deleted under us) is not found. */
export async function findSandbox(deps: Pick<ControlDeps, "app" | "repo">, id: string): Promise<{ sb: E2BSandboxRecord; vm: VMView } | null> {
  const sb = deps.repo.getSandbox(id);
  if (!sb) return null;
  try {
    return { sb, vm: await callDaemon<VMView>(deps.app, "GET", `/v1/vms/${encodeURIComponent(sb.vmId)}`) };
  } catch (e) {
    if (isBangerError(e) && e.httpStatus === 404) return null;
    throw e;
  }
}

async function _must(c: _Ctx): Promise<{ sb: E2BSandboxRecord; vm: VMView }> {
  const id = c.m[1]!;
  const found = await findSandbox(c.deps, id);
  if (!found) throw new BangerError("E_NOT_FOUND", `sandbox "${id}" not found`);
  return found;
}

function _newId(): string {
  // base36, lower case: a valid VM name, and readable in `vm list`
  const bytes = randomBytes(16);
  let s = "";
  for (const b of bytes) s += "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36];
  return `e2b-${s}`;
}

// --- handlers ---

/** The image a template ID names: `base`, a snapshot (`VM@SNAP`, from createSnapshot) or any banger image. */
async function _source(deps: ControlDeps, templateId: string): Promise<{ image?: string; from?: string }> {
  if (templateId.includes("@")) {
    await callDaemon<SnapshotRecord>(deps.app, "GET", `/v1/snapshots/${encodeURIComponent(templateId)}`).catch((e: unknown) => {
      throw isBangerError(e) && e.httpStatus === 404 ? new BangerError("E_NOT_FOUND", `template "${templateId}" not found`) : e;
    });
    return { from: templateId };
  }
  if (templateId === BASE_TEMPLATE) {
    await deps.base.ensure();
    return { image: BASE_IMAGE };
  }
  await callDaemon<ImageRecord>(deps.app, "GET", `/v1/images/${encodeURIComponent(templateId)}`).catch((e: unknown) => {
    throw isBangerError(e) && e.httpStatus === 404 ? new BangerError("E_NOT_FOUND", `template "${templateId}" not found: no banger image of that name (\`banger image list\`)`) : e;
  });
  return { image: templateId };
}

/**
 * Make a VM of the source and record it as a sandbox. The name is recorded as pending first: a daemon killed
 * before the sandbox is recorded leaves a VM the next daemon deletes (sweepPendingSandboxes); a failure here
 * deletes it at once.
 */
async function _makeSandbox(deps: ControlDeps, o: { templateId: string; source: { image?: string; from?: string }; ttlMs: number; ttlAction: "delete" | "stop"; metadata: Record<string, string>; envVars: Record<string, string>; privateTraffic: boolean }): Promise<E2BSandboxRecord> {
  const id = _newId();
  const vmm = deps.vmm();
  deps.repo.addPending(id, deps.clock.now().toISOString());
  try {
    // the TTL rides on the create too; a clone takes its snapshot's shape (no driver), and its TTL as any VM does
    const vm = o.source.from
      ? await callDaemon<VMView>(deps.app, "POST", "/v1/vms", { name: id, from: o.source.from, start: true, ttlMs: o.ttlMs, ttlAction: o.ttlAction })
      : await callDaemon<VMView>(deps.app, "POST", "/v1/vms", { name: id, image: o.source.image, start: true, ttlMs: o.ttlMs, ttlAction: o.ttlAction, ...(vmm ? { driver: vmm } : {}) });
    // …and counts from now, when the sandbox is up, as E2B's does (a boot under TCG takes a good part of 15 s)
    await callDaemon(deps.app, "POST", `/v1/vms/${id}/lifetime`, { ttlMs: o.ttlMs, ttlAction: o.ttlAction });
    await faultPoint("e2b:after-vm");
    const sb: E2BSandboxRecord = { id, vmId: vm.id, templateId: o.templateId, metadata: o.metadata, envVars: o.envVars, accessToken: newAccessToken(), ...(o.privateTraffic ? { trafficAccessToken: newAccessToken() } : {}), startedAt: deps.clock.now().toISOString() };
    deps.repo.putSandbox(sb);
    deps.log.info(`e2b: sandbox ${id} created from template ${o.templateId}`);
    return sb;
  } catch (e) {
    await abandonSandbox(deps, id);
    throw e;
  }
}

/**
 * A pending sandbox that will not be one: its VM deleted (a create that failed after it was made leaves it, in
 * `error`), then the name no longer pending. A deletion that fails keeps it pending, for the next sweep.
 */
export async function abandonSandbox(deps: Pick<ControlDeps, "app" | "repo" | "log">, id: string): Promise<boolean> {
  try {
    await callDaemon(deps.app, "DELETE", `/v1/vms/${encodeURIComponent(id)}?force=1`);
  } catch (e) {
    if (!(isBangerError(e) && e.httpStatus === 404)) {
      deps.log.warn(`e2b: deleting the VM of unfinished sandbox ${id}: ${errorMessage(e)} (tried again at the next daemon start)`);
      return false;
    }
  }
  deps.repo.clearPending(id);
  return true;
}

/**
 * At daemon start: the sandboxes a killed daemon left half made (pending, with no sandbox row) have their VMs
 * deleted; nobody holds their IDs (the create or fork that made them failed with the daemon), so nobody reaches
 * them through E2B, and a fork's would have no timeout at all.
 */
export async function sweepPendingSandboxes(deps: Pick<ControlDeps, "app" | "repo" | "log">): Promise<string[]> {
  const swept: string[] = [];
  for (const p of deps.repo.listPending()) {
    if (deps.repo.getSandbox(p.id)) {
      deps.repo.clearPending(p.id);
      continue;
    }
    if (await abandonSandbox(deps, p.id)) {
      swept.push(p.id);
      deps.log.info(`e2b: sandbox ${p.id} was left half made (pending since ${p.startedAt}) by a daemon that stopped: its VM is deleted`);
    }
  }
  return swept;
}

/**
 * At daemon start: a paused sandbox has no timeout (E2B's rule; `pause` clears it and `connect` sets it again). A
 * daemon killed between a pause and its clear, or between a connect's first timeout write and its resume, leaves a
 * paused sandbox whose timeout still runs, which would delete it while it waits: the timeout is cleared, and the
 * sandbox is as a finished pause, or an unfinished connect, leaves it.
 */
export async function clearPausedTimeouts(deps: Pick<ControlDeps, "app" | "repo" | "log">): Promise<string[]> {
  const sandboxes = deps.repo.listSandboxes();
  if (sandboxes.length === 0) return [];
  const { vms } = await callDaemon<{ vms: VMView[] }>(deps.app, "GET", "/v1/vms");
  const cleared: string[] = [];
  for (const sb of sandboxes) {
    // only a pause or connect of ours a kill cut short: a VM paused with `banger vm pause` keeps its TTL
    if (!sb.inFlight) continue;
    const vm = vms.find((v) => v.id === sb.vmId);
    if (vm && vm.runtime.state === "paused" && vm.lifetime?.expiresAt) {
      await callDaemon(deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/lifetime`, { ttlMs: 0 });
      cleared.push(sb.id);
      deps.log.info(`e2b: sandbox ${sb.id} is paused with a timeout left by a daemon that stopped mid-${sb.inFlight}: cleared (a paused sandbox waits for its connect)`);
    }
    _settled(deps.repo, sb);
  }
  return cleared;
}

async function _create(c: _Ctx): Promise<Response> {
  const body = await _body(c.req);
  const templateId = body.templateID === undefined ? BASE_TEMPLATE : body.templateID;
  if (typeof templateId !== "string" || !templateId) throw new BangerError("E_BAD_REQUEST", "templateID must be a string");
  const ttlMs = Math.max(timeoutMs(body.timeout, DEFAULT_TIMEOUT_S)!, 1);
  if (body.autoPause !== undefined && typeof body.autoPause !== "boolean") throw new BangerError("E_BAD_REQUEST", "autoPause must be true or false");
  const metadata = _strMap(body.metadata, "metadata");
  const envVars = _strMap(body.envVars, "envVars");
  const privateTraffic = _privateTraffic(body.network);
  const source = await _source(c.deps, templateId);
  // autoPause: the timeout stops the VM (its disk stays; connect boots it again) instead of deleting it
  const sb = await _makeSandbox(c.deps, { templateId, source, ttlMs, ttlAction: body.autoPause ? "stop" : "delete", metadata, envVars, privateTraffic });
  return Response.json(_created(sb, c.deps.domain()), { status: 201 });
}

/** Page through what matches: ordered by start time then id; the next token is where the page ended. */
export function pageOf<T extends { startedAt: string; sandboxID: string }>(items: T[], limit: number, nextToken: string | null): { page: T[]; next: string | null } {
  const sorted = [...items].sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.sandboxID.localeCompare(b.sandboxID));
  let from = 0;
  if (nextToken) {
    let after: string;
    try {
      after = Buffer.from(nextToken, "base64url").toString();
    } catch {
      throw new BangerError("E_BAD_REQUEST", "bad nextToken");
    }
    from = sorted.findIndex((s) => `${s.startedAt}|${s.sandboxID}` > after);
    if (from < 0) from = sorted.length;
  }
  const page = sorted.slice(from, from + limit);
  const last = page.at(-1);
  const next = from + limit < sorted.length && last ? Buffer.from(`${last.startedAt}|${last.sandboxID}`).toString("base64url") : null;
  return { page, next };
}

/** `metadata=k%3Dv%26k2%3Dv2` as the SDK sends it: pairs URL-encoded twice over. */
export function parseMetadataQuery(q: string | null): Record<string, string> {
  if (!q) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(q)) {
    try {
      out[decodeURIComponent(k)] = decodeURIComponent(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

export function parseStates(url: URL): Set<string> | null {
  const raw = url.searchParams.getAll("state").flatMap((s) => s.split(",")).filter(Boolean);
  if (raw.length === 0) return null;
  for (const s of raw) if (s !== "running" && s !== "paused") throw new BangerError("E_BAD_REQUEST", `state must be running or paused, got ${JSON.stringify(s).slice(0, 40)}`);
  return new Set(raw);
}

async function _list(c: _Ctx, v2: boolean): Promise<Response> {
  const { url, deps } = c;
  const meta = parseMetadataQuery(url.searchParams.get("metadata"));
  // v1 lists running ones only; v2 running and paused unless asked
  const states = parseStates(url) ?? new Set(v2 ? ["running", "paused"] : ["running"]);
  const limitQ = url.searchParams.get("limit");
  const limit = limitQ === null ? PAGE_MAX : Number(limitQ);
  if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_MAX) throw new BangerError("E_BAD_REQUEST", `limit must be 1..${PAGE_MAX}`);
  const template = url.searchParams.get("template");
  const { vms } = await callDaemon<{ vms: VMView[] }>(deps.app, "GET", "/v1/vms");
  const byId = new Map(vms.map((v) => [v.id, v]));
  const all = [];
  for (const sb of deps.repo.listSandboxes()) {
    const vm = byId.get(sb.vmId);
    if (!vm) continue;
    const listed = listedSandbox(sb, vm);
    if (!states.has(listed.state)) continue;
    if (template && sb.templateId !== template) continue;
    if (!Object.entries(meta).every(([k, v]) => sb.metadata[k] === v)) continue;
    all.push(listed);
  }
  const { page, next } = pageOf(all, limit, url.searchParams.get("nextToken"));
  return Response.json(page, { headers: next ? { "X-Next-Token": next } : {} });
}

async function _info(c: _Ctx): Promise<Response> {
  const { sb, vm } = await _must(c);
  return Response.json({ ...listedSandbox(sb, vm), domain: c.deps.domain() });
}

async function _kill(c: _Ctx): Promise<Response> {
  const { sb } = await _must(c);
  await callDaemon(c.deps.app, "DELETE", `/v1/vms/${encodeURIComponent(sb.vmId)}?force=1`);
  c.deps.repo.deleteSandbox(sb.id); // the row goes with the VM (foreign key); this is for a store without the cascade
  c.deps.log.info(`e2b: sandbox ${sb.id} killed`);
  return new Response(null, { status: 204 });
}

async function _setTimeout(c: _Ctx): Promise<Response> {
  const body = await _body(c.req);
  const ttl = timeoutMs(body.timeout, undefined);
  if (ttl === undefined) throw new BangerError("E_BAD_REQUEST", "timeout is required (seconds)");
  const { sb } = await _must(c);
  // 0 would mean "no TTL" to banger; to E2B it means now: the shortest TTL banger has
  await callDaemon(c.deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/lifetime`, { ttlMs: Math.max(ttl, 1) });
  return new Response(null, { status: 204 });
}

async function _refresh(c: _Ctx): Promise<Response> {
  const body = await _body(c.req);
  const { sb } = await _must(c);
  const ttl = timeoutMs(body.duration, DEFAULT_TIMEOUT_S)!;
  await callDaemon(c.deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/lifetime`, { ttlMs: Math.max(ttl, 1) });
  return new Response(null, { status: 204 });
}

async function _pause(c: _Ctx): Promise<Response> {
  const { sb, vm } = await _must(c);
  if (_state(vm) === "paused") return e2bError(409, `sandbox "${sb.id}" is already paused`);
  c.deps.repo.putSandbox({ ...sb, inFlight: "pause" });
  try {
    await callDaemon(c.deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/pause`, {});
    await faultPoint("e2b:after-pause");
    // a paused sandbox waits for its connect, as E2B's do: no timeout runs while it is paused (a daemon killed before
    // this write: clearPausedTimeouts at its next start, by the mark above)
    await callDaemon(c.deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/lifetime`, { ttlMs: 0 });
  } finally {
    // done, or failed with an answer: only a kill leaves the mark
    _settled(c.deps.repo, sb);
  }
  return new Response(null, { status: 204 });
}

/** The sandbox's pause or connect is done (or was finished for it): its in-flight mark goes. */
function _settled(repo: ControlDeps["repo"], sb: E2BSandboxRecord): void {
  const now = repo.getSandbox(sb.id);
  if (!now?.inFlight) return;
  const { inFlight: _, ...rest } = now;
  repo.putSandbox(rest);
}

async function _connect(c: _Ctx): Promise<Response> {
  const body = await _body(c.req);
  const ttl = timeoutMs(body.timeout, undefined);
  const { sb, vm } = await _must(c);
  const path = `/v1/vms/${encodeURIComponent(sb.vmId)}`;
  let status = 200;
  if (_state(vm) === "paused") {
    // resumed, its timeout runs again (pause cleared it): set before the resume too, so a daemon killed between the
    // two leaves a sandbox that goes by itself, never a running one with no timeout
    const timeout = { ttlMs: ttl || DEFAULT_TIMEOUT_S * 1000 };
    c.deps.repo.putSandbox({ ...sb, inFlight: "connect" });
    try {
      await callDaemon(c.deps.app, "POST", `${path}/lifetime`, timeout);
      // paused; or stopped (its memory is gone; an autoPause timeout, `vm stop`): boot it again, its disk kept
      await callDaemon(c.deps.app, "POST", `${path}/${vm.runtime.state === "paused" ? "resume" : "start"}`, {});
      // …and counted from now, when it runs again (a boot under TCG takes seconds)
      await callDaemon(c.deps.app, "POST", `${path}/lifetime`, timeout);
    } finally {
      _settled(c.deps.repo, sb);
    }
    status = 201;
  } else if (ttl !== undefined) {
    // connect to a running one never shortens its life, as E2B's does not
    const left = vm.lifetime?.expiresAt ? Date.parse(vm.lifetime.expiresAt) - c.deps.clock.now().getTime() : Number.POSITIVE_INFINITY;
    if (ttl > left) await callDaemon(c.deps.app, "POST", `${path}/lifetime`, { ttlMs: ttl });
  }
  return Response.json(_created(sb, c.deps.domain()), { status });
}

async function _metrics(c: _Ctx): Promise<Response> {
  const { sb, vm } = await _must(c);
  if (_state(vm) !== "running") return Response.json([]);
  const s = await callDaemon<VMStats>(c.deps.app, "GET", `/v1/vms/${encodeURIComponent(sb.vmId)}/stats`);
  const at = new Date(s.at);
  return Response.json([
    {
      timestamp: s.at,
      timestampUnix: Math.floor(at.getTime() / 1000),
      cpuCount: s.vcpus,
      // E2B's is the sandbox's share of its own CPUs; banger measures % of one host CPU
      cpuUsedPct: s.vcpus ? s.cpuPercent / s.vcpus : s.cpuPercent,
      memUsed: s.memUsedBytes,
      memTotal: s.memTotalBytes,
      diskUsed: s.diskUsedBytes,
      diskTotal: s.diskSizeBytes,
    },
  ]);
}

/** A snapshot's E2B id is banger's `VM@SNAP`: it is also a template ID create takes. */
const _snapshotId = (s: SnapshotRecord): string => `${s.vmName}@${s.name}`;

async function _snapshot(c: _Ctx): Promise<Response> {
  const body = await _body(c.req);
  if (body.name !== undefined && typeof body.name !== "string") throw new BangerError("E_BAD_REQUEST", "name must be a string");
  const { sb } = await _must(c);
  const snap = await callDaemon<SnapshotRecord>(c.deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/snapshots`, body.name ? { name: body.name } : {});
  return Response.json({ snapshotID: _snapshotId(snap), names: [_snapshotId(snap)] }, { status: 201 });
}

async function _listSnapshots(c: _Ctx): Promise<Response> {
  const { url, deps } = c;
  const sandboxId = url.searchParams.get("sandboxID");
  const sb = sandboxId ? deps.repo.getSandbox(sandboxId) : null;
  if (sandboxId && !sb) return Response.json([]);
  const { snapshots } = await callDaemon<{ snapshots: SnapshotRecord[] }>(deps.app, "GET", `/v1/snapshots${sb ? `?vm=${encodeURIComponent(sb.vmId)}` : ""}`);
  const sandboxVMs = new Set(deps.repo.listSandboxes().map((s) => s.vmId));
  const items = snapshots
    .filter((s) => _sandboxSnapshot(s, sandboxVMs))
    .map((s) => ({ snapshotID: _snapshotId(s), names: [_snapshotId(s)], startedAt: s.createdAt, sandboxID: s.vmName }));
  const limitQ = url.searchParams.get("limit");
  const limit = limitQ === null ? PAGE_MAX : Math.min(Math.max(Number(limitQ) || PAGE_MAX, 1), PAGE_MAX);
  const { page, next } = pageOf(items, limit, url.searchParams.get("nextToken"));
  return Response.json(page.map((p) => ({ snapshotID: p.snapshotID, names: p.names })), { headers: next ? { "X-Next-Token": next } : {} });
}

/** What the E2B endpoint may see and remove: a sandbox's snapshots, and those of sandboxes since killed (their VM name says so); never warm-start templates, never the user's own. */
function _sandboxSnapshot(s: SnapshotRecord, sandboxVMs: Set<string>): boolean {
  return !s.template && (sandboxVMs.has(s.vmId) || s.vmName.startsWith("e2b-"));
}

async function _deleteSnapshot(c: _Ctx): Promise<Response> {
  const id = c.m[1]!;
  if (!id.includes("@")) return e2bError(404, `snapshot "${id}" not found (banger's templates are images: remove one with \`banger image rm\`)`);
  const notFound = () => e2bError(404, `snapshot "${id}" not found`);
  try {
    // only what the list shows: an E2B key must not remove the user's own checkpoints or warm templates
    const s = await callDaemon<SnapshotRecord>(c.deps.app, "GET", `/v1/snapshots/${encodeURIComponent(id)}`);
    if (!_sandboxSnapshot(s, new Set(c.deps.repo.listSandboxes().map((x) => x.vmId)))) return notFound();
    await callDaemon(c.deps.app, "DELETE", `/v1/snapshots/${encodeURIComponent(id)}`);
  } catch (e) {
    if (isBangerError(e) && e.httpStatus === 404) return notFound();
    throw e;
  }
  return new Response(null, { status: 204 });
}

async function _fork(c: _Ctx): Promise<Response> {
  const body = await _body(c.req);
  const count = body.count === undefined ? 1 : body.count;
  if (typeof count !== "number" || !Number.isInteger(count) || count < 1 || count > 16) throw new BangerError("E_BAD_REQUEST", "count must be 1..16");
  const ttl = timeoutMs(body.timeout, DEFAULT_TIMEOUT_S);
  const { sb } = await _must(c);
  const names = Array.from({ length: count }, () => _newId());
  // pending until each is a sandbox (see _makeSandbox): a fork's clones have no timeout until one is set below
  for (const n of names) c.deps.repo.addPending(n, c.deps.clock.now().toISOString());
  let out: { snapshot: SnapshotRecord; vms: VMView[] };
  try {
    out = await callDaemon<{ snapshot: SnapshotRecord; vms: VMView[] }>(c.deps.app, "POST", `/v1/vms/${encodeURIComponent(sb.vmId)}/fork`, { names });
  } catch (e) {
    for (const n of names) await abandonSandbox(c.deps, n);
    throw e;
  }
  const results = [];
  for (const vm of out.vms) {
    try {
      await callDaemon(c.deps.app, "POST", `/v1/vms/${vm.name}/lifetime`, { ttlMs: Math.max(ttl!, 1), ttlAction: "delete" });
      const child: E2BSandboxRecord = { ...sb, id: vm.name, vmId: vm.id, accessToken: newAccessToken(), ...(sb.trafficAccessToken ? { trafficAccessToken: newAccessToken() } : {}), startedAt: c.deps.clock.now().toISOString() };
      c.deps.repo.putSandbox(child);
      results.push({ sandbox: _created(child, c.deps.domain()) });
    } catch (e) {
      await abandonSandbox(c.deps, vm.name);
      results.push({ error: { code: 500, message: errorMessage(e) } });
    }
  }
  // a name the fork made no clone of
  for (const n of names) if (!out.vms.some((v) => v.name === n)) await abandonSandbox(c.deps, n);
  // the fork's own checkpoint is not the user's: it goes once the clones run (their disks stay while they need them)
  await callDaemon(c.deps.app, "DELETE", `/v1/snapshots/${encodeURIComponent(_snapshotId(out.snapshot))}`).catch((e: unknown) => c.deps.log.warn(`e2b fork: removing its snapshot: ${errorMessage(e)}`));
  c.deps.log.info(`e2b: sandbox ${sb.id} forked into ${out.vms.map((v) => v.name).join(", ")}`);
  return Response.json(results, { status: 201 });
}

