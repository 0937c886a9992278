import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { MAX_TIMEOUT_MS } from "../../../shared/exec-options.ts";
import type { GuestSession, VMRecord } from "../../../shared/model.ts";
import type { OutputHandlers, SessionSignal } from "../../../sessions/engine.ts";
import { Process, Signal, type ProcessEvent, type ProcessSelector } from "../gen/process/process_pb.ts";
import { sandboxOf, type EnvdDeps, type RegisterService } from "./context.ts";
import { EventQueue, dataEvent, endEvent, keepaliveEvent, startEvent, toConnectError } from "./process-events.ts";
import { PROCESS_SESSION_PREFIX, ProcessTable, encodeMeta, type ProcessMeta, type ProcessSelection } from "./process-table.ts";
import { callUser, sessionUser, userRefusal } from "./user.ts";

/**
 * envd's process.Process on banger's guest sessions: every E2B process is a
 * session (detached in the guest, recorded in the store), so it outlives a
 * daemon killed -9 and a client reconnects by pid or tag afterwards. Start
 * uses the session engine's one-channel start-and-follow (no extra round
 * trips for short commands); the pid is the guest's.
 */
type _Event = { event: ProcessEvent };

const _SIGNALS: Partial<Record<Signal, SessionSignal>> = { [Signal.SIGKILL]: "KILL", [Signal.SIGTERM]: "TERM" };

function _selection(p: ProcessSelector | undefined): ProcessSelection | undefined {
  return p?.selector as ProcessSelection | undefined;
}

/** The call's deadline as a guest timeout: the process is killed then even if no one is connected. */
function _timeoutOf(ctx: HandlerContext): number | undefined {
  const ms = ctx.timeoutMs();
  if (ms === undefined || !(ms > 0)) return undefined;
  return Math.min(Math.ceil(ms), MAX_TIMEOUT_MS);
}

/** Keepalive events at the interval the SDK asks for (Keepalive-Ping-Interval, seconds); returns the stop. */
function _keepalive(ctx: HandlerContext, deps: EnvdDeps, push: () => void): () => void {
  const seconds = Number(ctx.requestHeader.get("keepalive-ping-interval"));
  if (!(seconds > 0)) return () => {};
  let cancel = () => {};
  const arm = () => {
    cancel = deps.host.clock.timer(seconds * 1000, () => {
      push();
      arm();
    });
  };
  arm();
  return () => cancel();
}

/**
 * The call's signal, also aborted once the sandbox's VMM halts it (a write to a full host disk): a follow would
 * wait for a guest that answers nothing. `or(f, q)`: f, unless the halt ended the follow (the stream then fails
 * with the halt's error, a FailedPrecondition naming `banger vm resume`).
 */
function _haltWatch(deps: EnvdDeps, vm: VMRecord, ctx: HandlerContext) {
  const w = deps.engine.watchHalt(vm, ctx.signal);
  const halted = (): unknown => (w.signal.aborted && !ctx.signal.aborted ? (w.signal.reason as unknown) : undefined);
  return {
    signal: w.signal,
    stop: () => w.stop(),
    halted,
    or:
      <T>(f: (v: T) => void, q: EventQueue<_Event>) =>
      (v: T) => {
        const e = halted();
        if (e !== undefined) q.fail(e);
        else f(v);
      },
  };
}

async function _unary<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toConnectError(e);
  }
}

/** Pull a queue of events, with keepalives, until the follower closes it. */
async function* _drain(q: EventQueue<_Event>, stopKeepalive: () => void): AsyncGenerator<_Event> {
  try {
    for await (const e of q) yield e;
  } catch (e) {
    throw toConnectError(e);
  } finally {
    stopKeepalive();
  }
}

