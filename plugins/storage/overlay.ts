import { dirname, join } from "node:path";
import type { Exec, FS } from "../../src/plugin-api.ts";

/**
 * qcow2 overlays as an older banger laid them out (`system.qcow2` beside the
 * raw disk it replaced, backed by a snapshot dir's copy by absolute name),
 * which VMs made then still run on, and the flat copies snapshots of other
 * VMMs and `vm commit` make. New chains are chain.ts's.
 *
 * An overlay lives beside the raw disk it replaces under its own name
 * (system.img → system.qcow2): the format comes from the host's file name,
 * never from probing the file, which a guest could fill with a qcow2 header
 * naming any host file as its backing.
 */

/** The drivers that open qcow2 disks (Firecracker takes raw images only, so its VMs keep full copies). */
export const QCOW2_DRIVERS: ReadonlySet<string> = new Set(["qemu"]);

export function overlayPathFor(rawPath: string): string {
  return rawPath.replace(/\.img$/, "") + ".qcow2";
}

/** The disk a VM runs on: its overlay where it has one, else the raw file. */
export async function activeDisk(exists: (p: string) => Promise<boolean>, rawPath: string): Promise<{ path: string; format: "raw" | "qcow2" }> {
  const q = overlayPathFor(rawPath);
  return (await exists(q)) ? { path: q, format: "qcow2" } : { path: rawPath, format: "raw" };
}

export async function createOverlay(exec: Exec, backing: string, out: string): Promise<void> {
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, out]);
}

/** A standalone raw copy of a disk (overlay flattened): `-U` because a paused VM's QEMU holds the image's lock. */
export async function copyDisk(exec: Exec, disk: { path: string; format: "raw" | "qcow2" }, out: string): Promise<void> {
  if (disk.format === "raw") await exec.run("cp", ["--sparse=always", "--reflink=auto", disk.path, out]);
  else await exec.run("qemu-img", ["convert", "-U", "-f", "qcow2", "-O", "raw", disk.path, out]);
}

/** qcow2's header: magic "QFI\xfb", version, then the backing name's offset (u64) and length (u32), big-endian. */
const _QCOW2_MAGIC = 0x514649fb;
/** QEMU refuses longer backing names (block/qcow2.c). */
const _MAX_BACKING_NAME = 1023;

/**
 * The file an overlay is backed by (its snapshot's disk copy, or a layer beside it), from the
 * overlay's header read here: a process per VM (`qemu-img info`) cost a delete, a rollback and a
 * `snapshot rm` (which asks of every VM) ~4 ms of daemon CPU and ~10 ms of the child's each.
 * Only called for files named as qcow2 (see activeDisk); anything else, or a header that
 * does not hold together, has no backing.
 */
export async function backingOf(fs: Pick<FS, "readRange">, overlay: string): Promise<string | null> {
  let head: Uint8Array;
  try {
    head = await fs.readRange(overlay, 0, 20);
  } catch {
    return null;
  }
  if (head.length < 20) return null;
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (v.getUint32(0) !== _QCOW2_MAGIC) return null;
  const offset = Number(v.getBigUint64(8));
  const size = v.getUint32(16);
  if (offset === 0 || size === 0 || size > _MAX_BACKING_NAME || !Number.isSafeInteger(offset)) return null;
  const raw = await fs.readRange(overlay, offset, size);
  if (raw.length !== size) return null;
  const b = new TextDecoder().decode(raw);
  return b.startsWith("/") ? b : join(dirname(overlay), b);
}
