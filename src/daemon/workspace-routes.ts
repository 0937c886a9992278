import type { Engine } from "../core/engine.ts";
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { Logger } from "../core/plugin.ts";
import type { Host } from "../host/types.ts";
import { readOnlyWorkspaces, WorkspaceEngine, type WorkspaceDeps } from "../workspace/engine.ts";
import { RemountReadOnlyScript } from "../workspace/scripts.ts";
import type { HandlersFor } from "./router.ts";
import type { SSHPool } from "./ssh-pool.ts";

export interface WorkspaceRouteDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Host;
  log: Logger;
  /** Replace the host tar (tests). */
  tar?: WorkspaceDeps["tar"];
}

/**
 * Workspace routes: POST /v1/vms/:vm/workspace (prepare; `?stream=1` for NDJSON progress),
 * GET …/workspace/diff (patch vs HEAD), POST …/workspace/export ({format: "patch"} → raw
 * format-patch bytes; {format: "fetch", sourcePath} → refs fetched into the source repo).
 */
export function createWorkspaceRoutes(d: WorkspaceRouteDeps) {
  const workspaces = new WorkspaceEngine({ host: d.host, log: d.log, dial: (vm) => d.ssh.get(vm), exec: d.host.exec, fs: d.host.fs, hooks: d.engine.hooks, tar: d.tar });
  // a read-only workspace stays read-only through a restart: root's bind mount went with the old boot
  // (a start from a snapshot keeps its mounts); a failure is logged, the VM runs on
  d.engine.hooks.hook(
    "workspaces",
    "vm:start:after",
    async ({ vm, restored }) => {
      if (restored) return;
      const paths = await readOnlyWorkspaces(d.host.fs, vm.runtime.vmDir);
      if (!paths.length) return;
      try {
        const guest = await d.ssh.get(vm);
        for (const p of paths) {
          const r = await guest.runScript(RemountReadOnlyScript(p));
          if (r.exitCode !== 0) d.log.warn(`vm ${vm.name}: workspace ${p} is writable again: ${r.stderr.trim().split("\n").at(-1)}`);
        }
      } catch (e) {
        d.log.warn(`vm ${vm.name}: read-only workspaces ${paths.join(", ")} not mounted read-only again: ${errorMessage(e)}`);
      }
    },
    { order: "post" },
  );

  const handlers: HandlersFor<"workspace"> = {
    workspacePrepare: async ({ params, query, body, ndjson }) => {
      const vm = await d.engine.running(params.vm);
      const prepare = async (progress?: (m: string) => void, signal?: AbortSignal) => {
        const ws = await workspaces.prepare({ vm, ...body, progress, signal });
        d.log.info(`workspace ${ws.sourcePath} → ${vm.name}:${ws.guestPath} (${ws.files} files, ${ws.bytes} bytes${ws.readOnly ? ", read-only" : ""})`);
        return ws;
      };
      if (query.stream) return ndjson(async (emit) => ({ type: "result", data: await prepare((m) => emit.progress(m), emit.signal) }));
      return prepare();
    },
    workspaceDiff: async ({ params, query }) => {
      const vm = await d.engine.running(params.vm);
      const patch = await workspaces.diff(vm, query.guestPath);
      if (query.format === "json") return { patch: new TextDecoder().decode(patch) };
      return new Response(patch, { headers: { "content-type": "text/plain; charset=utf-8" } });
    },
    workspaceExport: async ({ params, body }) => {
      if (body.format === "patch") {
        const vm = await d.engine.running(params.vm);
        const patch = await workspaces.exportPatch({ vm, guestPath: body.guestPath });
        return new Response(patch, { headers: { "content-type": "application/octet-stream" } });
      }
      if (body.format === "fetch") {
        if (!body.sourcePath) throw new BangerError("E_BAD_REQUEST", `export with format "fetch" needs "sourcePath" (the host repo to fetch into)`);
        const vm = await d.engine.running(params.vm);
        const r = await workspaces.exportFetch({ vm, guestPath: body.guestPath, sourcePath: body.sourcePath });
        d.log.info(`workspace export ${vm.name}:${r.guestPath} → ${r.sourcePath} ${r.refs.map((x) => x.ref).join(" ") || "(nothing new)"}`);
        return r;
      }
      throw new BangerError("E_BAD_REQUEST", `field "format" must be "patch" or "fetch", got ${JSON.stringify(body.format)}`);
    },
  };

  return { engine: workspaces, handlers };
}
