import { randomBytes } from "node:crypto";
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { Engine } from "../core/engine.ts";
import { Snapshots, type CloneOwnParams } from "../core/snapshots.ts";
import type { LoadedPlugin } from "../core/loader.ts";
import { SHAPE_FIELDS, type VMRecord } from "../shared/model.ts";
import type { VMView } from "../shared/api.ts";
import type { DaemonPaths } from "../shared/paths.ts";
import { checkExecOptions } from "../shared/exec-options.ts";
import { execCommandLine, refusalWatch } from "../sessions/exec.ts";
import { errorResponse, ndjson, type Emitter } from "./http.ts";
import type { ExitEvent } from "../shared/routes.ts";
import { createRouter, type Handlers, type HandlersFor, type RouteContext } from "./router.ts";
import { withRequestScope } from "./request-scope.ts";
import type { SSHPool } from "./ssh-pool.ts";
import { sshTargetFor } from "../host/ssh-target.ts";
import { NO_STATUS_EXIT } from "../host/ssh.ts";
import type { ImageService } from "./images.ts";
import type { AutoWarm } from "./auto-warm.ts";
import { imageDefaultUser, withDefaultUser } from "./image-user.ts";
import type { FS, GuestSignal } from "../host/types.ts";
import { VERSION_HEADER } from "../version.ts";

export interface AppDeps {
  engine: Engine;
  images: ImageService;
  ssh: SSHPool;
  fs: FS;
  plugins: LoadedPlugin[];
  version: string;
  paths: DaemonPaths;
  startedAt: string;
  reconcile: unknown;
  /** Warm-start templates after first cold boots (absent: none made). */
  autoWarm?: AutoWarm;
  /** How many requests that count as use are open on a VM now (Lifetimes.requestsOpen), for vm list/show. */
  requestsOpen?: (vmId: string) => number;
  /** Handlers of the other route groups (sessions, workspaces, files); in tests, stand-ins for any route. */
  routes?: Partial<Handlers>;
  shutdown(): void;
}

/** Public view of a VM: durable record plus liveness. */
export async function vmView(engine: Engine, vm: VMRecord): Promise<VMView> {
  let alive = await engine.alive(vm);
  if (!alive && (vm.runtime.state === "running" || vm.runtime.state === "paused") && (await engine.noticeExit(vm.id))) {
    vm = engine.getVM(vm.id); // it died under us: show it demoted and cleaned up
  }
  const [handles, halted] = await Promise.all([engine.handlesOf(vm), alive ? engine.haltedBy(vm) : null]);
  return { ...vm, alive, pid: handles?.pid ?? 0, ...(halted ? { halted } : {}) };
}

/** The routes served here; images, sessions and workspaces bring their own handlers. */
type AppRoutes = Omit<Handlers, keyof HandlersFor<"image"> | keyof HandlersFor<"session"> | keyof HandlersFor<"workspace"> | keyof HandlersFor<"port"> | keyof HandlersFor<"stats"> | keyof HandlersFor<"file"> | keyof HandlersFor<"lifetime"> | keyof HandlersFor<"vmEgress"> | keyof HandlersFor<"snapshot"> | keyof HandlersFor<"e2b">>;

type _DaemonRoutes = Pick<AppRoutes, "health" | "shutdown" | "pluginList">;

/** The daemon's own routes; `requestsBefore` counts the requests received before the current one (tests count a command's round trips). */
function _daemonRoutes(d: AppDeps, requestsBefore: () => number): _DaemonRoutes {
  return {
    health: async () => ({ version: d.version, pid: process.pid, home: d.paths.home, startedAt: d.startedAt, reconcile: d.reconcile, requestsReceived: requestsBefore() }),
    shutdown: async () => {
      setTimeout(() => d.shutdown(), 10);
      return { ok: true };
    },
    pluginList: async () => ({ plugins: d.plugins }),
  };
}

