import { randomBytes } from "node:crypto";
import { BangerError } from "../shared/errors.ts";
import type { Engine } from "../core/engine.ts";
import type { GuestSession } from "../shared/model.ts";
import type { Logger } from "../core/plugin.ts";
import type { Host } from "../host/types.ts";
import { SessionEngine, type LogStream } from "../sessions/engine.ts";
import type { Store } from "../store/store.ts";
import { json, ndjson, parseBody } from "./http.ts";
import type { SSHPool } from "./ssh-pool.ts";

export interface SessionRouteDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Host;
  store: Store;
  log: Logger;
  /** Guest state root override (tests). */
  stateRoot?: string;
}

const START_SCHEMA = {
  name: { type: "string" },
  command: { type: "string", required: true },
  args: { type: "string[]" },
  cwd: { type: "string" },
  stdinMode: { type: "string" },
  requiredCommands: { type: "string[]" },
} as const;

function stream(v: string | null): LogStream {
  if (v === null || v === "stdout") return "stdout";
  if (v === "stderr") return "stderr";
  throw new BangerError("E_BAD_REQUEST", `stream must be stdout or stderr, not ${JSON.stringify(v)}`);
}

function offsetParam(v: string | null): number {
  if (v === null || v === "") return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new BangerError("E_BAD_REQUEST", `offset must be a byte offset >= 0, not ${JSON.stringify(v)}`);
  return n;
}

/** Session routes under /v1/vms/:vm/sessions, backed by the session engine over the daemon's pooled SSH connections. */
export function createSessionRoutes(d: SessionRouteDeps) {
  const sessions = new SessionEngine({
    repo: d.store.sessions,
    host: d.host,
    log: d.log,
    hooks: d.engine.hooks,
    dial: (vm) => d.ssh.get(vm),
    vmAlive: (vm) => d.engine.alive(vm),
    getVM: (x) => d.store.getVM(x),
    clock: d.host.clock,
    newId: () => randomBytes(8).toString("hex"),
    stateRoot: d.stateRoot,
  });

  async function route(req: Request, url: URL, parts: string[]): Promise<Response | null> {
    const [, group, vmName, sub, sid, action] = parts;
    if (group !== "vms" || sub !== "sessions" || !vmName) return null;
    const m = req.method;
    if (!sid && m === "GET") return json({ sessions: sessions.list(vmName) });
    if (!sid && m === "POST") {
      const body = await parseBody<{ name?: string; command: string; args?: string[]; cwd?: string; stdinMode?: string; requiredCommands?: string[] }>(req, START_SCHEMA);
      return json(await sessions.start({ vmIdOrName: vmName, ...body, stdinMode: body.stdinMode as GuestSession["stdinMode"] | undefined }), 201);
    }
    if (!sid) return null;
    const session = () => sessions.get(vmName, sid);
    if (!action && m === "GET") return json(await sessions.refresh(session()));
    if (!action && m === "DELETE") {
      await sessions.remove(session(), { force: url.searchParams.get("force") === "1" });
      return json({ deleted: sid });
    }
    if (action === "send" && m === "POST") {
      const payload = new Uint8Array(await req.arrayBuffer());
      const r = await sessions.send({ vmIdOrName: vmName, sessionIdOrName: sid, payload });
      return json(r);
    }
    if ((action === "stop" || action === "kill") && m === "POST") {
      const body = await parseBody<{ graceMs?: number }>(req, { graceMs: { type: "integer" } });
      return json(action === "kill" ? await sessions.kill(session()) : await sessions.stop(session(), body.graceMs ?? 5000));
    }
    if (action === "logs" && m === "GET") {
      const s = session();
      const which = stream(url.searchParams.get("stream"));
      const offset = offsetParam(url.searchParams.get("offset"));
      const follow = url.searchParams.get("follow") === "1";
      return ndjson(req, async (emit) => {
        const put = which === "stderr" ? emit.stderr : emit.stdout;
        if (!follow) {
          let at = offset;
          for (;;) {
            const r = await sessions.logs(s, { stream: which, offset: at });
            if (r.data.length === 0) break;
            put(r.data, r.nextOffset);
            at = r.nextOffset;
          }
          return { type: "result", data: { offset: at } };
        }
        let at = offset;
        for await (const chunk of sessions.follow(s, { stream: which, offset, signal: emit.signal })) {
          put(chunk.data, chunk.nextOffset);
          at = chunk.nextOffset;
        }
        return { type: "result", data: { offset: at, session: await sessions.refresh(sessions.get(vmName, sid)).catch(() => s) } };
      });
    }
    return null;
  }

  return {
    engine: sessions,
    async reconcile(): Promise<void> {
      const out = await sessions.reconcile();
      if (out.length) d.log.info(`session reconcile: ${out.map((s) => `${s.name}=${s.status}`).join(", ")}`);
    },
    route,
  };
}
