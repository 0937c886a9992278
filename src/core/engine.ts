import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { HandleCache } from "../handles/cache.ts";
import { vmAlive } from "../handles/alive.ts";
import { readHandlesFile, removeHandlesFile, writeHandlesFile } from "../handles/file.ts";
import { rediscoverHandles } from "../handles/rediscover.ts";
import type { GuestSSH, Host } from "../host/types.ts";
import type { Store } from "../store/store.ts";
import { chooseVmm } from "../vmm/choose.ts";
import type { BootConfig, VMMDriver } from "../vmm/driver.ts";
import { BangerError, errorMessage, undoFailuresOf, withUndoNote } from "../shared/errors.ts";
import { faultPoint } from "../host/faults.ts";
import { sameProcess } from "../host/procs.ts";
import type { HookEngine, HookMap } from "./hooks.ts";
import { runOperation, type ProgressSink } from "./operation.ts";
import { checkTTLAction, initialLifetime } from "./lifetimes.ts";
import { exitReasonFromConsole } from "./exit-reason.ts";
import { fileTail } from "../host/fs.ts";
import { emptyHandles, VM_NAME_RE, VM_NAME_RULE, type PublishedPort, type SnapshotRecord, type VMHandles, type VMRecord } from "../shared/model.ts";
import type { BangerPaths, Logger } from "./plugin.ts";
import type { NetPorts, Providers } from "./providers.ts";
import { markStopped, openAll, parsePublish, portsOf, reopen } from "./ports.ts";
import { meminfoBytes } from "../shared/meminfo.ts";
import { vmPaths } from "../shared/paths.ts";
import { notRunningError } from "../shared/vm-errors.ts";
import { DEFAULT_EGRESS, formatEgress, parseEgress, parseEgressEntry, withEntries, type EgressPolicy } from "../shared/egress.ts";

/**
 * A handles.extra key the engine sets while a VM starts from a snapshot, removed once the start's after-hooks
 * (the guest's clock, a clone's identity and address) are done: reconcile stops a live VM that still has it.
 */
export const RESTORE_PENDING = "engine:restore-pending";

/** How many VMs reconcile looks at at once. */
const RECONCILE_WIDTH = 16;

export interface CreateVMParams {
  name: string;
  image?: string;
  cpus?: number;
  memoryMiB?: number;
  diskMiB?: number;
  workDiskMiB?: number;
  driver?: string;
  /** A network provider's name ("user", "tap", a plugin's own); default: the VMM's first that is loaded. */
  net?: string;
  /** A storage provider's name ("dm", "copy", a plugin's own); default: the usable one with the highest priority. */
  storage?: string;
  /** Delete (or with ttlAction "stop", stop) the VM this long after it is created. */
  ttlMs?: number;
  ttlAction?: string;
  /** Stop the VM after this long without exec, ssh, session, workspace or file activity. */
  idleTimeoutMs?: number;
  /** "delete": the idle timeout deletes the VM, whatever its state, rather than stop it (`vm run --rm`'s lease). */
  idleAction?: string;
  /** Ports to publish (`[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]`); the network must be able to (NetProvider.ports). */
  publish?: string[];
  /** Egress policy: "none", "all" or an allowlist (src/shared/egress.ts); default: EngineDeps.defaultEgress. */
  egress?: string;
}

/** A create request with every choice made and checked. */
export interface CreatePlan {
  name: string;
  image: string;
  driverName: string;
  net: string;
  storage: string;
  ports: PublishedPort[];
  /** The egress policy, canonical text. */
  egress: string;
  sizes: Pick<VMRecord["spec"], "cpus" | "memoryMiB" | "diskMiB" | "workDiskMiB">;
}

export interface EngineDeps {
  store: Store;
  host: Host;
  hooks: HookEngine;
  drivers: Map<string, VMMDriver>;
  /** Storage and network providers plugins registered: a new VM chooses one of each, and only that one's handlers act on it. */
  providers: Providers;
  paths: BangerPaths;
  log: Logger;
  defaultDriver?: string;
  newId?: () => string;
  /** How long a graceful stop may take before the VM is killed. */
  stopTimeoutMs?: number;
  /** Forget pooled connections to a VM's guest (the daemon's SSH pool); called whenever the engine stops a VM or finds it dead. */
  dropConnection?: (vmId: string) => void;
  /** The VM's guest over its pooled connection (the daemon's SSH pool): what vm:resume handlers are given. */
  dialGuest?: (vm: VMRecord) => Promise<GuestSSH>;
  /** The egress policy of a VM created without one (config.json's `egress`; default "none"). */
  defaultEgress?: string;
}

export interface StopOptions {
  /** Kill at once instead of the power button. */
  force?: boolean;
  timeoutMs?: number;
  /** Why it is stopped ("it was rolled back to box@s1"): what a command cut by it says. Default: "it was stopped". */
  why?: string;
}

export interface ReconcileOutcome {
  vm: string;
  action: "kept" | "demoted" | "removed half-created" | "finished deleting";
  source: "process" | "scratch" | "none";
  cleanupErrors: string[];
}

const noProgress: ProgressSink = () => {};

export function validateVMName(name: unknown): string {
  if (typeof name !== "string" || !VM_NAME_RE.test(name)) {
    throw new BangerError("E_BAD_NAME", `invalid vm name ${JSON.stringify(name)}: must match ${VM_NAME_RULE}`);
  }
  return name;
}

/** The VM lifecycle state machine. Plugins do the work through hooks; the engine keeps the bookkeeping honest. */
export class Engine {
  readonly cache = new HandleCache();
  private readonly d: Required<Omit<EngineDeps, "defaultDriver">> & { defaultDriver: string };
  private readonly defaultEgress: string;

  private readonly explicitDefaultDriver: string | undefined;

