import { join } from "node:path";
import { BangerError, configFrom, definePlugin, environ, makeWorkDisk } from "../../src/plugin-api.ts";
import type { BangerPlugin, Env, Host, VMRecord, VMSpec } from "../../src/plugin-api.ts";
import { GlobalLock } from "./lock.ts";
import { attachSnapshot, cowBytesFor, detachSnapshot } from "./snapshot.ts";

/** handles.extra.storage: which storage provider acted for this VM ("dm" here, "copy" for plugins/storage). */
export const STORAGE_KEY = "storage";
/** The storage provider's name: `--storage dm`, `spec.storage`. */
export const DM_STORAGE = "dm";
/** Above plugins/storage's copies (priority 0): a VM naming no storage gets a dm-snapshot wherever one can serve it. */
export const DM_PRIORITY = 10;

export interface DmProbe {
  usable: boolean;
  reason: string;
}

/**
 * Device-mapper is usable when its control node and /dev/loop-control
 * exist, the tools are on PATH and `dmsetup version` reaches the kernel
 * driver (it fails without dm_mod or without the rights to open
 * /dev/mapper/control). dmsetup is only run once the node exists: asked
 * without one, it would create it.
 */
export async function probeDeviceMapper(host: Pick<Host, "fs" | "exec">, env: Env = environ()): Promise<DmProbe> {
  if ((configFrom(env).storage ?? "").trim() === "copy") return { usable: false, reason: "BANGER_STORAGE=copy" };
  if (!(await host.fs.exists("/dev/mapper/control"))) return { usable: false, reason: "/dev/mapper/control does not exist (device-mapper not available)" };
  if (!(await host.fs.exists("/dev/loop-control"))) return { usable: false, reason: "/dev/loop-control does not exist (no loop devices)" };
  for (const tool of ["dmsetup", "losetup", "blockdev"]) {
    if (!(await host.exec.which(tool))) return { usable: false, reason: `${tool} not found` };
  }
  const r = await host.exec.run("dmsetup", ["version"], { check: false });
  if (r.exitCode !== 0) return { usable: false, reason: `dmsetup version failed: ${(r.stderr || r.stdout).trim().split("\n")[0]}` };
  return { usable: true, reason: "device-mapper usable" };
}

/** The VM's COW file (its system overlay). */
export function cowPathFor(vm: VMRecord): string {
  return join(vm.runtime.vmDir, "system.cow");
}
/** Identity of the base image the COW was made against: a COW over a different base is garbage. */
function _basePathFor(vm: VMRecord): string {
  return join(vm.runtime.vmDir, "system.cow.base");
}

export interface StorageDmOptions {
  /** Default: probeDeviceMapper on the plugin's host, once. */
  probe?: () => Promise<DmProbe>;
  lockTimeoutMs?: number;
}

