import { dirname, join } from "node:path";
import type { Exec } from "../../src/plugin-api.ts";

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

/** The file an overlay is backed by (its snapshot's disk copy). */
export async function backingOf(exec: Exec, overlay: string): Promise<string | null> {
  const r = await exec.run("qemu-img", ["info", "-U", "--output=json", overlay], { check: false });
  if (r.exitCode !== 0) return null;
  const info = JSON.parse(r.stdout) as { "full-backing-filename"?: string; "backing-filename"?: string };
  const b = info["full-backing-filename"] ?? info["backing-filename"];
  return b ? (b.startsWith("/") ? b : join(dirname(overlay), b)) : null;
}