  /** Why each VM was last stopped on purpose, numbered in order: what a command it cut says (cutSince). */
  private readonly cuts = new Map<string, { why: string; seq: number }>();
  private cutSeq = 0;
  /** Why each VM being stopped now is ("": a plain stop), for stoppingBecause. */
  private readonly stopping = new Map<string, string>();
  /** When each VM was paused by this daemon (vm:resume's pausedMs). */
  private readonly pausedAt = new Map<string, number>();
  /** The operations reading each snapshot now (a rollback, a clone's restore), by snapshot id: a removal waits for none of them, it is refused. */
  private readonly snapshotReaders = new Map<string, string[]>();

  constructor(deps: EngineDeps) {
    this.explicitDefaultDriver = deps.defaultDriver;
    this.defaultEgress = formatEgress(parseEgress(deps.defaultEgress ?? DEFAULT_EGRESS));
    this.d = {
      newId: () => randomBytes(8).toString("hex"),
      stopTimeoutMs: 20_000,
      defaultDriver: deps.defaultDriver ?? "qemu",
      ...deps,
      // after the spread: a caller passing `dropConnection: undefined` gets the no-op too
      dropConnection: deps.dropConnection ?? (() => {}),
      dialGuest: deps.dialGuest ?? ((vm: VMRecord) => Promise.reject(new BangerError("E_STATE", `vm ${vm.name}: no connection to its guest here`))),
    } as Engine["d"];
  }

  get store(): Store {
    return this.d.store;
  }
  get hooks(): HookEngine {
    return this.d.hooks;
  }
  /** What the engine was built with, for the services that work beside it (snapshots). */
  get deps(): Readonly<Required<Omit<EngineDeps, "defaultDriver">>> {
    return this.d;
  }

  driverFor(vm: VMRecord): VMMDriver {
    const driver = this.d.drivers.get(vm.spec.driver);
    if (!driver) {
      const known = [...this.d.drivers.keys()].join(", ") || "none";
      throw new BangerError("E_STATE", `vm ${vm.name}: driver "${vm.spec.driver}" is not loaded (loaded: ${known})`);
    }
    return driver;
  }

  getVM(idOrName: string): VMRecord {
    if (typeof idOrName !== "string" || idOrName.length === 0) throw new BangerError("E_BAD_NAME", "vm name is required");
    const vm = this.d.store.getVM(idOrName);
    if (!vm) {
      if (!VM_NAME_RE.test(idOrName)) {
        throw new BangerError("E_BAD_NAME", `invalid vm name ${JSON.stringify(idOrName)}: must match ${VM_NAME_RULE}`);
      }
      throw new BangerError("E_VM_NOT_FOUND", `vm not found: ${idOrName}`);
    }
    return vm;
  }

  /** The VM, if it is really running (vmAlive) and not paused; otherwise an error saying how to start or resume it. */
  async running(idOrName: string): Promise<VMRecord> {
    const vm = this.getVM(idOrName);
    if (!(await this.alive(vm))) throw notRunningError(vm);
    refuseIfPaused(vm);
    const halted = await this.haltedBy(vm);
    if (halted) throw haltedError(vm, halted);
    return vm;
  }

  /**
   * Why the VMM has stopped a VM recorded running on its own (QEMU on a failed disk write: the host's disk
   * full), or null. A VMM that does not answer is not called halted here: the process checks say what it is.
   */
  async haltedBy(vm: VMRecord): Promise<string | null> {
    if (vm.runtime.state !== "running") return null;
    const driver = this.d.drivers.get(vm.spec.driver);
    if (!driver?.haltedBy) return null;
    return driver.haltedBy(vm).catch(() => null);
  }

  /**
   * A signal that aborts, with the halt's error, once the VMM halts the VM while `signal` has not: for a
   * request that waits on the guest (an exec), which would otherwise wait for a guest that cannot answer.
   * Looked at every `everyMs` (a VMM query each); `stop` ends the watch.
   */
  watchHalt(vm: VMRecord, signal: AbortSignal, everyMs = 2000): { signal: AbortSignal; stop(): void } {
    const ctl = new AbortController();
    const driver = this.d.drivers.get(vm.spec.driver);
    const onAbort = () => ctl.abort(signal.reason);
    if (signal.aborted) ctl.abort(signal.reason);
    else signal.addEventListener("abort", onAbort, { once: true });
    let cancel = () => {};
    // a look in flight when stop comes must not arm another
    let stopped = false;
    const look = () => {
      cancel = this.d.host.clock.timer(everyMs, () => {
        this.haltedBy(vm)
          .then((why) => {
            if (stopped || ctl.signal.aborted) return;
            if (why) ctl.abort(haltedError(vm, why));
            else look();
          })
          .catch(() => !stopped && look());
      });
    };
    if (driver?.haltedBy && !ctl.signal.aborted) look();
    return {
      signal: ctl.signal,
      stop: () => {
        stopped = true;
        cancel();
        signal.removeEventListener("abort", onAbort);
      },
    };
  }

