import type { Engine } from "../core/engine.ts";
import type { Logger } from "../core/plugin.ts";
import type { Host } from "../host/types.ts";
import { WorkspaceEngine, type WorkspaceDeps } from "../workspace/engine.ts";
import { json, parseBody } from "./http.ts";
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

/** Workspace routes: POST /v1/vms/:vm/workspace (push) and GET /v1/vms/:vm/workspace/diff (patch back). */
export function createWorkspaceRoutes(d: WorkspaceRouteDeps) {
  const workspaces = new WorkspaceEngine({ dial: (vm) => d.ssh.get(vm), exec: d.host.exec, hooks: d.engine.hooks, tar: d.tar });

  async function route(req: Request, url: URL, parts: string[]): Promise<Response | null> {
    const [, group, vmName, sub, action] = parts;
    if (group !== "vms" || sub !== "workspace" || !vmName || parts.length > 5) return null;
    if (!action && req.method === "POST") {
      const body = await parseBody<{ sourcePath: string; guestPath?: string; readOnly?: boolean }>(req, PREPARE_SCHEMA);
      const vm = await d.engine.running(vmName);
      const ws = await workspaces.prepare({ vm, ...body });
      d.log.info(`workspace ${ws.sourcePath} → ${vm.name}:${ws.guestPath} (${ws.files} files${ws.readOnly ? ", read-only" : ""})`);
      return json(ws, 201);
    }
    if (action === "diff" && req.method === "GET") {
      const vm = await d.engine.running(vmName);
      const patch = await workspaces.diff(vm, url.searchParams.get("guestPath") ?? undefined);
      if (url.searchParams.get("format") === "json") return json({ patch: new TextDecoder().decode(patch) });
      return new Response(patch, { headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    return null;
  }

  return { engine: workspaces, route };
}
