import { dirname, join } from "node:path";
import { BangerError, definePlugin, makeWorkDisk, tempPathFor, vmPaths } from "../../src/plugin-api.ts";
import type { Exec, VMRecord } from "../../src/plugin-api.ts";
import { backingOf, copyDisk, QCOW2_DRIVERS } from "./overlay.ts";
import { commitStaged, diskFileOf, freezeDisk, prepareFreeze, stageFromSnapshot, topOf, type FreezePlan, type ShortenChain } from "./chain.ts";

/**
 * Per-VM disks without device-mapper: the system disk is a sparse (or
 * reflink, where the filesystem can) copy of the image's rootfs, so a VM
 * never depends on the image file after creation (an image rebuild cannot
 * corrupt it, unlike a qcow2 overlay on a changed backing file). Optional
 * work disk: a sparse ext4 file made by userspace tools (no mount).
 */
export async function makeSystemDisk(exec: Exec, rootfs: string, out: string, sizeMiB: number): Promise<void> {
  await exec.run("cp", ["--sparse=always", "--reflink=auto", rootfs, out]);
  if (sizeMiB > 0) {
    const cur = Number((await exec.run("stat", ["-c", "%s", out])).stdout.trim());
    if (sizeMiB * 1048576 < cur) throw new BangerError("E_BAD_REQUEST", `--disk ${sizeMiB}M is smaller than the image (${Math.ceil(cur / 1048576)}M)`);
    if (sizeMiB * 1048576 > cur) {
      await exec.run("truncate", ["-s", `${sizeMiB}M`, out]);
      // resize2fs insists on a fresh fsck; both work on the file, nothing is mounted
      const fsck = await exec.run("e2fsck", ["-fy", out], { check: false });
      // 1 and 2 mean "errors corrected"; 4 and up mean it could not check or fix the copy
      if (fsck.exitCode >= 4) throw new BangerError("E_INTERNAL", `e2fsck failed (exit ${fsck.exitCode}) on ${out}: ${(fsck.stderr.trim() || fsck.stdout.trim()).split("\n").at(-1) ?? ""}`);
      await exec.run("resize2fs", [out]);
    }
  }
}

/** The storage provider's name: `--storage copy`, `spec.storage`. */
export const COPY_STORAGE = "copy";

