import { basename, dirname, join } from "node:path";
import { BangerError, tempPathFor } from "../../src/plugin-api.ts";
import type { Exec, FS } from "../../src/plugin-api.ts";

/**
 * Layer chains for the disks of QEMU VMs on copy storage: how a snapshot
 * takes a disk without copying it.
 *
 * In a VM's dir a disk (`system`, `work`) is its top file, the one the VM
 * writes (`system.img` raw, or `system.qcow2`), over frozen layers named
 * `system-<tag>.img|qcow2` that nothing writes again. Every backing name is
 * relative, so a chain resolves inside whichever dir holds its files, and a
 * dir holds hard links to its whole chain: a snapshot dir, a VM dir, a
 * clone's dir each stay whole when any of the others goes (the kernel keeps
 * a file until its last name is gone). A layer's name is made once (its tag
 * is the id of the snapshot that froze it), so one name is one file in
 * every dir it is linked into.
 *
 * A snapshot freezes the top: the top gets its frozen name (a second link),
 * a new empty overlay over it, made before the freeze, takes the top's name,
 * the running VMM switches to it, and the snapshot dir gets links. The
 * format of every file still comes from its name, and every overlay records
 * its backing's format: no file a guest wrote is ever probed.
 */

export type DiskFormat = "raw" | "qcow2";

const _EXT: Record<DiskFormat, string> = { raw: ".img", qcow2: ".qcow2" };
const _LAYER_RE = /^([a-z]+)-([0-9a-z]+)\.(img|qcow2)$/;

/** The frozen name of a disk's layer: `system-<tag>.qcow2`. */
export function layerName(disk: string, tag: string, format: DiskFormat): string {
  return `${disk}-${tag}${_EXT[format]}`;
}

/** A frozen layer's disk and format, from its name; null for any other name. */
export function parseLayer(name: string): { disk: string; format: DiskFormat } | null {
  const m = _LAYER_RE.exec(name);
  return m ? { disk: m[1]!, format: m[3] === "img" ? "raw" : "qcow2" } : null;
}

/** The disk a snapshot's file is of (`system` for system.img, system.qcow2, system-<tag>.img), and its format. */
export function diskFileOf(name: string): { disk: string; format: DiskFormat } | null {
  const layer = parseLayer(name);
  if (layer) return layer;
  const m = /^([a-z]+)\.(img|qcow2)$/.exec(name);
  return m ? { disk: m[1]!, format: m[2] === "img" ? "raw" : "qcow2" } : null;
}

/** A second name for a file (same filesystem); a copy where a link cannot cross filesystems. An existing name is kept: one name is one file. */
export async function linkInto(fs: FS, exec: Exec, from: string, to: string): Promise<void> {
  if (await fs.exists(to)) return;
  try {
    await fs.link(from, to);
  } catch (e) {
    if ((e as { code?: string }).code !== "EXDEV") throw e;
    await exec.run("cp", ["--sparse=always", "--reflink=auto", from, to]);
  }
}

interface _ChainEntry {
  filename: string;
  format: string;
  "virtual-size": number;
}

/** A disk's files top first, as qemu-img follows the backing names (the top's format given, never probed). */
async function _chainOf(exec: Exec, top: string, format: DiskFormat): Promise<_ChainEntry[]> {
  // -U: the VM's QEMU holds the top's lock; the header's backing name and size are ours and never change
  const r = await exec.run("qemu-img", ["info", "-U", "--backing-chain", "--output=json", "-f", format, top]);
  return JSON.parse(r.stdout) as _ChainEntry[];
}

/** What a snapshot will do to one disk, made before the freeze. */
export interface FreezePlan {
  disk: string;
  /** The disk's place in BootConfig.disks (the VMM's drive). */
  index: number;
  vmDir: string;
  /** The file the VM writes now. */
  top: string;
  /** Names in vmDir of the layers under the top. */
  below: string[];
  /** The name the top gets when frozen (in vmDir and in the snapshot). */
  frozen: string;
  /** The new empty overlay, over `frozen`, that takes the top's place. */
  staged: string;
}

/** The name of the disk's top once it is an overlay. */
export function overlayTop(vmDir: string, disk: string): string {
  return join(vmDir, `${disk}.qcow2`);
}

/**
 * Before the freeze: the disk's chain, and the overlay it will switch to (`qemu-img create -u`: its backing
 * does not have its frozen name yet, and the running VM holds the top's lock). null: a layer lies outside the
 * VM's dir (an overlay made by an older banger over a snapshot's copy), so this disk is copied as before.
 */
