import { join } from "node:path";
import { vmAlive } from "../handles/alive.ts";
import { faultPoint } from "../host/faults.ts";
import { BangerError, errorMessage, isBangerError, undoFailuresOf } from "../shared/errors.ts";
import { SHAPE_FIELDS, VM_NAME_RE, VM_NAME_RULE, type ShapeKey, type SnapshotRecord, type VMRecord } from "../shared/model.ts";
import { tempPathFor } from "../shared/temps.ts";
import type { CreateVMParams, Engine } from "./engine.ts";
import { runOperation, type ProgressSink } from "./operation.ts";

/** The memory and device state file in a snapshot's dir (present when `memory`). */
export const STATE_FILE = "state.mig";
/** What the snapshot is, beside its files: the record as it was committed. */
const META_FILE = "snapshot.json";

const noProgress: ProgressSink = () => {};

/** What a warm-start template is made at; left out, each is what `vm create` would choose. */
export type WarmShape = Pick<CreateVMParams, "cpus" | "memoryMiB" | "diskMiB" | "workDiskMiB" | "driver" | "net" | "storage">;

/** What a clone takes from its create request, not from its snapshot: its lifetime, published ports and egress policy. */
export type CloneOwnParams = Pick<CreateVMParams, "ttlMs" | "ttlAction" | "idleTimeoutMs" | "idleAction" | "publish" | "egress">;

type ShapeSpec = Pick<SnapshotRecord["spec"], ShapeKey>;

/** The key a warm start is looked up by: a clone has its template's image, VMM, network, storage and sizes. */
function sameShape(a: ShapeSpec, b: ShapeSpec): boolean {
  return SHAPE_FIELDS.every(({ key }) => a[key] === b[key]);
}

export function validateSnapshotName(name: unknown): string {
  if (typeof name !== "string" || !VM_NAME_RE.test(name)) {
    throw new BangerError("E_BAD_NAME", `invalid snapshot name ${JSON.stringify(name)}: must match ${VM_NAME_RULE}`);
  }
  return name;
}

/** `VM@SNAP` → its parts; a bare `SNAP` takes `vmName`. */
export function parseSnapshotRef(ref: string, vmName?: string): { vm: string; snap: string } {
  if (typeof ref !== "string" || ref.length === 0) throw new BangerError("E_BAD_NAME", "snapshot name is required (VM@SNAP)");
  const at = ref.indexOf("@");
  const vm = at >= 0 ? ref.slice(0, at) : vmName;
  const snap = at >= 0 ? ref.slice(at + 1) : ref;
  if (vm === undefined) throw new BangerError("E_BAD_NAME", `a snapshot is named VM@SNAP, not ${JSON.stringify(ref).slice(0, 80)}`);
  if (!VM_NAME_RE.test(vm)) throw new BangerError("E_BAD_NAME", `invalid vm name ${JSON.stringify(vm).slice(0, 80)} in ${JSON.stringify(ref).slice(0, 80)}: must match ${VM_NAME_RULE}`);
  validateSnapshotName(snap);
  return { vm, snap };
}

/** A default snapshot name from the clock: 20261206-041530-123 (UTC). */
export function defaultSnapshotName(now: Date): string {
  return now.toISOString().replace(/[-:]/g, "").replace("T", "-").replace(".", "-").replace("Z", "").toLowerCase();
}

/**
 * Snapshots of VMs and rollbacks to them. Every step runs under the VM's
 * lock and as one Operation; a snapshot's files go to a temp dir renamed
 * into place just before its row says `ready`, so a crash leaves the whole
 * snapshot or (after reconcile and the sweep) none of it.
 */
export class Snapshots {
  constructor(private readonly engine: Engine) {}

  private get d() {
    return this.engine.deps;
  }
  get dir(): string {
    return join(this.d.paths.home, "snapshots");
  }