/** The VM routes. */
function _vmRoutes(d: AppDeps): Omit<AppRoutes, keyof _DaemonRoutes> {
  const { engine } = d;
  const execs: _RunningExecs = new Map();
  return {
    vmList: async () => ({ vms: await Promise.all(engine.listVMs().map(async (vm) => ({ ...(await vmView(engine, vm)), requestsOpen: d.requestsOpen?.(vm.id) ?? 0 }))) }),
    vmCreate: async ({ body, ndjson }) => {
      const { start, from, cold, ...params } = body;
      // what a clone takes from the request; the rest of its shape is its snapshot's
      const own: CloneOwnParams = { ttlMs: params.ttlMs, ttlAction: params.ttlAction, idleTimeoutMs: params.idleTimeoutMs, idleAction: params.idleAction, publish: params.publish, egress: params.egress };
      if (from !== undefined) {
        const snapshots = new Snapshots(engine);
        const snap = snapshots.get(from);
        if (SHAPE_FIELDS.some(({ key }) => params[key] !== undefined)) {
          throw new BangerError("E_USAGE", `a clone takes its snapshot's shape: --from goes without ${SHAPE_FIELDS.map((f) => f.flag).join(", ")}`);
        }
        await engine.checkCreate({ ...own, name: params.name, image: snap.spec.image, cpus: snap.spec.cpus, memoryMiB: snap.spec.memoryMiB, driver: snap.spec.driver, net: snap.spec.net, storage: snap.spec.storage });
        return ndjson(async (emit) => ({ type: "result", data: await vmView(engine, await snapshots.createFrom(from, params.name, { start, own }, emit.progress, emit.signal)) }));
      }
      params.driver = await engine.resolveDriver(params.driver); // --vmm: asked for and usable, or the best usable one
      const plan = await engine.checkCreate(params); // refuse bad input with a 4xx before the stream's 200 goes out
      params.storage = plan.storage;
      // a warm start: a template of this image and shape exists (`image warm`), so the VM is its clone
      const template = start && !cold ? new Snapshots(engine).templateFor({ image: plan.image, driver: plan.driverName, net: plan.net, storage: plan.storage, ...plan.sizes }) : null;
      if (template) {
        return ndjson(async (emit) => ({ type: "result", data: await vmView(engine, await new Snapshots(engine).createFrom(`${template.vmName}@${template.name}`, plan.name, { start: true, own }, emit.progress, emit.signal)) }));
      }
      return ndjson(async (emit) => {
        let vm = await engine.create(params, emit.progress);
        if (start) vm = await engine.start(vm.id, emit.progress, emit.signal);
        const data = await vmView(engine, vm);
        // queued now, run after this answer: the template's boot never delays the command that caused it
        if (start && !cold) d.autoWarm?.afterColdBoot(vm);
        return { type: "result", data };
      });
    },
    vmShow: async ({ params }) => {
      const vm = engine.getVM(params.vm);
      return { ...(await vmView(engine, vm)), requestsOpen: d.requestsOpen?.(vm.id) ?? 0 };
    },
    vmDelete: async ({ params, query }) => {
      const force = query.force;
      const deleted = await engine.delete(params.vm, { force });
      // snapshots outlive their VM unless asked: they are independent of it
      if (query.withSnapshots) return { deleted: deleted.name, id: deleted.id, snapshots: await new Snapshots(engine).removeAllOf(deleted.id) };
      return { deleted: deleted.name, id: deleted.id };
    },
    vmStart: async ({ params, ndjson }) => _startOrRestart(engine, "start", params.vm, ndjson),
    vmRestart: async ({ params, ndjson }) => _startOrRestart(engine, "restart", params.vm, ndjson),
    vmStop: async ({ params, body }) => vmView(engine, await engine.stop(params.vm, body)),
    vmPause: async ({ params }) => vmView(engine, await engine.pause(params.vm)),
    vmResume: async ({ params }) => vmView(engine, await engine.resume(params.vm)),
    vmExec: async ({ params, body, ndjson }) => {
      if (body.argv.length === 0) throw new BangerError("E_USAGE", "a command is required after --");
      const { argv, stdin, ...asked } = body;
      checkExecOptions(asked);
      const token = randomBytes(8).toString("hex");
      execCommandLine(argv, asked, token); // quoting refuses what no shell can carry (NUL) before the stream's 200
      const vm = await engine.running(params.vm);
      const options = withDefaultUser(asked, await imageDefaultUser(d.fs, (n) => engine.store.getImage(n), vm));
      const command = execCommandLine(argv, options, token);
      return ndjson(async (emit) => {
        // a guest its VMM halts mid-command (a write to a full host disk) answers nothing: the exec ends saying why
        const watch = engine.watchHalt(vm, emit.signal);
        const mark = engine.cutMark();
        // stopped under it (vm stop, restart, rollback, delete, its lifetime): say that, not "connection closed" or 255
        const cut = (cause?: unknown) => {
          const why = engine.cutSince(vm.id, mark);
          return why ? new BangerError("E_STATE", `vm ${vm.name}: the command did not finish: ${why}`, { cause }) : null;
        };
        let r: ExitEvent;
        try {
          r = await _execIn(d.ssh, vm, command, stdin, { ...emit, signal: watch.signal }, token, execs);
        } catch (e) {
          throw cut(e) ?? e;
        } finally {
          watch.stop();
        }
        // no exit status: the connection went under the command
        if (r.code === NO_STATUS_EXIT) {
          const c = cut();
          if (c) throw c;
        }
        return r;
      });
    },
    vmExecSignal: async ({ params, body }) => {
      const name = body.signal.replace(/^SIG/, "");
      if (!_isGuestSignal(name)) throw new BangerError("E_BAD_REQUEST", `signal ${JSON.stringify(body.signal)}: a running command takes INT, TERM or HUP`);
      const vm = engine.getVM(params.vm);
      const run = execs.get(params.exec);
      if (!run || run.vmId !== vm.id) throw new BangerError("E_NOT_FOUND", `no command ${params.exec} runs in vm ${vm.name} (it ended, or was never started)`);
      run.signal(name);
      return { sent: name };
    },
    vmSshInfo: async ({ params }) => {
      const vm = await engine.running(params.vm);
      const t = await sshTargetFor(d.fs, vm);
      return { host: t.host, port: t.port, user: t.user, privateKey: t.privateKey, hostKey: t.hostKey };
    },
    vmLogs: async ({ req, params, query }) => {
      const vm = engine.getVM(params.vm);
      return streamFile(req, vm.runtime.logPath, query.offset, query.follow, () => engine.alive(vm), d.fs);
    },
  };
}

