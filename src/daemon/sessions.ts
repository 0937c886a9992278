import { randomBytes } from "node:crypto";
import { BangerError } from "../shared/errors.ts";
import { haltedError, refuseIfPaused, type Engine } from "../core/engine.ts";
import type { GuestSession } from "../shared/model.ts";
import type { Logger } from "../core/plugin.ts";
import type { Host } from "../host/types.ts";
import { SessionEngine, vmStoppedReason, type LogStream } from "../sessions/engine.ts";
import type { Store } from "../store/store.ts";
import type { HandlersFor } from "./router.ts";
import type { SSHPool } from "./ssh-pool.ts";
import { readCapped, type Emitter } from "./http.ts";
import { imageDefaultUser, withDefaultUser } from "./image-user.ts";
import { MAX_SESSION_SEND_BYTES } from "../shared/routes.ts";


export interface SessionRouteDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Host;
  store: Store;
  log: Logger;
  /** Guest state root override (tests). */
  stateRoot?: string;
}

function stream(v: string | null): LogStream {
  if (v === null || v === "stdout") return "stdout";
  if (v === "stderr") return "stderr";
  throw new BangerError("E_BAD_REQUEST", `stream must be stdout or stderr, not ${JSON.stringify(v)}`);
}

function _sessionEngine(d: SessionRouteDeps): SessionEngine {
  return new SessionEngine({
    repo: d.store.sessions,
    host: d.host,
    log: d.log,
    hooks: d.engine.hooks,
    // every session action reaches the guest through here: a paused or halted guest would hang it, so refuse with the way out
    dial: async (vm) => {
      const now = d.store.getVM(vm.id) ?? vm;
      refuseIfPaused(now);
      const halted = await d.engine.haltedBy(now);
      if (halted) throw haltedError(now, halted);
      return d.ssh.get(vm);
    },
    vmAlive: (vm) => d.engine.alive(vm),
    stoppingBecause: (id) => d.engine.stoppingBecause(id),
    getVM: (x) => d.store.getVM(x),
    clock: d.host.clock,
    newId: () => randomBytes(8).toString("hex"),
    stateRoot: d.stateRoot,
  });
}

/** A log up to its current end, in chunks; answers the offset to continue from. */
/** How much one guest read of a log asks for. */
const LOG_READ_CHUNK = 1 << 20;

async function _readLog(sessions: SessionEngine, s: GuestSession, which: LogStream, offset: number, put: Emitter["stdout"], caughtUp: Emitter["caughtUp"]): Promise<{ offset: number }> {
  let at = offset;
  for (;;) {
    // a client behind by a whole queue: the next chunk waits, not the daemon's memory
    await caughtUp();
    const r = await sessions.logs(s, { stream: which, offset: at, limit: LOG_READ_CHUNK });
    if (r.data.length > 0) put(r.data, r.nextOffset);
    at = r.nextOffset;
    // A short read is the end as it was then: looping until an empty read never ends
    // when the session writes faster than a slow guest answers reads (-f is for following).
    if (r.data.length < LOG_READ_CHUNK) break;
  }
  return { offset: at };
}

/** A log as it grows, until the session ends or the client goes; answers the offset to continue from and the session as it is then. */
async function _followLog(d: SessionRouteDeps, sessions: SessionEngine, s: GuestSession, which: LogStream, offset: number, emit: Emitter, latest: () => Promise<GuestSession>): Promise<{ offset: number; session: GuestSession }> {
  const put = which === "stderr" ? emit.stderr : emit.stdout;
  let at = offset;
  // a guest its VMM halts (a write to a full host disk) sends nothing more and ends nothing: the follow (an attach) ends saying why
  const vm = d.store.getVM(s.vmId);
  const watch = vm ? d.engine.watchHalt(vm, emit.signal) : { signal: emit.signal, stop: () => {} };
  try {
    for await (const chunk of sessions.follow(s, { stream: which, offset, signal: watch.signal })) {
      put(chunk.data, chunk.nextOffset);
      at = chunk.nextOffset;
      await emit.caughtUp();
    }
  } finally {
    watch.stop();
  }
  if (watch.signal.aborted && !emit.signal.aborted) throw watch.signal.reason;
  return { offset: at, session: await latest().catch(() => s) };
}

