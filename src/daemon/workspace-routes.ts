import type { Engine } from "../core/engine.ts";
import { BangerError } from "../shared/errors.ts";
import type { Logger } from "../core/plugin.ts";
import type { Host } from "../host/types.ts";
import { WorkspaceEngine, type WorkspaceDeps } from "../workspace/engine.ts";
import { json, ndjson, parseBody } from "./http.ts";
import type { SSHPool } from "./ssh-pool.ts";

export interface WorkspaceRouteDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Host;
  log: Logger;
  /** Replace the host tar (tests). */
  tar?: WorkspaceDeps["tar"];
}

const PREPARE_SCHEMA = {
  sourcePath: { type: "string", required: true },
  guestPath: { type: "string" },
  readOnly: { type: "boolean" },
} as const;

const EXPORT_SCHEMA = {
  format: { type: "string", required: true },
  guestPath: { type: "string" },
  sourcePath: { type: "string" },
} as const;

/**
 * Workspace routes: POST /v1/vms/:vm/workspace (prepare; `?stream=1` for NDJSON progress),
 * GET …/workspace/diff (patch vs HEAD), POST …/workspace/export ({format: "patch"} → raw
 * format-patch bytes; {format: "fetch", sourcePath} → refs fetched into the source repo).
 */
export function createWorkspaceRoutes(d: WorkspaceRouteDeps) {
  const workspaces = new WorkspaceEngine({ host: d.host, log: d.log, dial: (vm) => d.ssh.get(vm), exec: d.host.exec, fs: d.host.fs, hooks: d.engine.hooks, tar: d.tar });

  async function route(req: Request, url: URL, parts: string[]): Promise<Response | null> {
    const [, group, vmName, sub, action] = parts;
    if (group !== "vms" || sub !== "workspace" || !vmName || parts.length > 5) return null;
    if (!action && req.method === "POST") {
      const body = await parseBody<{ sourcePath: string; guestPath?: string; readOnly?: boolean }>(req, PREPARE_SCHEMA);
      const vm = await d.engine.running(vmName);
      const prepare = async (progress?: (m: string) => void, signal?: AbortSignal) => {
        const ws = await workspaces.prepare({ vm, ...body, progress, signal });
        d.log.info(`workspace ${ws.sourcePath} → ${vm.name}:${ws.guestPath} (${ws.files} files, ${ws.bytes} bytes${ws.readOnly ? ", read-only" : ""})`);
        return ws;
      };
      if (url.searchParams.get("stream") === "1") return ndjson(req, async (emit) => ({ type: "result", data: await prepare((m) => emit.progress(m), emit.signal) }));
      return json(await prepare(), 201);
    }
    if (action === "diff" && req.method === "GET") {
      const vm = await d.engine.running(vmName);
      const patch = await workspaces.diff(vm, url.searchParams.get("guestPath") ?? undefined);
      if (url.searchParams.get("format") === "json") return json({ patch: new TextDecoder().decode(patch) });
      return new Response(patch, { headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    if (action === "export" && req.method === "POST") {
      const body = await parseBody<{ format: string; guestPath?: string; sourcePath?: string }>(req, EXPORT_SCHEMA);
      if (body.format === "patch") {
        const vm = await d.engine.running(vmName);
        const patch = await workspaces.exportPatch({ vm, guestPath: body.guestPath });
        return new Response(patch, { headers: { "content-type": "application/octet-stream" } });
      }
      if (body.format === "fetch") {
        if (!body.sourcePath) throw new BangerError("E_BAD_REQUEST", `export with format "fetch" needs "sourcePath" (the host repo to fetch into)`);
        const vm = await d.engine.running(vmName);
        const r = await workspaces.exportFetch({ vm, guestPath: body.guestPath, sourcePath: body.sourcePath });
        d.log.info(`workspace export ${vm.name}:${r.guestPath} → ${r.sourcePath} ${r.refs.map((x) => x.ref).join(" ") || "(nothing new)"}`);
        return json(r);
      }
      throw new BangerError("E_BAD_REQUEST", `field "format" must be "patch" or "fetch", got ${JSON.stringify(body.format)}`);
    }
    return null;
  }

  return { engine: workspaces, route };
}