function _startOrRestart(engine: Engine, action: "start" | "restart", id: string, ndjson: RouteContext<"vmStart" | "vmRestart">["ndjson"]): Response {
  const vm = engine.getVM(id);
  return ndjson(async (emit) => {
    const out = action === "start" ? await engine.start(vm.id, emit.progress, emit.signal) : await engine.restart(vm.id, emit.progress);
    return { type: "result", data: await vmView(engine, out) };
  });
}

/** The execs running now, by the id their stream's `exec` event gave: where vmExecSignal sends. */
type _RunningExecs = Map<string, { vmId: string; signal(name: GuestSignal): void }>;

function _isGuestSignal(s: string): s is GuestSignal {
  return s === "INT" || s === "TERM" || s === "HUP";
}

async function _execIn(ssh: SSHPool, vm: VMRecord, command: string, stdin: string | undefined, emit: Emitter, token: string, execs: _RunningExecs): Promise<ExitEvent> {
  const conn = await ssh.get(vm);
  const refused = refusalWatch(emit.stderr, token);
  const id = randomBytes(8).toString("hex");
  const code = await conn
    .exec(command, {
      stdin: stdin !== undefined ? Buffer.from(stdin, "base64") : undefined,
      onStdout: emit.stdout,
      onStderr: refused.onStderr,
      signal: emit.signal,
      flow: (f) => emit.flow(f),
      onRunning: (ctl) => {
        execs.set(id, { vmId: vm.id, signal: ctl.signal });
        emit.event({ type: "exec", id });
      },
    })
    .finally(() => execs.delete(id))
    .catch((e: unknown) => {
      // dropbear refuses a command line over 9000 bytes with a bare "Unable to exec"
      if (Buffer.byteLength(command) > 9000 && errorMessage(e).includes("Unable to exec")) {
        throw new BangerError("E_BAD_REQUEST", `the command line is ${Buffer.byteLength(command)} bytes, more than the guest's SSH server takes (9000): pass big values in a file (vm exec --stdin, a workspace)`);
      }
      throw e;
    });
  const reason = refused.finish(code);
  if (reason !== null) throw new BangerError("E_BAD_REQUEST", reason);
  return { type: "exit", code };
}

/** A request from another build of the CLI is refused before anything runs, so the CLI can replace us and resend without doing it twice. */
async function _handle(version: string, route: (req: Request) => Promise<Response>, req: Request): Promise<Response> {
  const theirs = req.headers.get(VERSION_HEADER);
  if (theirs !== null && theirs !== version) {
    return errorResponse(new BangerError("E_DAEMON_VERSION", `this daemon is ${version}, the CLI is ${theirs}: the CLI replaces the daemon and resends`));
  }
  try {
    return await withRequestScope(`${req.method} ${new URL(req.url).pathname}`, () => route(req));
  } catch (e) {
    return errorResponse(e);
  }
}

/** The daemon's request handler: a plain (Request) => Response, testable without a socket. */
export function createApp(d: AppDeps): (req: Request) => Promise<Response> {
  let received = 0;
  const route = createRouter({ ..._daemonRoutes(d, () => received - 1), ..._vmRoutes(d), ...d.images.handlers(), ...d.routes });
  return async (req: Request) => {
    received++;
    const res = await _handle(d.version, route, req);
    res.headers.set(VERSION_HEADER, d.version);
    return res;
  };
}

/** Stream a file from a byte offset; with follow, keep tailing while `stillGoing` says so. */
export function streamFile(req: Request, path: string, offset: number, follow: boolean, stillGoing: () => Promise<boolean>, fs: Pick<FS, "stat" | "readRange">): Response {
  return ndjson(req, async (emit) => {
    let pos = offset;
    for (;;) {
      const size = await fs.stat(path).then((s) => s?.size ?? 0, () => 0);
      if (size > pos) {
        const bytes = await fs.readRange(path, pos, Math.min(size - pos, 1 << 20));
        pos += bytes.length;
        emit.stdout(bytes);
        // a big log to a slow client: read on only as it takes it
        await emit.caughtUp();
        continue;
      }
      if (!follow || emit.signal.aborted || !(await stillGoing())) break;
      await Bun.sleep(200);
    }
    return { type: "result", data: { offset: pos } };
  });
}
