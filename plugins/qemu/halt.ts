/**
 * A guest QEMU stopped on its own. With a disk's default error policy
 * (werror=enospc) a write that finds no space left on the host stops the
 * vCPUs instead of failing in the guest, whose filesystem would then go
 * read-only or lose the write: the run state becomes `io-error`, the disk's
 * io-status `nospace`, and `cont` retries the write once there is room.
 * Measured with QEMU 7.2: a guest `dd … conv=fsync` on a full host disk.
 */

/** One QMP command on the VM's socket, its `return` value. */
type Ask = (command: string) => Promise<unknown>;

/** query-block's entries, as far as read here. */
interface _BlockInfo {
  device?: string;
  "io-status"?: string;
  inserted?: { file?: string };
}

/** Why QEMU stopped the guest (the cause, in a sentence's middle), or null while it runs or is stopped by request. */
export async function qemuHaltedBy(ask: Ask): Promise<string | null> {
  const status = (await ask("query-status")) as { status?: unknown } | undefined;
  if (status?.status === "internal-error") return "QEMU stopped its guest on an internal error (its qemu.log may say which)";
  if (status?.status !== "io-error") return null;
  const blocks = ((await ask("query-block").catch(() => [])) ?? []) as _BlockInfo[];
  const failed = Array.isArray(blocks) ? blocks.filter((b) => b["io-status"] === "nospace" || b["io-status"] === "failed") : [];
  const full = failed.filter((b) => b["io-status"] === "nospace");
  const disks = (bs: _BlockInfo[]) => bs.map((b) => b.inserted?.file ?? b.device ?? "?").join(", ");
  if (full.length) return `QEMU stopped its guest: a write to its disk (${disks(full)}) found no space left on the host's filesystem`;
  if (failed.length) return `QEMU stopped its guest: a write to its disk (${disks(failed)}) failed on the host`;
  return "QEMU stopped its guest on a disk error";
}