export function processService(): RegisterService {
  return (router: ConnectRouter, deps: EnvdDeps) => {
    const sessions = deps.sessions;
    const table = new ProcessTable(sessions);
    const find = (ctx: HandlerContext, p: ProcessSelector | undefined) => table.find(sandboxOf(ctx).vm, _selection(p));
    const follow = (q: EventQueue<_Event>, meta: ProcessMeta): OutputHandlers => ({
      onStdout: (d) => q.push({ event: dataEvent(meta.pty ? "pty" : "stdout", d) }, d.length),
      onStderr: (d) => q.push({ event: dataEvent("stderr", d) }, d.length),
      // a client that reads slowly holds the process's output in the guest, not in the daemon's memory
      flow: (ctl) => q.flow(ctl),
      caughtUp: () => q.caughtUp(),
    });
    // an ended process nobody followed to its end (a background one, a dropped stream): remove its session, in the background
    const forget = (s: GuestSession) => {
      sessions.remove(s).catch((e: unknown) => deps.log.warn(`e2b: removing ended process session ${s.name}: ${String(e)}`));
    };
    const ended = (q: EventQueue<_Event>, ctx: HandlerContext) => (s: GuestSession) => {
      if (!ctx.signal.aborted) q.push({ event: endEvent(s) });
      q.close();
    };

    router.service(Process, {
      async *start(req, ctx) {
        const sb = sandboxOf(ctx);
        const cfg = req.process;
        if (!cfg?.cmd) throw new ConnectError("process.cmd is empty", Code.InvalidArgument);
        let who: ReturnType<typeof callUser>;
        try {
          who = callUser({ authorization: ctx.requestHeader.get("authorization") });
        } catch (e) {
          throw toConnectError(e);
        }
        const size = req.pty?.size;
        const pty = size ? { cols: size.cols || 80, rows: size.rows || 24 } : undefined;
        const meta: ProcessMeta = { tag: req.tag, envs: { ...cfg.envs }, pty: pty !== undefined };
        const env = Object.entries({ ...sb.envVars, ...cfg.envs }).map(([k, v]) => `${k}=${v}`);
        const q = new EventQueue<_Event>(ctx.signal);
        const stop = _keepalive(ctx, deps, () => q.push({ event: keepaliveEvent() }));
        const watch = _haltWatch(deps, sb.vm, ctx);
        void sessions
          .startFollow(
            {
              vmIdOrName: sb.vm.id,
              name: `${PROCESS_SESSION_PREFIX}${crypto.randomUUID().slice(0, 13).replace("-", "")}`,
              command: cfg.cmd,
              args: cfg.args,
              cwd: cfg.cwd || undefined,
              cwdHome: true,
              env,
              ...sessionUser(who),
              timeoutMs: _timeoutOf(ctx),
              // a pty's input goes through the pipe too
              stdinMode: req.stdin || pty ? "pipe" : "closed",
              pty,
              label: encodeMeta(meta),
              signal: watch.signal,
              // envd forgets a process once it ended: so do we, or every command would leave a session behind
              removeWhenDone: true,
            },
            {
              onStart: (s) => {
                table.remember(s, meta);
                q.push({ event: startEvent(s.guestPid) });
              },
              ...follow(q, meta),
            },
          )
          .then(watch.or(ended(q, ctx), q), (e: unknown) => q.fail(watch.halted() ?? userRefusal(e, who)))
          .finally(watch.stop);
        yield* _drain(q, stop);
      },

      async *connect(req, ctx) {
        let s: GuestSession;
        let meta: ProcessMeta;
        let from: { stdout: number; stderr: number };
        try {
          s = await find(ctx, req.process);
          [meta, from] = await Promise.all([table.meta(s), sessions.logSizes(s)]);
        } catch (e) {
          throw toConnectError(e);
        }
        const q = new EventQueue<_Event>(ctx.signal);
        const stop = _keepalive(ctx, deps, () => q.push({ event: keepaliveEvent() }));
        q.push({ event: startEvent(s.guestPid) });
        const watch = _haltWatch(deps, sandboxOf(ctx).vm, ctx);
        // from now on, as envd: what the process wrote before is not replayed
        void sessions
          .followAll(s, from, follow(q, meta), watch.signal)
          .then(
            watch.or((done) => {
              ended(q, ctx)(done);
              if (done.status !== "running") forget(done);
            }, q),
            (e: unknown) => q.fail(watch.halted() ?? e),
          )
          .finally(watch.stop);
        yield* _drain(q, stop);
      },

      list(_req, ctx) {
        return _unary(async () => {
          const vm = sandboxOf(ctx).vm;
          // the store may not know yet that one ended: ask the guest
          const now = await Promise.all(table.running(vm).map((s) => sessions.refresh(s).catch(() => s)));
          const live = now.filter((s) => s.status === "running");
          for (const s of now) if (s.status !== "running") forget(s);
          const processes = await Promise.all(
            live.map(async (s) => {
              const m = await table.meta(s);
              return { pid: s.guestPid, tag: m.tag, config: { cmd: s.command, args: s.args, envs: m.envs, cwd: s.cwd || undefined } };
            }),
          );
          return { processes };
        });
      },

      sendInput(req, ctx) {
        return _unary(async () => {
          const s = await find(ctx, req.process);
          const input = req.input?.input;
          if (input?.case) await sessions.send({ vmIdOrName: s.vmId, sessionIdOrName: s.id, payload: input.value });
          return {};
        });
      },

      async streamInput(reqs, ctx) {
        return _unary(async () => {
          let s: GuestSession | null = null;
          for await (const r of reqs) {
            const e = r.event;
            if (e.case === "start") s = await find(ctx, e.value.process);
            else if (e.case === "data") {
              if (!s) throw new ConnectError("stream input: data before start", Code.InvalidArgument);
              const input = e.value.input?.input;
              if (input?.case) await sessions.send({ vmIdOrName: s.vmId, sessionIdOrName: s.id, payload: input.value });
            }
          }
          return {};
        });
      },

      sendSignal(req, ctx) {
        return _unary(async () => {
          const sig = _SIGNALS[req.signal];
          if (!sig) throw new ConnectError(`unsupported signal ${req.signal}`, Code.InvalidArgument);
          const s = await find(ctx, req.process);
          if (!(await sessions.signal(s, sig))) throw new ConnectError(`process ${s.guestPid} not found`, Code.NotFound);
          return {};
        });
      },

      closeStdin(req, ctx) {
        return _unary(async () => {
          const s = await find(ctx, req.process);
          if (!(await sessions.closeStdin(s))) throw new ConnectError(`process ${s.guestPid} not found`, Code.NotFound);
          return {};
        });
      },

      update(req, ctx) {
        return _unary(async () => {
          const s = await find(ctx, req.process);
          const size = req.pty?.size;
          if (size && !(await sessions.resize(s, { cols: size.cols, rows: size.rows }))) {
            throw new ConnectError(`process ${s.guestPid} not found`, Code.NotFound);
          }
          return {};
        });
      },
    });
  };
}

/** The process service with E2B's defaults. */
export const registerProcess: RegisterService = processService();