  /** Ready snapshots; of one VM: the VM's, and those named for it (`VM@…`) whose VM was deleted (their VM is gone, their name is not). */
  list(vm?: string): SnapshotRecord[] {
    const ready = this.d.store.snapshots.list().filter((s) => s.state === "ready");
    if (vm === undefined) return ready;
    let id: string | null = null;
    try {
      id = this.engine.getVM(vm).id;
    } catch (e) {
      if (!ready.some((s) => s.vmName === vm)) throw e;
    }
    return ready.filter((s) => s.vmId === id || s.vmName === vm);
  }

  /** A ready snapshot by `VM@SNAP` (or `SNAP` of `vmName`). */
  get(ref: string, vmName?: string): SnapshotRecord {
    const { vm, snap } = parseSnapshotRef(ref, vmName);
    const s = this.d.store.snapshots.find(vm, snap);
    if (!s || s.state !== "ready") throw new BangerError("E_NOT_FOUND", `snapshot not found: ${vm}@${snap}`);
    return s;
  }

  /** A consistent checkpoint of a VM: memory + device state (when it runs) and its disks, at one instant. */
  async create(vmRef: string, opts: { name?: string } = {}, progress: ProgressSink = noProgress, template?: SnapshotRecord["template"]): Promise<SnapshotRecord> {
    const first = this.engine.getVM(vmRef);
    const name = validateSnapshotName(opts.name ?? defaultSnapshotName(this.d.host.clock.now()));
    if (this.d.store.snapshots.find(first.name, name)) throw new BangerError("E_NAME_TAKEN", `snapshot already exists: ${first.name}@${name}`);
    return this.engine.cache.withLock(first.id, async () => {
      const vm = this.engine.getVM(first.id);
      try {
        return await runOperation({ name: `vm snapshot ${vm.name}@${name}`, vm, host: this.d.host, log: this.d.log, progress }, (op) => this._create(vm, name, op, template));
      } catch (e) {
        // a state save that failed may have left the guest unable to run (QEMU 7.2): then the VM is stopped, and the error says so
        const stuck = await this.engine.stopIfStuck(vm).catch(() => null);
        if (stuck) {
          throw new BangerError(isBangerError(e) ? e.code : "E_INTERNAL", `${errorMessage(e)}; vm ${vm.name} was stopped, ${stuck} (start it again: \`banger vm start ${vm.name}\`)`, { cause: e, undoFailures: undoFailuresOf(e) });
        }
        // its VMM went away under the snapshot (killed, crashed): that is the news, not the socket it no longer answers on
        if (vm.runtime.state !== "stopped" && !(await this.engine.alive(vm).catch(() => true))) {
          // (its undos, which asked the gone process to resume, failed as they had to: the daemon log has them)
          throw new BangerError("E_STATE", `vm ${vm.name}: its process exited during the snapshot; no snapshot was made (start it again: \`banger vm start ${vm.name}\`)`, { cause: e });
        }
        throw e;
      }
    });
  }