  /** Run `fn` on a VM that is not running, under its lock so nothing starts it meanwhile (`vm commit` reads its disk). */
  async whileStopped<T>(idOrName: string, fn: (vm: VMRecord) => Promise<T>): Promise<T> {
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, async () => {
      const vm = this.getVM(first.id);
      if (await this.alive(vm)) {
        throw new BangerError("E_STATE", `vm ${vm.name} is running: stop it first (\`banger vm stop ${vm.name}\`) so its disk is consistent`);
      }
      return fn(vm);
    });
  }

  /**
   * Stop the guest's vCPUs; the VMM process, its disks and network stay.
   * The VMM is asked first and the record written after: a daemon dying in
   * between leaves a paused VM recorded as running, which reconcile corrects
   * from the VMM's own answer (runState).
   */
  async pause(idOrName: string): Promise<VMRecord> {
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, async () => {
      const vm = this.getVM(first.id);
      const driver = this.driverFor(vm);
      if (!driver.pause || !driver.resume) throw new BangerError("E_STATE", `vm ${vm.name}: the ${driver.name} driver cannot pause a VM`);
      const handles = await this.handlesOf(vm);
      // the process check only: the VMM answering the command is the API check (one round trip, not two)
      if (!handles || handles.pid <= 0 || !(await sameProcess(this.d.host.procs, handles.pid, handles.pidStartTime))) {
        throw notRunningError(vm);
      }
      if (vm.runtime.state === "paused") return vm;
      if (vm.runtime.state !== "running") throw new BangerError("E_STATE", `vm ${vm.name} is ${vm.runtime.state}: only a running VM can be paused`);
      await driver.pause(vm, handles);
      this.pausedAt.set(vm.id, this.d.host.clock.now().getTime());
      await faultPoint("pause:after-vmm");
      vm.runtime.state = "paused";
      this.save(vm);
      return vm;
    });
  }

  /** Let a paused VM run on (the reverse of pause, with the same crash ordering). */
  async resume(idOrName: string): Promise<VMRecord> {
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, async () => {
      const vm = this.getVM(first.id);
      const driver = this.driverFor(vm);
      if (!driver.pause || !driver.resume) throw new BangerError("E_STATE", `vm ${vm.name}: the ${driver.name} driver cannot pause or resume a VM`);
      const handles = await this.handlesOf(vm);
      if (!handles || handles.pid <= 0 || !(await sameProcess(this.d.host.procs, handles.pid, handles.pidStartTime))) {
        throw notRunningError(vm);
      }
      if (vm.runtime.state === "running") {
        const halted = await this.haltedBy(vm);
        if (halted) await this.resumeHalted(vm, handles, halted);
        return vm;
      }
      if (vm.runtime.state !== "paused") throw new BangerError("E_STATE", `vm ${vm.name} is ${vm.runtime.state}: only a paused VM can be resumed`);
      await driver.resume(vm, handles);
      await faultPoint("resume:after-vmm");
      vm.runtime.state = "running";
      this.save(vm);
      // its guest's clock stood still meanwhile: the guest plugin sets it (a failure is the log's, the VM runs)
      const since = this.pausedAt.get(vm.id);
      this.pausedAt.delete(vm.id);
      const pausedMs = since === undefined ? null : this.d.host.clock.now().getTime() - since;
      for (const f of await this.d.hooks.runAll("vm:resume", { vm, pausedMs, guest: () => this.d.dialGuest(vm) })) this.d.log.warn(`resume ${vm.name}: ${f.message}`);
      return vm;
    });
  }

  /**
   * Let a VM its VMM halted run on: the VMM retries what failed (QEMU: the disk write), and halts it again at
   * once if the cause is still there, which is looked for over the next `settleMs` and refused in one line.
   */
  private async resumeHalted(vm: VMRecord, handles: VMHandles, why: string, settleMs = 500): Promise<void> {
    const driver = this.driverFor(vm);
    if (!driver.resume) throw new BangerError("E_STATE", `vm ${vm.name} is halted (${why}) and the ${driver.name} driver cannot resume a VM`);
    this.d.log.info(`vm ${vm.name}: resuming it, halted by its VMM (${why})`);
    await driver.resume(vm, handles);
    for (let waited = 0; waited < settleMs; waited += 100) {
      await this.d.host.clock.sleep(100);
      const again = await this.haltedBy(vm);
      if (again) throw new BangerError("E_STATE", `vm ${vm.name} is halted again at once: ${again}; the cause is still there`);
    }
  }

  listVMs(): VMRecord[] {
    return this.d.store.listVMs();
  }

  /** Current handles: cache first, then the scratch file. */
  async handlesOf(vm: VMRecord): Promise<VMHandles | null> {
    return this.cache.get(vm.id) ?? (await readHandlesFile(this.d.host.fs, vm.runtime.vmDir)).handles;
  }

  async alive(vm: VMRecord): Promise<boolean> {
    const driver = this.d.drivers.get(vm.spec.driver);
    if (!driver) return false;
    return vmAlive(vm, await this.handlesOf(vm), driver, this.d.host.procs);
  }

  /** The port capability of the VM's network (refused with one line when it has none). */
  netPorts(vm: VMRecord): NetPorts {
    return portsOf(this.d.providers, vm);
  }

  /** A new VM id that is no VM's id or name (a name may be any 16 hex digits). */
  private _unusedId(): string {
    for (;;) {
      const id = this.d.newId();
      if (!this.d.store.getVM(id)) return id;
    }
  }

  /** Persist a changed record (updatedAt set now). */
  save(vm: VMRecord): void {
    vm.updatedAt = this.d.host.clock.now().toISOString();
    this.d.store.upsertVM(vm);
  }

  /** vCPUs the VMM cannot run, or more memory than the host has: refused at create, not by the VMM at the first start. */
  private async checkFits(driverName: string, driver: VMMDriver | undefined, sizes: { cpus: number; memoryMiB: number }): Promise<void> {
    if (driver?.maxCpus && sizes.cpus > driver.maxCpus) throw new BangerError("E_BAD_REQUEST", `cpus ${sizes.cpus}: the ${driverName} driver runs at most ${driver.maxCpus}`);
    const total = meminfoBytes((await this.d.host.fs.readText("/proc/meminfo")) ?? "", "MemTotal");
    if (total > 0 && sizes.memoryMiB * 1048576 > total) {
      throw new BangerError("E_BAD_REQUEST", `memory ${sizes.memoryMiB} MiB is more than the host has (${Math.floor(total / 1048576)} MiB)`);
    }
  }

  /** Everything about a create request that can be refused before any work (and before a stream starts), and the providers it gets. */
  async checkCreate(params: CreateVMParams): Promise<CreatePlan> {
    const name = validateVMName(params.name);
    if (this.d.store.getVMByName(name)) throw new BangerError("E_NAME_TAKEN", `vm name already taken: ${name}`);
    // every command takes a name or an id: a name that is another VM's id would make `vm delete NAME` delete that one
    const byId = this.d.store.getVM(name);
    if (byId) throw new BangerError("E_NAME_TAKEN", `vm name already taken: ${name} is the id of vm ${byId.name}`);
    const image = params.image ?? "default";
    if (!this.d.store.getImage(image)) {
      throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${image} (build it with \`banger image build --name ${image}\`)`);
    }
    const driverName = params.driver ?? this.d.defaultDriver;
    if (!this.d.drivers.has(driverName)) {
      throw new BangerError("E_BAD_REQUEST", `unknown driver ${JSON.stringify(driverName).slice(0, 80)} (loaded: ${[...this.d.drivers.keys()].join(", ") || "none"})`);
    }
    const { providers } = this.d;
    if (params.net !== undefined && !providers.net.has(params.net)) {
      throw new BangerError("E_BAD_REQUEST", `unknown network mode ${JSON.stringify(params.net).slice(0, 80)} (known: ${providers.names("net").join(", ") || "none"})`);
    }
    // what the VMM can attach and a loaded provider serves for it
    const driver = this.d.drivers.get(driverName);
    const nets = providers.netsFor(driverName, driver);
    const net = params.net ?? providers.defaultNet(driverName, driver);
    if (net === undefined) {
      throw new BangerError("E_BAD_REQUEST", `no default network serves ${driverName} (${nets.length ? `name one with --net: ${nets.join(", ")}` : `loaded: ${providers.names("net").join(", ") || "none"}`})`);
    }
    if (!nets.includes(net)) {
      throw new BangerError("E_BAD_REQUEST", `${driverName} cannot use --net ${net} (it supports: ${nets.join(", ")})`);
    }
    const sizes = {
      cpus: _atLeast(params.cpus, 1, "cpus"),
      memoryMiB: _atLeast(params.memoryMiB, 256, "memory (MiB)", 64),
      diskMiB: _atLeast(params.diskMiB, 0, "disk (MiB)", 0),
      workDiskMiB: _atLeast(params.workDiskMiB, 0, "work disk (MiB)", 0),
    };
    await this.checkFits(driverName, driver, sizes);
    // refused here, before any work: initialLifetime checks the values
    initialLifetime(this.d.host.clock.now(), { ...params, ttlAction: checkTTLAction(params.ttlAction), idleAction: checkTTLAction(params.idleAction, "idle action") });
    if (params.ttlAction !== undefined && !params.ttlMs) throw new BangerError("E_BAD_REQUEST", "a ttl action needs a ttl");
    if (params.idleAction !== undefined && !params.idleTimeoutMs) throw new BangerError("E_BAD_REQUEST", "an idle action needs an idle timeout");
    const ports = parsePublish(providers, net, params.publish);
    const egress = params.egress === undefined ? this.defaultEgress : formatEgress(parseEgress(params.egress));
    const spec = { image, ...sizes, driver: driverName, net, storage: params.storage ?? "" };
    const storage = await providers.chooseStorage(spec, params.storage, (m) => this.d.log.debug(`vm ${name}: ${m}`));
    return { name, image, driverName, net, storage, ports, egress, sizes };
  }

  /** The providers a VM recorded that no plugin registered this time (a user's plugin gone from the config). */
  private missingProviders(vm: VMRecord): string[] {
    const out: string[] = [];
    for (const kind of ["storage", "net"] as const) {
      const name = vm.spec[kind];
      if (name && !this.d.providers[kind].has(name)) out.push(`${kind} "${name}" is not loaded (loaded: ${this.d.providers.names(kind).join(", ") || "none"})`);
    }
    return out;
  }

  /** runAll for a teardown hook, with a failure for each of the VM's providers that is not there to do its part. */
  private async teardown<K extends "vm:cleanup" | "vm:delete">(name: K, payload: HookMap[K]): Promise<Error[]> {
    const missing = this.missingProviders(payload.vm).map((m) => new Error(`${name}: ${m}; its handlers did not run`));
    return [...missing, ...(await this.d.hooks.runAll(name, payload))];
  }

  /** The VMM for a new VM: the one asked for if it can run here, else the configured default, else the best usable one. */
  resolveDriver(requested?: string): Promise<string> {
    return chooseVmm(this.d.drivers, requested, this.explicitDefaultDriver);
  }

  /** `disksFrom`: a clone's; its disks will be the snapshot's (vm:restore), so a storage provider may make them from it right away. */
  async create(params: CreateVMParams, progress: ProgressSink = noProgress, clone: { disksFrom?: SnapshotRecord } = {}): Promise<VMRecord> {
    params = { ...params, driver: await this.resolveDriver(params.driver) };
    const { name, image, driverName, net, storage, ports, egress, sizes } = await this.checkCreate(params);
    const id = this._unusedId();
    const vmDir = join(this.d.paths.vmsDir, id);
    const p = vmPaths(vmDir);
    const now = this.d.host.clock.now().toISOString();
    const vm: VMRecord = {
      id,
      name,
      spec: { image, ...sizes, driver: driverName, net, storage, egress, ...(ports.length ? { ports } : {}) },
      runtime: {
        state: "creating",
        guestIP: "",
        apiSockPath: p.apiSock,
        vsockPath: "",
        vsockCID: 0,
        logPath: p.serialLog,
        metricsPath: "",
        dnsName: `${name}.banger`,
        vmDir,
        systemOverlay: "",
        workDiskPath: "",
        lastError: "",
        sshHost: "",
        sshPort: 0,
      },
      lifetime: initialLifetime(new Date(now), { ...params, ttlAction: checkTTLAction(params.ttlAction), idleAction: checkTTLAction(params.idleAction, "idle action") }),
      createdAt: now,
      updatedAt: now,
    };
    // Under the VM's lock from the first row on: a start or delete arriving meanwhile waits for the create to finish or unwind.
    return this.cache.withLock(id, () =>
      runOperation({ name: `vm create ${name}`, vm, host: this.d.host, log: this.d.log, progress }, async (op) => {
        // The row goes in first so the name is claimed atomically (UNIQUE) before any work.
        this.d.store.upsertVM(vm);
        op.defer("vm row", () => this.d.store.deleteVM(id));
        await faultPoint("create:after-row");
        await this.d.host.fs.mkdirp(vmDir, 0o700);
        op.defer("vm dir", () => this.d.host.fs.rmrf(vmDir));
        await this.d.hooks.run("vm:create", { vm, progress: op.progress, op, ...(clone.disksFrom ? { disksFrom: clone.disksFrom } : {}) });
        await faultPoint("create:after-disk");
        vm.runtime.state = "created";
        this.save(vm);
        await faultPoint("create:before-commit");
        return vm;
      }),
    );
  }

  async start(idOrName: string, progress: ProgressSink = noProgress, signal: AbortSignal = new AbortController().signal): Promise<VMRecord> {
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, () => this.startHeld(first.id, progress, signal));
  }

  /** What start does, for a caller that holds the VM's lock (rollback); `restoreFrom` starts from saved state instead of booting. */
  async startHeld(id: string, progress: ProgressSink, signal: AbortSignal, opts: { restoreFrom?: string; snapshot?: SnapshotRecord } = {}): Promise<VMRecord> {
    {
      const vm = this.getVM(id);
      const driver = this.driverFor(vm);
      const missing = this.missingProviders(vm);
      if (missing.length) throw new BangerError("E_STATE", `vm ${vm.name}: ${missing.join("; ")}`);
      if (await this.alive(vm)) {
        refuseIfPaused(vm);
        if (vm.runtime.state !== "running") {
          vm.runtime.state = "running";
          this.save(vm);
        }
        return vm;
      }
      const image = this.d.store.getImage(vm.spec.image);
      if (!image) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${vm.spec.image}`);
      vm.runtime.state = "starting";
      vm.runtime.lastError = "";
      this.save(vm);
      await faultPoint("start:after-starting");
      const handles = emptyHandles();
      const boot: BootConfig = {
        kernelPath: image.kernelPath,
        initrdPaths: image.initrdPath ? [image.initrdPath] : [],
        kernelArgs: [],
        disks: [],
        netArgs: [],
      };
      try {
        // The start's undos are the whole teardown of a failed start: each runs once, and vm:cleanup
        // (for VMs found dead, with nothing left to undo them) does not run on top.
        return await runOperation({ name: `vm start ${vm.name}`, vm, host: this.d.host, log: this.d.log, progress, signal }, async (op) => {
          await this.d.hooks.run("vm:start:before", { vm, boot, handles, progress: op.progress, op, restored: !!opts.restoreFrom, snapshot: opts.snapshot });
          // until the after-hooks are done, a restored guest runs on its snapshot's clock and (a clone) its source's
          // identity: a daemon that dies before then leaves this mark for the next one's reconcile (see RESTORE_PENDING)
          if (opts.restoreFrom) handles.extra[RESTORE_PENDING] = "1";
          // Record what the before-hooks made (tap, loops, dm) before the process exists: a daemon
          // dying during or right after launch must still let the next one tear them down.
          await writeHandlesFile(this.d.host.fs, vm.runtime.vmDir, handles);
          op.defer("handles file", async () => {
            this.cache.delete(vm.id);
            await removeHandlesFile(this.d.host.fs, vm.runtime.vmDir);
          });
          op.progress(opts.restoreFrom ? `restoring ${driver.name} state` : `launching ${driver.name}`);
          const launched = await driver.launch(vm, boot, opts.restoreFrom ? { restoreFrom: opts.restoreFrom } : undefined);
          handles.pid = launched.pid;
          handles.pidStartTime = launched.pidStartTime;
          op.defer("vm process", () => driver.kill(vm, handles));
          await faultPoint("start:after-launch");
          await writeHandlesFile(this.d.host.fs, vm.runtime.vmDir, handles);
          this.cache.set(vm.id, handles);
          await faultPoint("start:after-handles");
          // before the guest can open a connection that matters: the enforcer has the policy from the first one on
          await this.applyEgress(vm, handles);
          await this.d.hooks.run("vm:start:after", { vm, handles, progress: op.progress, signal: op.signal, op, restored: !!opts.restoreFrom, snapshot: opts.snapshot, cloneNet: {} });
          if (vm.spec.ports?.length) {
            op.progress(`publishing ${vm.spec.ports.length} port(s)`);
            await openAll(this.netPorts(vm), vm, handles);
          }
          // Plugins may have added handles after launch; persist the final set.
          delete handles.extra[RESTORE_PENDING];
          this.cache.set(vm.id, handles);
          await writeHandlesFile(this.d.host.fs, vm.runtime.vmDir, handles);
          await faultPoint("start:before-running");
          vm.runtime.state = "running";
          this.save(vm);
          return vm;
        });
      } catch (e) {
        vm.runtime.state = "error";
        markStopped(vm);
        vm.runtime.lastError = withUndoNote(errorMessage(e), undoFailuresOf(e));
        this.save(vm);
        throw e;
      }
    }
  }

  async stop(idOrName: string, opts: StopOptions = {}): Promise<VMRecord> {
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, () => this.stopLocked(first.id, opts));
  }

  /** What stop does, for a caller that holds the VM's lock (rollback). */
  stopHeld(id: string, opts: StopOptions): Promise<VMRecord> {
    return this.stopLocked(id, opts);
  }

  /** Mark a snapshot as read by `what` ("vm rollback box") until the returned release: snapshot rm refuses it meanwhile. */
  readSnapshot(snapId: string, what: string): () => void {
    this.snapshotReaders.set(snapId, [...(this.snapshotReaders.get(snapId) ?? []), what]);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.snapshotReaders.get(snapId) ?? [];
      left.splice(left.indexOf(what), 1);
      if (!left.length) this.snapshotReaders.delete(snapId);
    };
  }

  /** What reads the snapshot now (readSnapshot), oldest first. */
  snapshotReadBy(snapId: string): string[] {
    return this.snapshotReaders.get(snapId) ?? [];
  }

  /** A mark for cutSince: take it before a command starts in a VM. */
  cutMark(): number {
    return this.cutSeq;
  }

  /** Why the VM was stopped on purpose (stop, restart, rollback, delete, its lifetime) after `mark`, or null: a command it cut says so, not "connection closed". */
  cutSince(vmId: string, mark: number): string | null {
    const c = this.cuts.get(vmId);
    return c && c.seq > mark ? c.why : null;
  }

  /** Why the VM is being stopped right now ("" for a plain stop; asked from inside it, e.g. by vm:cleanup hooks), or null when it is not. */
  stoppingBecause(vmId: string): string | null {
    return this.stopping.get(vmId) ?? null;
  }

  private async stopLocked(id: string, opts: StopOptions): Promise<VMRecord> {
    const vm = this.getVM(id);
    if (vm.runtime.state !== "stopped" && vm.runtime.state !== "created") this.cuts.set(vm.id, { why: opts.why ?? "it was stopped", seq: ++this.cutSeq });
    this.stopping.set(vm.id, opts.why ?? "");
    try {
      return await this.stopNow(vm, opts);
    } finally {
      this.stopping.delete(vm.id);
    }
  }

  private async stopNow(vm: VMRecord, opts: StopOptions): Promise<VMRecord> {
    const driver = this.driverFor(vm);
    const handles = (await this.handlesOf(vm)) ?? (await rediscoverHandles(vm, driver, this.d.host.fs, this.d.host.procs)).handles;
    const failures: Error[] = [];
    // a pooled connection to a guest that is going away would only hang its next user
    this.d.dropConnection(vm.id);
    if (vm.runtime.state === "paused" && !opts.force && driver.resume) {
      // a paused guest cannot act on the power button: let it run so it can shut down cleanly (kill stays the fallback)
      await driver.resume(vm, handles).catch((e) => this.d.log.warn(`stop ${vm.name}: resume before shutdown failed: ${errorMessage(e)}`));
    }
    const halted = !opts.force && handles ? await this.haltedBy(vm) : null;
    if (halted) {
      // a halted guest cannot act on the power button either: let it run if it can, else waiting for it is waiting for nothing
      await this.resumeHalted(vm, handles!, halted).catch((e) => {
        this.d.log.warn(`stop ${vm.name}: its guest cannot shut down (${errorMessage(e)}): stopped at once`);
        opts = { ...opts, force: true };
      });
    }
    if (vm.runtime.state !== "stopped" && vm.runtime.state !== "created") {
      vm.runtime.state = "stopping";
      this.save(vm);
      await faultPoint("stop:after-stopping");
      failures.push(...(await this.d.hooks.runAll("vm:stop:before", { vm, handles })));
      try {
        if (opts.force) await driver.kill(vm, handles);
        else await driver.stop(vm, handles, opts.timeoutMs ?? this.d.stopTimeoutMs);
      } catch (e) {
        failures.push(e instanceof Error ? e : new Error(String(e)));
        await driver.kill(vm, handles).catch((k) => failures.push(k));
      }
      await faultPoint("stop:after-kill");
    }
    failures.push(...(await this.teardown("vm:cleanup", { vm, handles })));
    this.cache.delete(vm.id);
    await removeHandlesFile(this.d.host.fs, vm.runtime.vmDir);
    vm.runtime.state = "stopped";
    vm.runtime.lastError = failures.map((f) => f.message).join("; ");
    markStopped(vm);
    this.save(vm);
    failures.push(...(await this.d.hooks.runAll("vm:stop:after", { vm })));
    for (const f of failures) this.d.log.warn(`stop ${vm.name}: ${f.message}`);
    return vm;
  }

  /** The policy enforced on a VM: its own plus what `vm:egress` policy sources add. */
  async effectiveEgress(vm: VMRecord): Promise<EgressPolicy> {
    const own = parseEgress(vm.spec.egress ?? DEFAULT_EGRESS);
    const added: ReturnType<typeof parseEgressEntry>[] = [];
    await this.d.hooks.run("vm:egress", { vm, policy: own, add: (entry: string) => void added.push(parseEgressEntry(entry)) });
    return withEntries(own, added);
  }

  private async applyEgress(vm: VMRecord, handles: VMHandles): Promise<EgressPolicy> {
    const policy = await this.effectiveEgress(vm);
    await this.d.hooks.run("vm:egress:apply", { vm, policy, handles });
    return policy;
  }

  /**
   * Change a VM's egress policy (stored first, so a restart keeps it); a
   * running VM's enforcer gets it at once. Returns the effective policy and,
   * for a running VM, when it was applied.
   */
  async setEgress(idOrName: string, text: string): Promise<{ vm: VMRecord; effective: EgressPolicy; applied: boolean }> {
    const egress = formatEgress(parseEgress(text));
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, async () => {
      const vm = this.getVM(first.id);
      const before = vm.spec.egress;
      vm.spec.egress = egress;
      this.save(vm);
      const handles = (await this.alive(vm)) ? await this.handlesOf(vm) : null;
      if (!handles) return { vm, effective: await this.effectiveEgress(vm), applied: false };
      try {
        return { vm, effective: await this.applyEgress(vm, handles), applied: true };
      } catch (e) {
        // the enforcer refused: the record keeps saying what is really enforced
        vm.spec.egress = before;
        this.save(vm);
        await this.applyEgress(vm, handles).catch((u) => this.d.log.warn(`egress ${vm.name}: restoring the old policy failed: ${errorMessage(u)}`));
        throw e;
      }
    });
  }

  async restart(idOrName: string, progress: ProgressSink = noProgress): Promise<VMRecord> {
    await this.stop(idOrName, { why: "it was restarted" });
    return this.start(idOrName, progress);
  }

  async delete(idOrName: string, opts: { force?: boolean; why?: string } = {}): Promise<VMRecord> {
    const first = this.getVM(idOrName);
    return this.cache.withLock(first.id, async () => {
      const vm = await this.stopLocked(first.id, { force: opts.force, timeoutMs: opts.force ? 0 : undefined, why: opts.why ?? "it was deleted" });
      vm.runtime.state = "deleting";
      this.save(vm);
      await faultPoint("delete:after-deleting");
      await this.finishDelete(vm);
      return vm;
    });
  }

  /** The part of delete after the VM is stopped; also how reconcile finishes a delete a crash cut short. */
  private async finishDelete(vm: VMRecord): Promise<void> {
    const failures = await this.teardown("vm:delete", { vm });
    await this.d.host.fs.rmrf(vm.runtime.vmDir);
    await faultPoint("delete:after-rmrf");
    this.d.store.deleteVM(vm.id);
    for (const f of failures) this.d.log.warn(`delete ${vm.name}: ${f.message}`);
  }

  /**
   * Startup reconcile: every VM the store says is up is either kept (live
   * process found, cache seeded) or demoted to stopped after cleanup runs
   * with the scratch handles, so no tap, loop or dm target leaks.
   */
  async reconcile(): Promise<ReconcileOutcome[]> {
    const all = this.d.store.listVMs();
    const out: ReconcileOutcome[] = [];
    // first: a driver's helper a killed daemon left (QEMU: a snapshot's receiver) dies before any VM or snapshot is looked at
    for (const driver of this.d.drivers.values()) {
      const lines = await driver.reapLeftovers?.({ vms: all, vmsDir: this.d.paths.vmsDir }).catch((e: unknown) => {
        this.d.log.warn(`reconcile ${driver.name}: reaping what it left failed: ${errorMessage(e)}`);
        return [];
      });
      for (const line of lines ?? []) this.d.log.info(`reconcile ${driver.name}: ${line}`);
    }
    // a create or delete the last daemon died in the middle of: finish it (rare, so one at a time)
    for (const vm of all) {
      if (vm.runtime.state !== "creating" && vm.runtime.state !== "deleting") continue;
      const r = await this.cache.withLock(vm.id, () => this.finishInterrupted(vm));
      if (r) out.push(r);
    }
    const vms = all.filter((vm) => ["running", "paused", "starting", "stopping", "error"].includes(vm.runtime.state));
    const results: (ReconcileOutcome | null)[] = new Array(vms.length).fill(null);
    // VMs are independent (each under its own lock): overlap their socket pings and file reads,
    // a few at a time, so re-adopting hundreds after kill -9 takes well under a second; outcomes keep store order
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < vms.length; i = next++) {
        const vm = vms[i]!;
        results[i] = await this.cache.withLock(vm.id, () => this.reconcileOne(vm, "vm process was gone at daemon start"));
      }
    };
    await Promise.all(Array.from({ length: Math.min(RECONCILE_WIDTH, vms.length) }, worker));
    return [...out, ...results.filter((r): r is ReconcileOutcome => r !== null)];
  }

  /**
   * A VM recorded as running whose process has died while the daemon runs
   * (crash, kill -9, guest poweroff): demote it and clean up now rather than
   * at the next daemon start. Skipped while an operation holds the VM.
   */
  async noticeExit(id: string): Promise<ReconcileOutcome | null> {
    if (this.cache.isLocked(id)) return null;
    return this.cache.withLock(id, async () => {
      const vm = this.d.store.getVM(id);
      if (!vm || (vm.runtime.state !== "running" && vm.runtime.state !== "paused") || (await this.alive(vm))) return null;
      return this.reconcileOne(vm, (await this.consoleExitReason(vm)) ?? "vm process exited");
    });
  }

  /** What the end of the VM's serial console says of why its process ended (a panic, a power-off), if anything. */
  private async consoleExitReason(vm: VMRecord): Promise<string | null> {
    const tail = vm.runtime.logPath ? await fileTail(this.d.host.fs, vm.runtime.logPath) : null;
    const reason = tail && exitReasonFromConsole(tail);
    return reason ? `${reason} (banger vm logs ${vm.name})` : null;
  }

  /**
   * A live VM whose driver says its guest can never run again (guestStuck) is stopped now as reconcile stops
   * one (killed, cleaned up, the reason its lastError): after a live snapshot that failed. The caller holds its
   * lock. Returns the reason, or null when the guest runs on.
   */
  async stopIfStuck(vm: VMRecord): Promise<string | null> {
    const driver = this.driverFor(vm);
    const handles = await this.handlesOf(vm);
    if (!driver.guestStuck || !handles) return null;
    const why = await driver.guestStuck(vm, handles).catch(() => null);
    if (!why) return null;
    await this.reconcileOne(vm, why);
    this.d.log.warn(`vm ${vm.name}: stopped: ${why}`);
    return why;
  }

  /**
   * A create or delete the daemon died in the middle of (its undo stack died
   * with it): a half-made VM is removed, a half-deleted one deleted, after
   * cleanup of whatever its scratch file or a live process still names.
   */
  private async finishInterrupted(vm: VMRecord): Promise<ReconcileOutcome | null> {
    const driver = this.d.drivers.get(vm.spec.driver);
    const failures: Error[] = [];
    if (driver) {
      const found = await rediscoverHandles(vm, driver, this.d.host.fs);
      if (found.source === "process") await driver.kill(vm, found.handles).catch((e) => failures.push(e));
      failures.push(...(await this.teardown("vm:cleanup", { vm, handles: found.handles })));
    }
    const action = vm.runtime.state === "creating" ? "removed half-created" : "finished deleting";
    this.cache.delete(vm.id);
    await this.finishDelete(vm);
    return { vm: vm.name, action, source: "none", cleanupErrors: failures.map((e) => e.message) };
  }

  /** Running or paused, as the VMM says; a VMM that cannot tell keeps a recorded pause (nothing but `vm resume` ends one). */
  private async liveState(vm: VMRecord, driver: VMMDriver): Promise<"running" | "paused"> {
    const told = driver.runState ? await driver.runState(vm).catch(() => null) : null;
    return told ?? (vm.runtime.state === "paused" ? "paused" : "running");
  }

  /** Keep or demote one VM; the caller holds its lock. */
  private async reconcileOne(vm: VMRecord, goneReason: string): Promise<ReconcileOutcome | null> {
    const driver = this.d.drivers.get(vm.spec.driver);
    if (!driver) {
      this.d.log.warn(`reconcile ${vm.name}: driver ${vm.spec.driver} not loaded; left as is`);
      return null;
    }
    const found = await rediscoverHandles(vm, driver, this.d.host.fs, this.d.host.procs);
    let alive = await vmAlive(vm, found.handles, driver, this.d.host.procs);
    // a found process whose API socket is slow to answer under load gets a few more chances before it counts as hung
    for (let i = 0; !alive && found.source === "process" && i < 3; i++) {
      await this.d.host.clock.sleep(500);
      alive = await vmAlive(vm, found.handles, driver, this.d.host.procs);
    }
    // a start from a snapshot the last daemon died in: the guest kept its snapshot's clock and (a clone, a warm start)
    // its source's hostname, keys and RNG state, so it is stopped, not kept; a boot of it gets its own from its seed
    const cutRestore = alive && found.handles.extra[RESTORE_PENDING] !== undefined;
    // its process runs but its VMM never answered: a hung VMM (killed below), not a vanished one
    const hung = !alive && found.source === "process" && !!(await sameProcess(this.d.host.procs, found.handles.pid, found.handles.pidStartTime));
    // answering or not, a VMM whose guest can never run again (QEMU 7.2 after a failed background save) is stopped, not kept
    const stuck = !cutRestore && (alive || hung) && driver.guestStuck ? await driver.guestStuck(vm, found.handles).catch(() => null) : null;
    if (cutRestore) goneReason = "its start from a snapshot was cut short (the daemon stopped) before the guest got its own clock and identity: stopped, start it again";
    else if (stuck) goneReason = stuck;
    else if (hung) goneReason = `its VMM process (pid ${found.handles.pid}) ran but did not answer: killed`;
    if (cutRestore || stuck) alive = false;
    const asRead = found.unchanged ? JSON.stringify(found.handles) : null;
    const discarded: string[] = [];
    const hookErrors = await this.d.hooks.runAll("vm:reconcile", { vm, handles: found.handles, alive, discard: (reason) => void discarded.push(reason) });
    if (alive && discarded.length) {
      alive = false;
      goneReason = `not kept: ${discarded.join("; ")}`;
    }
    if (alive && vm.spec.ports?.length) {
      // the VMM kept its forwards across the daemon's death; reopen only what it lost
      const lost = await reopen(this.netPorts(vm), vm, found.handles).catch((e: unknown) => [errorMessage(e)]);
      hookErrors.push(...lost.map((m) => new Error(m)));
      this.save(vm);
    }
    if (alive) {
      this.cache.set(vm.id, found.handles);
      // enforcers that keep their state in the daemon (net-user's proxy) lost it with the last one
      await this.applyEgress(vm, found.handles).catch((e) => hookErrors.push(e instanceof Error ? e : new Error(String(e))));
      // rewriting an identical handles.json costs an fsync per VM: most of re-adopting many VMs
      if (asRead === null || JSON.stringify(found.handles) !== asRead) await writeHandlesFile(this.d.host.fs, vm.runtime.vmDir, found.handles);
      const state = await this.liveState(vm, driver);
      if (vm.runtime.state !== state) {
        vm.runtime.state = state;
        this.save(vm);
      }
      return { vm: vm.name, action: "kept", source: found.source, cleanupErrors: hookErrors.map((e) => e.message) };
    }
    if (vm.runtime.state === "error" && found.source === "none") return null;
    // A live-but-unanswering process (hung VMM) still holds resources: kill it before cleanup.
    if (found.source === "process" || discarded.length || stuck || cutRestore) await driver.kill(vm, found.handles).catch(() => {});
    this.d.dropConnection(vm.id);
    const failures = [...hookErrors, ...(await this.teardown("vm:cleanup", { vm, handles: found.handles }))];
    this.cache.delete(vm.id);
    await removeHandlesFile(this.d.host.fs, vm.runtime.vmDir);
    vm.runtime.state = "stopped";
    vm.runtime.lastError = failures.length ? failures.map((f) => f.message).join("; ") : goneReason;
    markStopped(vm);
    this.save(vm);
    return { vm: vm.name, action: "demoted", source: found.source, cleanupErrors: failures.map((e) => e.message) };
  }
}

/** The one line for a VM its VMM halted (Engine.haltedBy): the cause, and the way on once it is gone. */
export function haltedError(vm: VMRecord, why: string): BangerError {
  const fix = why.includes("no space left") ? "free space there" : "fix that";
  return new BangerError("E_STATE", `vm ${vm.name} is halted: ${why}; ${fix}, then \`banger vm resume ${vm.name}\`: it runs on from where it stopped`);
}

/** exec, ssh, sessions and workspaces need a guest that runs: a paused one would hang them, so they are refused with the way out. */
export function refuseIfPaused(vm: VMRecord): void {
  if (vm.runtime.state === "paused") throw new BangerError("E_STATE", `vm ${vm.name} is paused: resume it with \`banger vm resume ${vm.name}\``);
}

function _atLeast(v: number | undefined, dflt: number, what: string, min = 1): number {
  const n = v ?? dflt;
  // a million MiB / cpus is already absurd here; the cap keeps huge values out of qemu argv and SQLite
  if (!Number.isInteger(n) || n < min || n > 1 << 20) throw new BangerError("E_BAD_REQUEST", `${what} must be an integer from ${min} to ${1 << 20}, got ${v}`);
  return n;
}