/** Session routes under /v1/vms/:vm/sessions, backed by the session engine over the daemon's pooled SSH connections. */
export function createSessionRoutes(d: SessionRouteDeps) {
  const sessions = _sessionEngine(d);
  // a VM's processes end with it: its sessions are recorded ended as it stops, not at the next look
  d.engine.hooks.hook(
    "sessions",
    "vm:cleanup",
    async ({ vm }) => {
      const ended = await sessions.endForVM(vm.id, vmStoppedReason(d.engine.stoppingBecause(vm.id) ?? ""));
      if (ended.length) d.log.info(`vm ${vm.name} stopped: session${ended.length > 1 ? "s" : ""} ${ended.map((x) => x.name).join(", ")} ended with it`);
    },
    { order: "post" },
  );
  const session = (p: { vm: string; session: string }) => sessions.get(p.vm, p.session);
  const end = async (action: "stop" | "kill", p: { vm: string; session: string }, graceMs: number | undefined) => {
    return action === "kill" ? sessions.kill(session(p)) : sessions.stop(session(p), graceMs ?? 5000);
  };

  const handlers: HandlersFor<"session"> = {
    // as show does: a row the guest has moved on from (exited meanwhile) is refreshed before it is listed
    sessionList: async ({ params }) => ({ sessions: await sessions.listFresh(params.vm) }),
    sessionStart: async ({ params, body }) => {
      // a missing VM is the session engine's to refuse: no default then
      const vm = d.store.getVM(params.vm);
      const asked = vm ? withDefaultUser(body, await imageDefaultUser(d.host.fs, (n) => d.store.getImage(n), vm)) : body;
      return sessions.start({ vmIdOrName: params.vm, ...asked, stdinMode: body.stdinMode as GuestSession["stdinMode"] | undefined });
    },
    sessionShow: async ({ params }) => sessions.refresh(session(params)),
    sessionRemove: async ({ params, query }) => {
      await sessions.remove(session(params), { force: query.force });
      return { deleted: params.session };
    },
    sessionSend: async ({ req, params }) => {
      const payload = await readCapped(req, MAX_SESSION_SEND_BYTES);
      return sessions.send({ vmIdOrName: params.vm, sessionIdOrName: params.session, payload });
    },
    sessionCloseStdin: async ({ params }) => {
      const s = await sessions.refresh(session(params));
      if (s.status !== "running") throw new BangerError("E_STATE", `session ${s.name} is not running (status ${s.status})`);
      const closed = await sessions.closeStdin(s);
      return { closed, session: await sessions.refresh(s) };
    },
    sessionStop: async ({ params, body }) => end("stop", params, body.graceMs),
    sessionKill: async ({ params, body }) => end("kill", params, body.graceMs),
    sessionLogs: async ({ params, query, ndjson }) => {
      const s = session(params);
      const which = stream(query.stream ?? null);
      const { offset, follow } = query;
      return ndjson(async (emit) => {
        if (!follow) return { type: "result", data: await _readLog(sessions, s, which, offset, which === "stderr" ? emit.stderr : emit.stdout, emit.caughtUp) };
        const mark = d.engine.cutMark();
        try {
          return { type: "result", data: await _followLog(d, sessions, s, which, offset, emit, () => sessions.refresh(session(params))) };
        } catch (e) {
          // stopped under it on purpose (vm stop, restart, rollback, delete): say that, not "vm is not running"
          const cut = d.engine.cutSince(s.vmId, mark);
          const vm = d.store.getVM(s.vmId);
          if (cut) throw new BangerError("E_STATE", `vm ${vm?.name ?? s.vmId}: following session ${s.name}'s log ended: ${cut}`, { cause: e });
          throw e;
        }
      });
    },
  };

  return {
    engine: sessions,
    async reconcile(): Promise<void> {
      const out = await sessions.reconcile();
      if (out.length) d.log.info(`session reconcile: ${out.map((s) => `${s.name}=${s.status}`).join(", ")}`);
    },
    handlers,
  };
}