  /** `template`: a warm-start template's mark, in its rows and its snapshot.json from the first: a crash never leaves it an ordinary snapshot. */
  private async _create(vm: VMRecord, name: string, op: Parameters<Parameters<typeof runOperation>[1]>[0], template?: SnapshotRecord["template"]): Promise<SnapshotRecord> {
    const { host, store, hooks } = this.d;
    const driver = this.engine.driverFor(vm);
    const handles = await this.engine.handlesOf(vm);
    const live = !!handles && (await vmAlive(vm, handles, driver, host.procs));
    if (!live && !["created", "stopped", "error"].includes(vm.runtime.state)) {
      throw new BangerError("E_STATE", `vm ${vm.name} is ${vm.runtime.state}: snapshot it when it runs or is stopped`);
    }
    if (live && (!driver.saveState || !driver.pause || !driver.resume)) {
      throw new BangerError("E_STATE", `vm ${vm.name}: the ${driver.name} driver cannot snapshot a running VM (stop it for a disks-only snapshot)`);
    }
    const wasRunning = live && vm.runtime.state === "running";
    const id = this.d.newId();
    const snap: SnapshotRecord = {
      id,
      name,
      vmId: vm.id,
      vmName: vm.name,
      state: "creating",
      dir: join(this.dir, id),
      memory: live,
      spec: structuredClone(vm.spec),
      disks: [],
      sizeBytes: 0,
      freezeMs: 0,
      thawVm: wasRunning,
      createdAt: host.clock.now().toISOString(),
      ...(template ? { template } : {}),
    };
    store.snapshots.upsert(snap);
    op.defer("snapshot row", () => store.snapshots.delete(id));
    await faultPoint("snapshot:after-row");
    await host.fs.mkdirp(this.dir, 0o700);
    const tmp = tempPathFor(snap.dir, "build");
    await host.fs.mkdirp(tmp, 0o700);
    op.defer("snapshot files", () => host.fs.rmrf(tmp));
    // what can be made before the freeze is (the storage's new overlays, the VMM's state save), so the freeze is only the switch to them
    const streamDisk = live && driver.streamDisk ? (index: number, base: { path: string; name: string }) => driver.streamDisk!(vm, handles!, index, base, op.signal) : undefined;
    await hooks.run("vm:snapshot:before", { vm, dir: tmp, snapshotId: id, live, progress: op.progress, op, streamDisk });
    const prepared = live && driver.prepareSave ? await driver.prepareSave(vm, handles!, join(tmp, STATE_FILE)) : undefined;
    if (prepared) op.defer("the prepared state save", () => prepared.abandon());

    // the freeze: from the pause to the resume, as short as the state save and the disks allow. A VMM that
    // switches disks (QEMU) is paused first and its disks taken before the state save, which may then let the
    // guest run on while the rest streams (saveState's runOn); any other driver that saves live stops the VM
    // itself, for the end of its save only.
    const disksFirst = live && !!driver.switchDisk;
    let frozeAt = 0;
    let thawed = !wasRunning;
    if (wasRunning) {
      op.defer("resume the vm", async () => {
        if (!thawed) await driver.resume!(vm, handles!);
      });
      if (!driver.liveSave || disksFirst) {
        await driver.pause!(vm, handles!);
        frozeAt = host.clock.now().getTime();
      }
    }
    const takeDisks = async () => {
      op.progress(`taking ${vm.name}'s disks`);
      const switchDisk = live && driver.switchDisk ? (index: number, overlay: string) => driver.switchDisk!(vm, handles!, index, overlay) : undefined;
      await hooks.run("vm:snapshot", { vm, dir: tmp, disks: snap.disks, progress: op.progress, op, snapshotId: id, live, switchDisk });
      if (snap.disks.length === 0) throw new BangerError("E_STATE", `vm ${vm.name}: its storage provider "${vm.spec.storage}" cannot snapshot disks`);
      // still frozen, its disks switched to new overlays (QEMU) and linked into the temp dir
      await faultPoint("snapshot:after-disks");
    };
    if (disksFirst) await takeDisks();
    const disksAt = host.clock.now().getTime();
    let finish: (() => Promise<void>) | undefined;
    if (live) {
      op.progress(`saving ${vm.name}'s memory and device state`);
      const saved = prepared ? await prepared.save({ runOn: wasRunning }) : await driver.saveState!(vm, handles!, join(tmp, STATE_FILE), { runOn: wasRunning });
      if (wasRunning && driver.liveSave && !disksFirst) frozeAt = host.clock.now().getTime() - (saved?.frozenMs ?? 0);
      finish = saved?.finish;
      // what the driver still holds for the save (QEMU: its receiver process) goes with a failed snapshot too
      if (finish) op.defer("finish the state save", () => finish!());
    }
    await faultPoint("snapshot:after-state");
    const savedAt = host.clock.now().getTime();
    if (!disksFirst) await takeDisks();
    if (wasRunning) {
      const doneAt = host.clock.now().getTime();
      await driver.resume!(vm, handles!);
      thawed = true;
      const now = host.clock.now().getTime();
      snap.freezeMs = now - frozeAt;
      // where the freeze went, for whoever tunes it (the disks, the state save, the resume)
      const parts = disksFirst ? `disks ${disksAt - frozeAt} ms, state ${savedAt - disksAt} ms` : `state ${savedAt - frozeAt} ms, disks ${doneAt - savedAt} ms`;
      this.d.log.info(`vm snapshot ${vm.name}@${name}: frozen ${snap.freezeMs} ms (${parts}, resume ${now - doneAt} ms)`);
    }
    // the rest of the state save, the VM running again
    if (finish) {
      op.progress(`saving ${vm.name}'s device state`);
      await finish();
    }
    if (live) snap.sessions = store.sessions.list({ vmId: vm.id, status: ["running"] });
    // the state file, the disks and whatever else the driver saved beside them (QEMU: the guest's RAM file)
    for (const { name: f } of (await host.fs.list(tmp)).filter((e) => e.type === "file")) snap.sizeBytes += (await host.fs.stat(join(tmp, f)))?.size ?? 0;
    snap.state = "ready";
    delete snap.thawVm;
    await host.fs.writeAtomic(join(tmp, META_FILE), JSON.stringify(snap, null, 2) + "\n", 0o600);
    await faultPoint("snapshot:before-commit");
    await host.fs.rename(tmp, snap.dir);
    op.defer("snapshot dir", () => host.fs.rmrf(snap.dir));
    store.snapshots.upsert(snap);
    await faultPoint("snapshot:after-commit");
    return snap;
  }

