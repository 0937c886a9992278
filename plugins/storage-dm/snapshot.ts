import { BangerError } from "../../src/plugin-api.ts";
import type { Exec, VMHandles } from "../../src/plugin-api.ts";

/** handles.extra keys: the files behind the loops, checked before a detach so a reused loop number is never ours by mistake. */
export const BASE_FILE_KEY = "dm.baseFile";
export const COW_FILE_KEY = "dm.cowFile";

/** The dm-snapshot target's chunk size in 512-byte sectors (4 KiB). */
export const CHUNK_SECTORS = 8;

export function dmNameFor(vmId: string): string {
  return `banger-${vmId}`;
}

/**
 * Size of a COW file that can never overflow: every origin chunk once, plus
 * the persistent store's metadata (one 16-byte entry per 4 KiB chunk, so
 * 1/256 of the data) and its header. Sparse, so only written chunks cost disk.
 */
export function cowBytesFor(originBytes: number): number {
  const chunk = CHUNK_SECTORS * 512;
  const raw = originBytes + Math.ceil(originBytes / 256) + 1024 * 1024;
  return Math.ceil(raw / chunk) * chunk;
}

export interface SnapshotFiles {
  vmId: string;
  /** The image's rootfs: attached read-only, never written. */
  baseFile: string;
  /** The VM's sparse COW file in its VMDir. */
  cowFile: string;
}

async function _attachLoop(exec: Exec, file: string, readOnly: boolean): Promise<string> {
  const args = ["--find", "--show", ...(readOnly ? ["--read-only"] : []), file];
  const dev = (await exec.run("losetup", args)).stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(dev)) throw new BangerError("E_INTERNAL", `losetup ${args.join(" ")} printed ${JSON.stringify(dev)}, not a loop device`);
  return dev;
}

/**
 * Base loop (read-only) → COW loop → `dmsetup create` snapshot target.
 * Call with the global lock held. Each name goes into `handles` and
 * `record()` runs right after it is acquired, so a crash at any point leaves
 * a handles.json naming what exists. On failure `handles` names exactly
 * what was made: the caller takes it down with detachSnapshot (the plugin
 * defers that on its operation before calling).
 */
export async function attachSnapshot(exec: Exec, f: SnapshotFiles, handles: VMHandles, record: () => Promise<void>): Promise<void> {
  const base = await _attachLoop(exec, f.baseFile, true);
  handles.baseLoop = base;
  handles.extra[BASE_FILE_KEY] = f.baseFile;
  await record();

  const cow = await _attachLoop(exec, f.cowFile, false);
  handles.cowLoop = cow;
  handles.extra[COW_FILE_KEY] = f.cowFile;
  await record();

  const sectors = Number((await exec.run("blockdev", ["--getsz", base])).stdout.trim());
  if (!Number.isInteger(sectors) || sectors <= 0) throw new BangerError("E_INTERNAL", `blockdev --getsz ${base}: not a size`);
  const name = dmNameFor(f.vmId);
  // persistent (P) so the VM's writes survive a stop/start; chunk 8 sectors = 4 KiB
  await exec.run("dmsetup", ["create", name, "--table", `0 ${sectors} snapshot ${base} ${cow} P ${CHUNK_SECTORS}`]);
  handles.dmName = name;
  handles.dmDev = `/dev/mapper/${name}`;
  await record();
}

/** `dmsetup remove`; a target that is already gone counts as removed. */
export async function removeTarget(exec: Exec, name: string): Promise<void> {
  const r = await exec.run("dmsetup", ["remove", "--retry", name], { check: false });
  if (r.exitCode === 0) return;
  const info = await exec.run("dmsetup", ["info", name], { check: false });
  if (info.exitCode !== 0) return;
  throw new BangerError("E_INTERNAL", `dmsetup remove ${name} failed: ${(r.stderr || r.stdout).trim()} (remove it by hand: dmsetup remove ${name})`);
}

/**
 * `losetup -d`, only when the loop is still attached to the file we
 * attached (after a crash and a reboot the number may belong to someone
 * else). Returns what happened, for the log.
 */
export async function detachLoop(exec: Exec, loop: string, expectedFile: string): Promise<"detached" | "gone" | "not ours"> {
  const q = await exec.run("losetup", ["--noheadings", "--output", "BACK-FILE", loop], { check: false });
  const back = q.stdout.trim().replace(/ \(deleted\)$/, "");
  if (q.exitCode !== 0 || back === "") return "gone";
  if (expectedFile && back !== expectedFile) return "not ours";
  await exec.run("losetup", ["-d", loop]);
  return "detached";
}

/**
 * Teardown in reverse order of attach: dm target, COW loop, base loop. Call
 * with the global lock held. Every step runs even if an earlier one failed
 * (a loop still in use is only marked for auto-detach by the kernel); fields
 * of what is gone are cleared. Returns the failures.
 */
export async function detachSnapshot(exec: Exec, handles: VMHandles, log: (msg: string) => void = () => {}): Promise<Error[]> {
  const failures: Error[] = [];
  if (handles.dmName) {
    try {
      await removeTarget(exec, handles.dmName);
      handles.dmName = "";
      handles.dmDev = "";
    } catch (e) {
      failures.push(e as Error);
    }
  }
  for (const [field, key] of [["cowLoop", COW_FILE_KEY], ["baseLoop", BASE_FILE_KEY]] as const) {
    const loop = handles[field];
    if (!loop) continue;
    try {
      const what = await detachLoop(exec, loop, handles.extra[key] ?? "");
      if (what === "not ours") log(`${loop} is no longer attached to ${handles.extra[key]}; left alone`);
      handles[field] = "";
    } catch (e) {
      failures.push(e as Error);
    }
  }
  return failures;
}
