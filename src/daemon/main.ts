import { builtinPlugins } from "../../plugins/index.ts";
import { Engine, type ReconcileOutcome } from "../core/engine.ts";
import { BangerError, errorMessage } from "../shared/errors.ts";
import { HookEngine } from "../core/hooks.ts";
import { importPluginFile, setupPlugins, type LoadedPlugin } from "../core/loader.ts";
import { Providers } from "../core/providers.ts";
import type { BangerPlugin, Logger } from "../core/plugin.ts";
import { daemonPaths, resolveHome, type DaemonPaths } from "../shared/paths.ts";
import { config, environ } from "../host/config.ts";
import { createFS } from "../host/fs.ts";
import { createHost } from "../host/index.ts";
import type { FS, Host } from "../host/types.ts";
import { createSSHDialer } from "../host/ssh.ts";
import { Store } from "../store/store.ts";
import { FULL_VERSION } from "../version.ts";
import type { VMMDriver } from "../vmm/driver.ts";
import { createApp } from "./app.ts";
import { autoWarmEnabled, defaultEgress, userPluginPaths } from "./config.ts";
import { AutoWarm } from "./auto-warm.ts";
import { ImageService } from "./images.ts";
import { tryLockFile } from "./lock.ts";
import { installCrashGuards } from "./request-scope.ts";
import { refuseForeign } from "../host/owner.ts";
import { createDaemonLogger } from "./log.ts";
import { vmSSHPool, type SSHPool } from "./ssh-pool.ts";
import { createSessionRoutes } from "./sessions.ts";
import { sweepHome } from "./sweep.ts";
import { Snapshots } from "../core/snapshots.ts";
import { createWorkspaceRoutes } from "./workspace-routes.ts";
import { createLifetimeRoutes, trackActivity } from "./lifetime-routes.ts";
import { Lifetimes } from "../core/lifetimes.ts";
import { createPortRoutes } from "./ports-routes.ts";
import { createStatsRoutes } from "./stats.ts";
import { createFileRoutes } from "./files-routes.ts";
import { createEgressRoutes } from "./egress-routes.ts";
import { createSnapshotRoutes } from "./snapshot-routes.ts";
import { E2BServer } from "./e2b/server.ts";
import type { Envd } from "./e2b/envd/index.ts";
import { createE2BRoutes } from "./e2b/routes.ts";
import { createBaseTemplate } from "./e2b/template.ts";

const SHUTDOWN_GRACE_MS = 5000;

export interface DaemonOptions {
  home?: string;
  plugins?: string[];
}

async function removeStaleSocket(fs: FS, path: string): Promise<void> {
  const st = await fs.lstat(path);
  if (!st) return;
  // Only ever remove a socket: never a file someone put there by mistake.
  if (st.type !== "socket") throw new BangerError("E_DAEMON", `${path} exists and is not a socket; move it away`);
  await fs.rmrf(path);
}

/**
 * Make the state dir ours (0700) and take its lock; with the lock held no
 * live daemon owns the socket, so whatever is there is stale (if it is ours).
 * Returns the lock's release.
 */
async function _lockHome(home: string, paths: DaemonPaths, fs: FS): Promise<() => void> {
  refuseForeign(home, "state dir", { follow: true });
  await fs.mkdirp(home, 0o700);
  await fs.chmod(home, 0o700);
  const release = tryLockFile(paths.lock);
  if (!release) throw new BangerError("E_DAEMON", `another banger daemon already runs for ${home}`);
  refuseForeign(paths.socket, "daemon socket");
  await removeStaleSocket(fs, paths.socket);
  return release;
}

/** The built-ins, then the user's plugin files, set up in that order. */
async function _loadPlugins(d: { paths: DaemonPaths; host: Host; hooks: HookEngine; drivers: Map<string, VMMDriver>; providers: Providers; store: Store; log: Logger; extra: string[]; ssh: SSHPool }): Promise<LoadedPlugin[]> {
  const userPaths = await userPluginPaths(d.paths, d.host.fs, d.extra);
  const all: { plugin: BangerPlugin; source: string }[] = builtinPlugins.map((p) => ({ plugin: p, source: "builtin" }));
  for (const p of userPaths) all.push({ plugin: await importPluginFile(p), source: p });
  const { hooks, host, paths, log, drivers, providers, store } = d;
  return setupPlugins(all, {
    hooks,
    host,
    paths,
    log,
    drivers,
    providers,
    store: { listVMs: () => store.listVMs(), getImage: (n) => store.getImage(n), leases: store.leases },
    adoptSSH: (vm, conn) => d.ssh.adopt(vm.id, conn),
    addGuestConnector: (connect) => d.ssh.addConnector(connect),
  });
}