  /**
   * Put a VM back to one of its snapshots: it is stopped (killed: its state
   * is being thrown away), the storage providers put the snapshot's disks
   * back, and it starts from the saved memory (or, for a disks-only
   * snapshot, boots if it was running).
   */
  async rollback(vmRef: string, snapRef: string, progress: ProgressSink = noProgress, signal: AbortSignal = new AbortController().signal): Promise<VMRecord> {
    const first = this.engine.getVM(vmRef);
    const snap = this.get(snapRef, first.name);
    if (snap.vmId !== first.id) {
      throw new BangerError("E_BAD_REQUEST", `snapshot ${snap.vmName}@${snap.name} was made from another vm; make a new vm from it instead`);
    }
    // read until the VM runs from it again: a snapshot rm meanwhile would leave the VM stopped with nothing to restore
    const release = this.engine.readSnapshot(snap.id, `vm rollback ${first.name}`);
    try {
      return await this._rollback(first, snap, progress, signal);
    } finally {
      release();
    }
  }

  private _rollback(first: VMRecord, snap: SnapshotRecord, progress: ProgressSink, signal: AbortSignal): Promise<VMRecord> {
    return this.engine.cache.withLock(first.id, async () => {
      const vm = this.engine.getVM(first.id);
      const driver = this.engine.driverFor(vm);
      const wasUp = await this.engine.alive(vm);
      await runOperation({ name: `vm rollback ${vm.name}@${snap.name}`, vm, host: this.d.host, log: this.d.log, progress }, async (op) => {
        if (wasUp || vm.runtime.state !== "stopped") {
          op.progress(`stopping ${vm.name}`);
          await this.engine.stopHeld(vm.id, { force: true, why: `it was rolled back to ${snap.vmName}@${snap.name}` });
        }
        await faultPoint("rollback:after-stop");
        op.progress(`restoring ${vm.name}'s disks from ${snap.vmName}@${snap.name}`);
        await this.d.hooks.run("vm:restore", { vm: this.engine.getVM(vm.id), snapshot: snap, progress: op.progress, op });
        await faultPoint("rollback:after-disks");
      });
      if (snap.memory) {
        if (!driver.saveState) throw new BangerError("E_STATE", `vm ${vm.name}: the ${driver.name} driver cannot restore saved state`);
        const back = await this.engine.startHeld(vm.id, progress, signal, { restoreFrom: join(snap.dir, STATE_FILE), snapshot: snap });
        this._sessionsBack(back, snap);
        return back;
      }
      return wasUp ? this.engine.startHeld(vm.id, progress, signal) : this.engine.getVM(vm.id);
    });
  }

