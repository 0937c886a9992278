import { dirname, join } from "node:path";
import { BangerError, definePlugin, makeWorkDisk, tempPathFor, vmPaths } from "../../src/plugin-api.ts";
import type { Exec, VMRecord } from "../../src/plugin-api.ts";
import { activeDisk, backingOf, copyDisk, createOverlay, overlayPathFor, QCOW2_DRIVERS } from "./overlay.ts";

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
    // a snapshot holds its own copies (the VM writes on into its disks); the names are the files in the snapshot's dir
    const ownDisks = (vm: { runtime: { systemOverlay: string; workDiskPath: string } }) =>
      [["system.img", vm.runtime.systemOverlay], ["work.img", vm.runtime.workDiskPath]].filter(([, path]) => !!path) as [string, string][];
    disks.hook("vm:create", async ({ vm, progress, disksFrom }) => {
      if (disksFrom && QCOW2_DRIVERS.has(vm.spec.driver)) {
        // a clone on QEMU: overlays over the snapshot's disks now (vm:restore makes them again, as cheaply), no copy of the image
        const p = vmPaths(vm.runtime.vmDir);
        vm.runtime.systemOverlay = p.systemDisk;
        if (vm.spec.workDiskMiB > 0) vm.runtime.workDiskPath = p.workDisk;
        for (const [name, path] of ownDisks(vm)) {
          if (!disksFrom.disks.includes(name)) throw new BangerError("E_STATE", `snapshot ${disksFrom.vmName}@${disksFrom.name} has no ${name}`);
          await createOverlay(ctx.host.exec, join(disksFrom.dir, name), overlayPathFor(path));
        }
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
      await copyDisk(ctx.host.exec, await activeDisk(exists, vm.runtime.systemOverlay), out);
    });
    /** The snapshot dirs a VM's overlays are backed by. */
    const basesOf = async (vm: VMRecord): Promise<string[]> => {
      const out: string[] = [];
      for (const [, path] of ownDisks(vm)) {
        const d = await activeDisk(exists, path);
        const b = d.format === "qcow2" ? await backingOf(ctx.host.exec, d.path) : null;
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
    disks.hook("vm:snapshot", async ({ vm, dir, disks: names }) => {
      for (const [name, path] of ownDisks(vm)) {
        await copyDisk(ctx.host.exec, await activeDisk(exists, path), join(dir, name));
        names.push(name);
      }
    });
    disks.hook("vm:restore", async ({ vm, snapshot, op }) => {
      for (const [name] of ownDisks(vm)) {
        if (!snapshot.disks.includes(name)) throw new BangerError("E_STATE", `snapshot ${snapshot.vmName}@${snapshot.name} has no ${name}`);
      }
      const overlay = QCOW2_DRIVERS.has(vm.spec.driver);
      const before = overlay ? await basesOf(vm) : [];
      // every new disk is made before any is replaced, and each replace is a rename: a failure leaves the VM's disks as they were
      const staged: [string, string][] = [];
      for (const [name, path] of ownDisks(vm)) {
        const target = overlay ? overlayPathFor(path) : path;
        const tmp = tempPathFor(target);
        op.defer(`staged ${name}`, () => ctx.host.fs.rmrf(tmp));
        if (overlay) await createOverlay(ctx.host.exec, join(snapshot.dir, name), tmp);
        else await ctx.host.exec.run("cp", ["--sparse=always", "--reflink=auto", join(snapshot.dir, name), tmp]);
        staged.push([tmp, target]);
      }
      for (const [tmp, target] of staged) await ctx.host.fs.rename(tmp, target);
      if (!overlay) return;
      // the overlay now wins over the raw file (activeDisk); the raw copy is only space
      for (const [, path] of ownDisks(vm)) await ctx.host.fs.rmrf(path);
      await sweep(before, vm.id);
    });
    disks.hook("vm:delete", async ({ vm }) => {
      await sweep(await basesOf(vm), vm.id);
    });
    ctx.hook("snapshot:remove", async ({ snapshot, users }) => {
      users.push(...(await usersOf(snapshot.dir)));
    });
    disks.hook("vm:start:before", async ({ vm, boot, handles }) => {
      if (!vm.runtime.systemOverlay) throw new BangerError("E_STATE", `vm ${vm.name} has no system disk`);
      handles.extra.storage = COPY_STORAGE;
      boot.disks.push(await activeDisk(exists, vm.runtime.systemOverlay));
      if (vm.runtime.workDiskPath) boot.disks.push(await activeDisk(exists, vm.runtime.workDiskPath));
    });
  },
});