export function createStorageDmPlugin(opts: StorageDmOptions = {}): BangerPlugin {
  return definePlugin({
    name: "storage-dm",
    description: "Per-VM system disk as a dm-snapshot (read-only base loop + sparse COW loop) where device-mapper exists",
    setup(ctx) {
      const { exec, fs } = ctx.host;
      let probed: Promise<DmProbe> | null = null;
      const probe = () => (probed ??= (opts.probe ?? (() => probeDeviceMapper(ctx.host)))());
      let lock: GlobalLock | null = null;
      const globalLock = () => {
        if (!ctx.host.locks) throw new BangerError("E_INTERNAL", "storage-dm: this host has no file locks");
        return (lock ??= new GlobalLock({ locks: ctx.host.locks, clock: ctx.host.clock, path: join(ctx.paths.home, "dm.lock"), timeoutMs: opts.lockTimeoutMs }));
      };
      const baseIdentity = async (rootfs: string) => (await exec.run("stat", ["-L", "-c", "%d:%i:%s:%Y", rootfs])).stdout.trim();
      const originBytesOf = async (spec: VMSpec) => {
        const image = ctx.store.getImage(spec.image);
        if (!image) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${spec.image}`);
        const bytes = Number((await exec.run("stat", ["-L", "-c", "%s", image.rootfsPath])).stdout.trim());
        if (!Number.isInteger(bytes) || bytes <= 0) throw new BangerError("E_INTERNAL", `cannot read the size of ${image.rootfsPath}`);
        return { image, bytes };
      };

      const disks = ctx.registerStorage({
        name: DM_STORAGE,
        description: "dm-snapshot: read-only base loop + sparse COW loop",
        priority: DM_PRIORITY,
        async usable(spec) {
          const dm = await probe();
          if (!dm.usable) return dm;
          // a snapshot is exactly its origin's size; another size is a copy's job
          const { bytes } = await originBytesOf(spec);
          if (spec.diskMiB > 0 && spec.diskMiB * 1048576 !== bytes) {
            return { usable: false, reason: `--disk ${spec.diskMiB}M differs from the image size (${Math.ceil(bytes / 1048576)}M), and a dm-snapshot is exactly its image's size` };
          }
          return { usable: true, reason: dm.reason };
        },
      });

      disks.hook("vm:create", async ({ vm, progress }) => {
        const { image, bytes: originBytes } = await originBytesOf(vm.spec);
        progress("making dm-snapshot COW file");
        const cow = cowPathFor(vm);
        await exec.run("truncate", ["-s", String(cowBytesFor(originBytes)), cow]);
        await fs.writeAtomic(_basePathFor(vm), (await baseIdentity(image.rootfsPath)) + "\n", 0o600);
        vm.runtime.systemOverlay = cow;
        if (vm.spec.workDiskMiB > 0) {
          progress("making work disk");
          const work = join(vm.runtime.vmDir, "work.img");
          await makeWorkDisk(exec, work, vm.spec.workDiskMiB);
          vm.runtime.workDiskPath = work;
        }
        // VMDir removal on failure takes the files with it.
      });

      disks.hook("vm:start:before", async ({ vm, boot, handles, op }) => {
        const image = ctx.store.getImage(vm.spec.image);
        if (!image) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${vm.spec.image}`);
        const made = ((await fs.readText(_basePathFor(vm))) ?? "").trim();
        if (made && made !== (await baseIdentity(image.rootfsPath))) {
          throw new BangerError("E_STATE", `vm ${vm.name}: image ${vm.spec.image} changed since the VM was created; its dm-snapshot only fits the old image (recreate the VM)`);
        }
        handles.extra[STORAGE_KEY] = DM_STORAGE;
        op.progress("attaching dm-snapshot");
        const record = () => ctx.saveHandles(vm, handles);
        // deferred before the attach: an attach failing half way leaves in `handles` exactly what it made, and this takes it down
        op.defer("dm-snapshot", async () => {
          const failures = await globalLock().run(() => detachSnapshot(exec, handles, ctx.log.warn));
          // a stale file would name loop numbers another VM may get next (same base file, so the ownership check could not tell)
          await record();
          if (failures.length) throw new BangerError("E_INTERNAL", failures.map((f) => f.message).join("; "));
        });
        await globalLock().run(() => attachSnapshot(exec, { vmId: vm.id, baseFile: image.rootfsPath, cowFile: cowPathFor(vm) }, handles, record));
        boot.disks.push({ path: handles.dmDev, format: "raw" });
        if (vm.runtime.workDiskPath) boot.disks.push({ path: vm.runtime.workDiskPath, format: "raw" });
      });

      // Stop and reconcile of a dead VM (handles from handles.json) end here; a failed start detaches through its op.
      disks.hook("vm:cleanup", async ({ handles }) => {
        if (!handles.dmName && !handles.cowLoop && !handles.baseLoop) return;
        const failures = await globalLock().run(() => detachSnapshot(exec, handles, ctx.log.warn));
        if (failures.length) throw new BangerError("E_INTERNAL", failures.map((f) => f.message).join("; "), { cause: new AggregateError(failures) });
      });
    },
  });
}

export default createStorageDmPlugin();