/** Settle every VM the last daemon left, then remove what a crash left in the home. */
async function _reconcileAndSweep(engine: Engine, store: Store, host: Host, paths: DaemonPaths, log: Logger): Promise<ReconcileOutcome[]> {
  const reconcile = await engine.reconcile();
  for (const r of reconcile) log.info(`reconcile ${r.vm}: ${r.action} (handles from ${r.source})${r.cleanupErrors.length ? `; ${r.cleanupErrors.join("; ")}` : ""}`);
  for (const line of await new Snapshots(engine).reconcile()) log.info(`reconcile snapshot ${line}`);
  // after reconcile (half-made rows are gone by now) and before listening: nothing of ours is at work yet
  const vmProcesses = engine.cache.ids().flatMap((id) => {
    const [pid, vm] = [engine.cache.get(id)?.pid ?? 0, store.getVM(id)];
    return pid > 0 && vm ? [{ name: vm.name, pid }] : [];
  });
  await sweepHome({ paths, fs: host.fs, procs: host.procs, clock: host.clock, log, vms: store.listVMs(), images: store.listImages(), snapshots: store.snapshots.list(), vmProcesses });
  return reconcile;
}

type _Server = ReturnType<typeof Bun.serve>;

/**
 * The once-only shutdown: stop taking requests, let in-flight ones finish,
 * close what the daemon holds, release the lock and exit.
 */