  /**
   * After a rollback from memory, the sessions that ran at the snapshot run again (their processes are in the
   * restored memory): their records go back to what the snapshot kept, which the stop had ended. A session
   * since started under one of their names, ended by that stop, gives its name back.
   */
  private _sessionsBack(vm: VMRecord, snap: SnapshotRecord): void {
    const repo = this.d.store.sessions;
    const t = this.d.host.clock.now().toISOString();
    for (const s of snap.sessions ?? []) {
      if (s.vmId !== vm.id) continue;
      const other = repo.find(vm.id, s.name);
      if (other && other.id !== s.id) repo.delete(other.id);
      repo.upsert({ ...s, updatedAt: t });
    }
  }

  /**
   * A new VM from a snapshot: created as any VM is (its own dir, keys, SSH
   * port), its disks then replaced by copies of the snapshot's, and the
   * snapshot's running sessions recorded as its own (same names: they run
   * on in its memory). With `start`, it runs on from the saved memory and
   * the guest plugin gives it its own identity (or, disks only, it boots).
   */
  async createFrom(ref: string, name: string, opts: { start?: boolean; own?: CloneOwnParams } = {}, progress: ProgressSink = noProgress, signal: AbortSignal = new AbortController().signal): Promise<VMRecord> {
    const snap = this.get(ref);
    const { spec } = snap;
    const { store, hooks, host, log } = this.d;
    const cancelled = () => new BangerError("E_CANCELLED", `vm create ${name} --from ${snap.vmName}@${snap.name}: its request was cancelled`);
    // a fork's later clones, once its requester went away: none made only to be deleted
    if (signal.aborted) throw cancelled();
    // a clone keeps its source's egress policy (a fork of an allowlisted agent must not get the default one) unless
    // it asks for its own; a warm template is a fresh boot of the image, whose clones get the default as a cold VM does
    const egress = opts.own?.egress ?? (snap.template ? undefined : spec.egress);
    // read until the clone runs from it: a snapshot rm meanwhile would take the disks or state it is copying
    const release = this.engine.readSnapshot(snap.id, `vm create ${name} --from ${snap.vmName}@${snap.name}`);
    let vm: VMRecord;
    try {
      vm = await this.engine.create({ ...opts.own, egress, name, image: spec.image, cpus: spec.cpus, memoryMiB: spec.memoryMiB, diskMiB: spec.diskMiB, workDiskMiB: spec.workDiskMiB, driver: spec.driver, net: spec.net, storage: spec.storage }, progress, { disksFrom: snap });
    } catch (e) {
      release();
      throw e;
    }
    try {
      await this.engine.cache.withLock(vm.id, () =>
        runOperation({ name: `vm create ${name} --from ${snap.vmName}@${snap.name}`, vm, host, log, progress }, async (op) => {
          op.progress(`taking ${snap.vmName}@${snap.name}'s disks`);
          await hooks.run("vm:restore", { vm, snapshot: snap, progress: op.progress, op });
          await faultPoint("clone:after-disks");
        }),
      );
      for (const s of snap.memory ? (snap.sessions ?? []) : []) {
        const t = host.clock.now().toISOString();
        store.sessions.upsert({ ...s, id: this.d.newId(), vmId: vm.id, createdAt: t, updatedAt: t });
      }
      if (!opts.start) return this.engine.getVM(vm.id);
      if (signal.aborted) throw cancelled();
      return await this.engine.cache.withLock(vm.id, () =>
        this.engine.startHeld(vm.id, progress, signal, snap.memory ? { restoreFrom: join(snap.dir, STATE_FILE), snapshot: snap } : {}),
      );
    } catch (e) {
      // a clone that cannot be made or started is not left half made
      await this.engine.delete(vm.id, { force: true }).catch((d: unknown) => log.warn(`vm create ${name} --from: removing the half-made clone failed: ${errorMessage(d)}`));
      throw e;
    } finally {
      release();
    }
  }