export async function planFreeze(fs: FS, exec: Exec, top: { path: string; format: DiskFormat }, index: number, tag: string): Promise<FreezePlan | null> {
  const vmDir = dirname(top.path);
  const disk = basename(top.path).replace(/\.(img|qcow2)$/, "");
  let size: number;
  const below: string[] = [];
  if (top.format === "raw") {
    size = (await fs.stat(top.path))?.size ?? 0;
  } else {
    const chain = await _chainOf(exec, top.path, top.format);
    size = chain[0]?.["virtual-size"] ?? 0;
    for (const c of chain.slice(1)) {
      const layer = parseLayer(basename(c.filename));
      if (dirname(c.filename) !== vmDir || layer?.disk !== disk || layer.format !== c.format) return null;
      below.push(basename(c.filename));
    }
  }
  if (!size) throw new BangerError("E_INTERNAL", `cannot read the size of ${top.path}`);
  const frozen = layerName(disk, tag, top.format);
  const staged = tempPathFor(overlayTop(vmDir, disk));
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-F", top.format, "-b", frozen, staged, String(size)]);
  return { disk, index, vmDir, top: top.path, below, frozen, staged };
}

/**
 * In the freeze: the top keeps its file under its frozen name, the staged overlay takes the top's name and
 * (live) the VMM writes to it; then the snapshot dir gets links to the whole frozen chain. Returns the name
 * of the chain's top in `snapDir`. A failure before the VMM switched puts the old names back (the VM writes
 * on to the file it had); once switched there is nothing to undo: the VM runs on its new overlay.
 *
 * A crash at any point leaves a valid chain: the top's name always names the file the VM writes or an
 * empty overlay over it (the same bytes), and the snapshot dir is a temp dir until the snapshot commits.
 */
export async function freezeDisk(fs: FS, exec: Exec, plan: FreezePlan, snapDir: string, switchDisk?: (index: number, overlay: string) => Promise<void>): Promise<string> {
  const frozenPath = join(plan.vmDir, plan.frozen);
  const newTop = overlayTop(plan.vmDir, plan.disk);
  await fs.link(plan.top, frozenPath);
  let renamed = false;
  try {
    await fs.rename(plan.staged, newTop);
    renamed = true;
    if (switchDisk) await switchDisk(plan.index, newTop);
  } catch (e) {
    if (!renamed) await fs.rmrf(frozenPath);
    // rename is atomic: the top's name is the VM's file again in one step
    else if (plan.top === newTop) await fs.rename(frozenPath, newTop);
    else await Promise.all([fs.rmrf(newTop), fs.rmrf(frozenPath)]);
    throw e;
  }
  // a raw top's old name (its file is the frozen layer now): the overlay is the top
  if (plan.top !== newTop) await fs.rmrf(plan.top);
  for (const name of [...plan.below, plan.frozen]) await linkInto(fs, exec, join(plan.vmDir, name), join(snapDir, name));
  return plan.frozen;
}

/**
 * A snapshot's chain for `disk` linked into a VM's dir, and a new empty overlay over it staged there
 * (commitStaged puts it in place). Returns the staged file and the names the VM's chain will have.
 * An older snapshot's whole copy (`system.img`) is linked in as a layer of its own.
 */
export async function stageFromSnapshot(fs: FS, exec: Exec, snap: { id: string; dir: string; disks: string[] }, disk: string, vmDir: string): Promise<{ staged: string; chain: Set<string> }> {
  const top = snap.disks.find((n) => diskFileOf(n)?.disk === disk);
  if (!top) throw new BangerError("E_STATE", `snapshot ${snap.id} has no ${disk} disk`);
  const format = diskFileOf(top)!.format;
  const below = (await fs.list(snap.dir)).map((e) => e.name).filter((n) => n !== top && parseLayer(n)?.disk === disk);
  const topHere = parseLayer(top) ? top : layerName(disk, snap.id, format);
  for (const n of below) await linkInto(fs, exec, join(snap.dir, n), join(vmDir, n));
  await linkInto(fs, exec, join(snap.dir, top), join(vmDir, topHere));
  const staged = tempPathFor(overlayTop(vmDir, disk));
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", format, "-b", topHere, staged]);
  return { staged, chain: new Set([...below, topHere]) };
}

/** The staged overlay becomes the disk's top; the raw top and the layers of the chain it had go (other dirs keep their own links). */
export async function commitStaged(fs: FS, vmDir: string, disk: string, staged: string, chain: Set<string>): Promise<void> {
  await fs.rename(staged, overlayTop(vmDir, disk));
  await fs.rmrf(join(vmDir, `${disk}.img`));
  for (const { name } of await fs.list(vmDir)) {
    if (parseLayer(name)?.disk === disk && !chain.has(name)) await fs.rmrf(join(vmDir, name));
  }
}