function _shutdownOnce(d: { server: () => _Server; ssh: { closeAll(): void }; store: Store; fs: FS; paths: DaemonPaths; release: () => void; log: Logger }): () => void {
  const { ssh, store, fs, paths, release, log } = d;
  let stopping: Promise<void> | null = null;
  return () => {
    stopping ??= (async () => {
      log.info("shutting down: no new requests; finishing in-flight ones");
      const server = d.server();
      // stop(false): stop accepting, let in-flight requests finish. VMs are not touched.
      // Follow streams (logs -f, attach) never finish by themselves: cut them after a grace period;
      // their clients reconnect to the next daemon from their last offset.
      const drained = await Promise.race([server.stop(false).then(() => true), Bun.sleep(SHUTDOWN_GRACE_MS).then(() => false)]);
      if (!drained) {
        log.info(`cutting streams still open after ${SHUTDOWN_GRACE_MS} ms`);
        await server.stop(true);
      }
      ssh.closeAll();
      store.close();
      await removeStaleSocket(fs, paths.socket);
      await fs.rmrf(paths.pidFile);
      release();
      log.info("bye");
      process.exit(0);
    })().catch((e: unknown) => {
      // a shutdown that cannot finish must still end the process, or the lock stays held by a daemon that serves nothing
      log.error(`shutdown failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      process.exit(1);
    });
  };
}

/** Listen on the unix socket (0600 from birth) and write the pid file. */
async function _serve(app: (req: Request) => Response | Promise<Response>, paths: DaemonPaths, fs: FS): Promise<_Server> {
  const oldMask = process.umask(0o177); // the socket is born 0600
  // idleTimeout 0: streams (image build, logs -f, attach) may stay quiet for minutes.
  // Bun's types omit it for unix sockets, but the runtime applies its 10 s default there too.
  // maxRequestBodySize: file uploads stream through at the guest's pace, of any size; JSON bodies keep their own cap (parseBody)
  const server = Bun.serve({ unix: paths.socket, fetch: app, idleTimeout: 0, maxRequestBodySize: Number.MAX_SAFE_INTEGER } as unknown as Parameters<typeof Bun.serve>[0]);
  process.umask(oldMask);
  await fs.chmod(paths.socket, 0o600);
  await fs.writeFile(paths.pidFile, `${process.pid}\n`, 0o600);
  return server;
}

/** Run the daemon in the foreground until SIGTERM/SIGINT or POST /v1/shutdown. */
export async function runDaemon(opts: DaemonOptions = {}): Promise<void> {
  const home = opts.home ?? resolveHome(environ());
  const paths = daemonPaths(home);
  const log = createDaemonLogger();
  // first: a bug anywhere below (plugin setup, reconcile, a request) is logged and contained, never fatal
  installCrashGuards(log);
  const fs = createFS();
  const release = await _lockHome(home, paths, fs);

  const store = new Store(paths.db);
  const host = createHost(createSSHDialer());
  const hooks = new HookEngine();
  const drivers = new Map<string, VMMDriver>();
  const providers = new Providers();
  // before the plugins: the guest plugin hands it the connection it waited for a guest with
  const ssh = vmSSHPool(host.ssh, host.fs);
  const loaded = await _loadPlugins({ paths, host, hooks, drivers, providers, store, log, extra: opts.plugins ?? [], ssh });
  log.info(`banger daemon ${FULL_VERSION} pid ${process.pid} home ${home}; plugins: ${loaded.map((p) => p.name).join(", ")}`);

  const engine = new Engine({ store, host, hooks, drivers, providers, paths, log, dropConnection: (id) => ssh.drop(id), dialGuest: (vm) => ssh.get(vm), defaultEgress: await defaultEgress(paths, fs) });
  // a TTL deletes with --force: the disk goes anyway, and a guest slow to power off must not outlive its TTL
  const lifetimes = new Lifetimes({ store, clock: host.clock, log, stop: (id, why) => engine.stop(id, { why }), delete: (id, why) => engine.delete(id, { force: true, why }), inOperation: (id) => engine.cache.isLocked(id) });
  lifetimes.hookInto(hooks);
  const reconcile = await _reconcileAndSweep(engine, store, host, paths, log);

  const images = new ImageService(store, hooks, host, paths.imagesDir, log, engine, { removeOf: (image, keepFor) => new Snapshots(engine).removeTemplatesOf(image, keepFor) });
  // BANGER_GUEST_STATE_ROOT: where session state lives in the guest (tests point it at a temp dir on a local sshd)
  const sessions = createSessionRoutes({ engine, ssh, host, store, log, stateRoot: config.guestStateRoot || undefined });
  const workspaces = createWorkspaceRoutes({ engine, ssh, host, log });
  const ports = createPortRoutes(engine);
  const stats = createStatsRoutes({ engine, ssh, host });
  const files = createFileRoutes({ engine, ssh, log });
  const snapshots = createSnapshotRoutes(engine);
  const autoWarm = new AutoWarm(engine, await autoWarmEnabled(paths, fs));

  // the E2B endpoint translates into the daemon's own routes: it calls `app` (made below) in process
  let app: (req: Request) => Promise<Response> = async () => new Response(null, { status: 503 });
  const e2bBase = createBaseTemplate((req) => app(req), log);
  // envd (Connect, the generated protos) loads at the first envd request, not at every daemon start (auto-start time counts)
  let envd: Promise<Envd> | null = null;
  const lazyEnvd = () => (envd ??= import("./e2b/envd/index.ts").then((m) => m.createEnvd({ engine, ssh, host, log, sessions: sessions.engine })));
  const e2b = new E2BServer({ repo: store.e2b, log, clock: host.clock, app: () => app, base: e2bBase, envd: lazyEnvd });

  let server: _Server | undefined;
  const closeAll = _shutdownOnce({ server: () => server!, ssh, store, fs, paths, release, log });
  // no deadline fires into a store that is closing
  const shutdown = () => {
    e2b.close();
    lifetimes.close();
    autoWarm.close();
    closeAll();
  };
  app = trackActivity(createApp({
    engine,
    images,
    ssh,
    fs: host.fs,
    plugins: loaded,
    version: FULL_VERSION,
    paths,
    startedAt: new Date().toISOString(),
    reconcile,
    autoWarm,
    requestsOpen: (id) => lifetimes.requestsOpen(id),
    routes: { ...sessions.handlers, ...workspaces.handlers, ...ports.handlers, ...stats.handlers, ...files.handlers, ...createLifetimeRoutes({ engine, lifetimes, clock: host.clock }), ...createEgressRoutes({ engine, fs: host.fs, clock: host.clock }), ...snapshots.handlers, ...createE2BRoutes({ server: e2b, repo: store.e2b, fs: host.fs, clock: host.clock, home, base: e2bBase, checkVmm: (n) => engine.resolveDriver(n) }) },
    shutdown,
  }), (vm) => lifetimes.busy(vm));
  server = await _serve(app, paths, fs);
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  log.info(`listening on ${paths.socket}`);
  // opt-in: only where a `banger e2b serve` asked (and no `e2b stop` since)
  e2b.restore();
  void e2b.reconcile().catch((e: unknown) => log.warn(`e2b: reconciling sandboxes: ${errorMessage(e)}`));
  // Session status needs SSH to each guest (seconds under TCG, longer for an unreachable one):
  // after listening, so auto-start stays fast; every session read (list, show, logs, attach) refreshes on demand anyway.
  void sessions.reconcile().catch((e) => log.warn(`session reconcile: ${errorMessage(e)}`));
  // after listening: a graceful stop can take seconds, and the CLI that started us is waiting; overdue deadlines fire now
  lifetimes.start().catch((e: unknown) => log.warn(`lifetimes: ${errorMessage(e)}`));
}