  /**
   * A warm-start template of an image at one shape: a VM booted cold, kept
   * as a snapshot (`VM@template`, VM = warm-IMAGE-Nc-Mm) and the VM deleted.
   * Starts of that image and shape then clone it (startFrom), until the
   * image is rebuilt (its creation time differs) or the template removed.
   * Made by `image warm` or, after a first cold boot, by AutoWarm.
   */
  async warm(image: string, shape: WarmShape, progress: ProgressSink = noProgress, signal: AbortSignal = new AbortController().signal): Promise<SnapshotRecord> {
    const img = this.d.store.getImage(image);
    if (!img) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${image}`);
    const plan = await this.engine.checkCreate({ name: "warm-probe", image, cpus: shape.cpus, memoryMiB: shape.memoryMiB, diskMiB: shape.diskMiB, workDiskMiB: shape.workDiskMiB, driver: await this.engine.resolveDriver(shape.driver), net: shape.net, storage: shape.storage });
    const spec = { image, driver: plan.driverName, net: plan.net, storage: plan.storage, ...plan.sizes };
    // the template this one replaces: the same shape (stale or not); templates of other shapes stay
    for (const old of this.d.store.snapshots.list().filter((s) => s.template && sameShape(s.spec, spec))) await this.remove(`${old.vmName}@${old.name}`);
    const base = `warm-${image}-${plan.sizes.cpus}c-${plan.sizes.memoryMiB}m`.slice(0, 60);
    let name = base;
    // another shape (VMM, network, storage, disks) at the same sizes has its own name
    for (let i = 2; this.d.store.snapshots.find(name, "template") || this.d.store.getVMByName(name); i++) name = `${base}-${i}`;
    // The builder VM is an ordinary VM for a while: marked before it exists, so a daemon killed
    // before the delete below leaves a mark the next daemon's reconcile deletes it by.
    const fs = this.d.host.fs;
    const mark = join(this.buildersDir, name);
    await fs.mkdirp(this.buildersDir, 0o700);
    await fs.writeAtomic(mark, "");
    let vm: VMRecord;
    try {
      vm = await this.engine.create({ name, image, cpus: plan.sizes.cpus, memoryMiB: plan.sizes.memoryMiB, diskMiB: plan.sizes.diskMiB, workDiskMiB: plan.sizes.workDiskMiB, driver: plan.driverName, net: plan.net, storage: plan.storage }, progress);
    } catch (e) {
      await fs.rmrf(mark);
      throw e;
    }
    try {
      await this.engine.start(vm.id, progress, signal);
      return await this.create(vm.id, { name: "template" }, progress, { imageCreatedAt: img.createdAt });
    } finally {
      await this.engine.delete(vm.id, { force: true });
      await fs.rmrf(mark);
    }
  }

  /** Where warm() marks its builder VMs by name (see warm). */
  private get buildersDir(): string {
    return join(this.d.paths.home, "warm-builders");
  }

  /** At daemon start: builder VMs a killed daemon left mid-warm are deleted (no warm runs yet: every mark is stale). */
  private async reconcileBuilders(): Promise<string[]> {
    const out: string[] = [];
    for (const { name } of await this.d.host.fs.list(this.buildersDir)) {
      const vm = this.d.store.getVMByName(name);
      if (vm) {
        await this.engine.delete(vm.id, { force: true });
        out.push(`${name}: deleted the warm-start builder VM a killed daemon left`);
      }
      await this.d.host.fs.rmrf(join(this.buildersDir, name));
    }
    return out;
  }

  /** The template a start of this shape may clone: same image (not rebuilt since), VMM, network, storage and sizes. */
  templateFor(spec: ShapeSpec): SnapshotRecord | null {
    const img = this.d.store.getImage(spec.image);
    if (!img) return null;
    return this.d.store.snapshots.list().find((s) => s.state === "ready" && s.template?.imageCreatedAt === img.createdAt && sameShape(s.spec, spec)) ?? null;
  }

  /**
   * Remove a snapshot and its files (row first marked deleting, so a crash
   * finishes it at the next start). Disks that VMs still run on (clones and
   * rollbacks are overlays over them) stay: the row, the saved state and
   * snapshot.json go, and the storage provider removes the disks with the
   * last VM that needs them.
   */
  async remove(ref: string): Promise<SnapshotRecord & { keptFor?: string[] }> {
    const snap = this.get(ref);
    this._refuseWhileRead(snap);
    const users: string[] = [];
    await this.d.hooks.run("snapshot:remove", { snapshot: snap, users });
    // asked again: a rollback or clone may have begun reading it while the hooks ran
    this._refuseWhileRead(snap);
    if (users.length > 0) {
      // row first: a crash after it leaves unused files (at worst), never a listed snapshot missing its meta
      this.d.store.snapshots.delete(snap.id);
      await this.d.host.fs.rmrf(join(snap.dir, META_FILE));
      // the saved state and the driver's files beside it (a RAM file stays alive for a clone that maps it, being open)
      for (const { name: f } of await this.d.host.fs.list(snap.dir)) if (!snap.disks.includes(f)) await this.d.host.fs.rmrf(join(snap.dir, f));
      this.d.log.info(`snapshot rm ${snap.vmName}@${snap.name}: its disks stay while ${users.join(", ")} run on them`);
      return { ...snap, keptFor: users };
    }
    snap.state = "deleting";
    this.d.store.snapshots.upsert(snap);
    await faultPoint("snapshot-rm:after-mark");
    await this.d.host.fs.rmrf(snap.dir);
    this.d.store.snapshots.delete(snap.id);
    return snap;
  }

  /** An image's warm-start templates, but those made of it at `keepFor` (its createdAt) when given: `image rm`, a rebuild. */
  async removeTemplatesOf(image: string, keepFor?: string): Promise<string[]> {
    const out: string[] = [];
    for (const s of this.list().filter((x) => x.template && x.spec.image === image && x.template.imageCreatedAt !== keepFor)) {
      await this.remove(`${s.vmName}@${s.name}`);
      out.push(`${s.vmName}@${s.name}`);
    }
    return out;
  }

  /** A rollback to it or a clone of it under way: removing it now would leave that VM with half a restore. */
  private _refuseWhileRead(snap: SnapshotRecord): void {
    const readers = this.engine.snapshotReadBy(snap.id);
    if (readers.length) throw new BangerError("E_CONFLICT", `snapshot ${snap.vmName}@${snap.name} is in use by ${readers.join(", ")}: remove it once that is done`);
  }

  /** The snapshots made from a VM (delete --with-snapshots). */
  async removeAllOf(vmId: string): Promise<string[]> {
    const out: string[] = [];
    for (const s of this.d.store.snapshots.list(vmId)) out.push(`${(await this.remove(`${s.vmName}@${s.name}`)).name}`);
    return out;
  }

  /** At daemon start: a snapshot a crash cut short (creating) or a removal it interrupted (deleting) goes, files and row. */
  async reconcile(): Promise<string[]> {
    const out: string[] = await this.reconcileBuilders();
    for (const s of this.d.store.snapshots.list()) {
      if (s.state === "ready") continue;
      await this.d.host.fs.rmrf(s.dir);
      this.d.store.snapshots.delete(s.id);
      let note = "";
      // the crash came while the snapshot had the VM paused: it runs on, as the snapshot would have let it
      if (s.state === "creating" && s.thawVm && this.d.store.getVM(s.vmId)?.runtime.state === "paused") {
        note = await this.engine.resume(s.vmId).then(() => "; vm resumed", (e: unknown) => `; resuming the vm failed: ${errorMessage(e)}`);
      }
      out.push(`${s.vmName}@${s.name}: ${s.state === "creating" ? "removed half-made" : "finished removing"}${note}`);
    }
    return out;
  }
}