export default definePlugin({
  name: "storage",
  description: "Per-VM system disk (sparse/reflink copy of the image rootfs) and optional ext4 work disk",
  setup(ctx) {
    // works anywhere: the default where no provider ranks higher (storage-dm) or that one cannot serve the VM
    const disks = ctx.registerStorage({ name: COPY_STORAGE, description: "sparse/reflink copy of the image rootfs" });
    // a snapshot holds its own files: hard links to a QEMU VM's frozen layers (chain.ts), copies for other VMMs
    /** `system` of system.img: the disk's name in layer chains (chain.ts). */
    const diskOf = (name: string) => name.replace(/\.img$/, "");
    const ownDisks = (vm: { runtime: { systemOverlay: string; workDiskPath: string } }) =>
      [["system.img", vm.runtime.systemOverlay], ["work.img", vm.runtime.workDiskPath]].filter(([, path]) => !!path) as [string, string][];
    // A clone's disks made from its snapshot by vm:create, for the vm:restore of that snapshot that follows
    // (Snapshots.createFrom): VM id -> snapshot id while nothing can have written them. That restore then
    // has nothing to do: it would make the same overlay again (qemu-img create, and qemu-img info for
    // basesOf), ~30 ms of host CPU per clone. A start or a snapshot of the VM ends the mark, and so does a
    // daemon restart (the restore then remakes the disks, as before).
    const fresh = new Map<string, string>();
    disks.hook("vm:create", async ({ vm, progress, disksFrom, op }) => {
      if (disksFrom && QCOW2_DRIVERS.has(vm.spec.driver)) {
        // a clone on QEMU: links to the snapshot's chain and an overlay over it, no copy of the image
        const p = vmPaths(vm.runtime.vmDir);
        vm.runtime.systemOverlay = p.systemDisk;
        if (vm.spec.workDiskMiB > 0) vm.runtime.workDiskPath = p.workDisk;
        for (const [name] of ownDisks(vm)) {
          const disk = diskOf(name);
          if (!disksFrom.disks.some((n) => diskFileOf(n)?.disk === disk)) throw new BangerError("E_STATE", `snapshot ${disksFrom.vmName}@${disksFrom.name} has no ${name}`);
          await commitStaged(ctx.host.fs, vm.runtime.vmDir, disk, await stageFromSnapshot(ctx.host.fs, ctx.host.exec, disksFrom, disk, vm.runtime.vmDir));
        }
        fresh.set(vm.id, disksFrom.id);
        op.defer("fresh clone disks mark", () => void fresh.delete(vm.id));
        return;
      }
      const image = ctx.store.getImage(vm.spec.image);
      if (!image) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${vm.spec.image}`);
      const system = vmPaths(vm.runtime.vmDir).systemDisk;
      progress("copying system disk");
      await makeSystemDisk(ctx.host.exec, image.rootfsPath, system, vm.spec.diskMiB);
      vm.runtime.systemOverlay = system;
      if (vm.spec.workDiskMiB > 0) {
        progress("making work disk");
        const work = join(vm.runtime.vmDir, "work.img");
        await makeWorkDisk(ctx.host.exec, work, vm.spec.workDiskMiB);
        vm.runtime.workDiskPath = work;
      }
      // VMDir removal on failure takes the files with it; nothing else to undo.
    });
    const exists = (p: string) => ctx.host.fs.exists(p);
    disks.hook("vm:commit", async ({ vm, out, progress }) => {
      if (!vm.runtime.systemOverlay) throw new BangerError("E_STATE", `vm ${vm.name} has no system disk`);
      progress("copying the system disk");
      // the system disk is a whole ext4 image already (or an overlay over one): a flat sparse copy is the commit
      await copyDisk(ctx.host.exec, await topOf(ctx.host.fs, vm.runtime.systemOverlay), out);
    });
    /** The snapshot dirs a VM's overlays are backed by. */
    const basesOf = async (vm: VMRecord): Promise<string[]> => {
      const out: string[] = [];
      for (const [, path] of ownDisks(vm)) {
        const d = await topOf(ctx.host.fs, path);
        const b = d.format === "qcow2" ? await backingOf(ctx.host.fs, d.path) : null;
        if (b) out.push(dirname(b));
      }
      return out;
    };
    const usersOf = async (snapshotDir: string, except?: string): Promise<string[]> => {
      const out: string[] = [];
      for (const vm of ctx.store.listVMs()) {
        if (vm.id !== except && vm.spec.storage === COPY_STORAGE && (await basesOf(vm)).includes(snapshotDir)) out.push(vm.name);
      }
      return out;
    };
    // a removed snapshot whose disks a VM still needed (no snapshot.json left, see Snapshots.remove) goes with its last user
    const sweep = async (dirs: string[], except: string) => {
      const snapshotsDir = join(ctx.paths.home, "snapshots") + "/";
      for (const dir of new Set(dirs)) {
        if (!dir.startsWith(snapshotsDir) || (await exists(join(dir, "snapshot.json")))) continue;
        if ((await usersOf(dir, except)).length === 0) await ctx.host.fs.rmrf(dir);
      }
    };
    // a snapshot's plans, made before its freeze (vm:snapshot:before), used in it (vm:snapshot)
    const plans = new Map<string, (FreezePlan | null)[]>();
    disks.hook("vm:snapshot:before", async ({ vm, snapshotId, live, op, streamDisk }) => {
      fresh.delete(vm.id);
      // Firecracker takes raw drives only: its VMs keep whole copies
      if (!QCOW2_DRIVERS.has(vm.spec.driver)) return;
      const made: (FreezePlan | null)[] = [];
      plans.set(snapshotId, made);
      // a snapshot that fails before its switch puts the names back; once switched, the VM runs on its overlay
      op.defer("new overlays", async () => {
        plans.delete(snapshotId);
        for (const p of made) if (p && !p.switched) await p.undo();
      });
      for (const [i, [name, path]] of ownDisks(vm).entries()) {
        const shorten: ShortenChain = {
          live,
          stream: streamDisk && ((base) => streamDisk(i, base)),
          progress: (layers) => op.progress(`shortening ${vm.name}'s ${diskOf(name)} disk: ${layers} layers into one`),
          warn: (m) => op.log.warn(`vm ${vm.name}: ${m}`),
          signal: op.signal,
        };
        made.push(await prepareFreeze(ctx.host.fs, ctx.host.exec, await topOf(ctx.host.fs, path), i, snapshotId, shorten));
      }
    });
    disks.hook("vm:snapshot", async ({ vm, dir, disks: names, snapshotId, live, switchDisk }) => {
      const planned = plans.get(snapshotId) ?? [];
      plans.delete(snapshotId);
      for (const [i, [name, path]] of ownDisks(vm).entries()) {
        const plan = planned[i];
        // a live VM whose VMM cannot switch disks, or a chain from an older banger: the disk is copied, flattened
        if (!plan || (live && !switchDisk)) {
          if (plan) await plan.undo();
          await copyDisk(ctx.host.exec, await topOf(ctx.host.fs, path), join(dir, name));
          names.push(name);
          continue;
        }
        names.push(await freezeDisk(ctx.host.fs, ctx.host.exec, plan, dir, switchDisk));
      }
    });
    disks.hook("vm:restore", async ({ vm, snapshot, op }) => {
      const overlay = QCOW2_DRIVERS.has(vm.spec.driver);
      for (const [name] of ownDisks(vm)) {
        const has = overlay ? snapshot.disks.some((n) => diskFileOf(n)?.disk === diskOf(name)) : snapshot.disks.includes(name);
        if (!has) throw new BangerError("E_STATE", `snapshot ${snapshot.vmName}@${snapshot.name} has no ${name}`);
      }
      if (overlay && fresh.get(vm.id) === snapshot.id) {
        // its disks are this snapshot's already, made by vm:create and never written since
        fresh.delete(vm.id);
        return;
      }
      fresh.delete(vm.id);
      if (overlay) {
        // a VM made by an older banger may run on an overlay over a snapshot dir: that dir goes with its last user
        const before = await basesOf(vm);
        // every new overlay is staged (over links to the snapshot's chain) before any is put in place:
        // a failure leaves the VM's disks as they were (and at worst an unused link)
        const staged: { disk: string; next: string; chain: Set<string> }[] = [];
        let committed = false;
        for (const [name] of ownDisks(vm)) {
          const disk = diskOf(name);
          const s = await stageFromSnapshot(ctx.host.fs, ctx.host.exec, snapshot, disk, vm.runtime.vmDir);
          op.defer(`staged ${name}`, async () => {
            if (!committed) await ctx.host.fs.rmrf(join(vm.runtime.vmDir, s.next));
          });
          staged.push({ disk, ...s });
        }
        for (const s of staged) await commitStaged(ctx.host.fs, vm.runtime.vmDir, s.disk, s);
        committed = true;
        await sweep(before, vm.id);
        return;
      }
      // every new disk is made before any is replaced, and each replace is a rename: a failure leaves the VM's disks as they were
      const staged: [string, string][] = [];
      for (const [name, path] of ownDisks(vm)) {
        const tmp = tempPathFor(path);
        op.defer(`staged ${name}`, () => ctx.host.fs.rmrf(tmp));
        await ctx.host.exec.run("cp", ["--sparse=always", "--reflink=auto", join(snapshot.dir, name), tmp]);
        staged.push([tmp, path]);
      }
      for (const [tmp, target] of staged) await ctx.host.fs.rename(tmp, target);
    });
    disks.hook("vm:delete", async ({ vm }) => {
      fresh.delete(vm.id);
      await sweep(await basesOf(vm), vm.id);
    });
    ctx.hook("snapshot:remove", async ({ snapshot, users }) => {
      users.push(...(await usersOf(snapshot.dir)));
    });
    disks.hook("vm:start:before", async ({ vm, boot, handles }) => {
      // the VM may write its disks from now on
      fresh.delete(vm.id);
      if (!vm.runtime.systemOverlay) throw new BangerError("E_STATE", `vm ${vm.name} has no system disk`);
      handles.extra.storage = COPY_STORAGE;
      boot.disks.push(await topOf(ctx.host.fs, vm.runtime.systemOverlay));
      if (vm.runtime.workDiskPath) boot.disks.push(await topOf(ctx.host.fs, vm.runtime.workDiskPath));
    });
  },
});
