import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { BangerError } from "../../src/plugin-api.ts";
import type { Exec, FS } from "../../src/plugin-api.ts";

/**
 * Layer chains for the disks of QEMU VMs on copy storage: how a snapshot
 * takes a disk without copying it.
 *
 * In a VM's dir a disk (`system`, `work`) is a chain of files: its top, the
 * one QEMU writes, over layers nothing writes again. `system.top` names the
 * top (absent: `system.qcow2` if there is one, else `system.img`, as an
 * older banger left it). Layers are named `system-<tag>.img|qcow2`, the tag
 * unique, so one name is one file in every dir it is linked into. Every
 * backing name is relative and every dir holds hard links to its whole
 * chain: a snapshot dir, a VM and each clone stand alone, and deleting any
 * of them never breaks another (the kernel keeps a file until its last link
 * goes).
 *
 * A name QEMU has open is never renamed over or removed while it runs:
 * QEMU reopens files by the name it was given (activating its disks after a
 * migration does, and fails on a name that now holds another file). So a
 * snapshot adds names and files, never moves one. Before the freeze: the top
 * gets a layer name if it has none (a second link), a new empty overlay is
 * made over that name and `system.top` names the overlay; the chain then
 * reads the same bytes as before, whether QEMU writes the old top or (after
 * the switch) the overlay, so a crash at any point leaves a valid disk. In
 * the freeze: QEMU switches to the overlay and the snapshot dir gets links.
 * The format of every file comes from its name, and every overlay records its
 * backing's format: no file a guest wrote is ever probed.
 */

export type DiskFormat = "raw" | "qcow2";

const _EXT: Record<DiskFormat, string> = { raw: ".img", qcow2: ".qcow2" };
const _LAYER_RE = /^([a-z]+)-([0-9a-z]+)\.(img|qcow2)$/;

/** A new unique layer tag. */
export function newTag(): string {
  return randomBytes(8).toString("hex");
}

/** A layer's name: `system-<tag>.qcow2`. */
export function layerName(disk: string, tag: string, format: DiskFormat): string {
  return `${disk}-${tag}${_EXT[format]}`;
}

/** A layer's disk and format, from its name; null for any other name. */
export function parseLayer(name: string): { disk: string; format: DiskFormat } | null {
  const m = _LAYER_RE.exec(name);
  return m ? { disk: m[1]!, format: m[3] === "img" ? "raw" : "qcow2" } : null;
}

/** The disk a file of a VM or snapshot dir belongs to (system.img, system.qcow2, system-<tag>.img…), and its format. */
export function diskFileOf(name: string): { disk: string; format: DiskFormat } | null {
  const layer = parseLayer(name);
  if (layer) return layer;
  const m = /^([a-z]+)\.(img|qcow2)$/.exec(name);
  return m ? { disk: m[1]!, format: m[2] === "img" ? "raw" : "qcow2" } : null;
}

/** The file that names a disk's top in its dir. */
export function topPointer(vmDir: string, disk: string): string {
  return join(vmDir, `${disk}.top`);
}

/** The file a VM's disk is written to: what `<disk>.top` names, else an older banger's overlay, else the raw disk. */
export async function topOf(fs: FS, rawPath: string): Promise<{ path: string; format: DiskFormat }> {
  const dir = dirname(rawPath);
  const disk = basename(rawPath).replace(/\.img$/, "");
  const named = (await fs.readText(topPointer(dir, disk)))?.trim();
  const f = named ? diskFileOf(named) : null;
  if (named && f?.disk === disk) return { path: join(dir, named), format: f.format };
  const overlay = join(dir, `${disk}.qcow2`);
  return (await fs.exists(overlay)) ? { path: overlay, format: "qcow2" } : { path: rawPath, format: "raw" };
}

/** A second name for a file (same filesystem); a copy where a link cannot cross filesystems. An existing name is kept: one name is one file. */
export async function linkInto(fs: FS, exec: Exec, from: string, to: string): Promise<boolean> {
  if (await fs.exists(to)) return false;
  try {
    await fs.link(from, to);
  } catch (e) {
    if ((e as { code?: string }).code !== "EXDEV") throw e;
    await exec.run("cp", ["--sparse=always", "--reflink=auto", from, to]);
  }
  return true;
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

/** What a snapshot does to one disk, made before the freeze (prepareFreeze), finished in it (freezeDisk). */
export interface FreezePlan {
  disk: string;
  /** The disk's place in BootConfig.disks (the VMM's drive). */
  index: number;
  vmDir: string;
  /** The file the VM writes until the switch (its old name, which stays). */
  top: string;
  /** The top's layer name (a second link made for it when its name was not one): the snapshot's top. */
  frozen: string;
  /** Names in vmDir of the layers under the top. */
  below: string[];
  /** The new empty overlay over `frozen`, named in `<disk>.top` already. */
  next: string;
  /** Whether the VMM writes to `next` now (nothing to undo then). */
  switched: boolean;
  /** Put the names back as they were (the VM writes to `top` still). */
  undo: () => Promise<void>;
}

/**
 * How many layers a disk's chain may have under its top before a snapshot shortens it (ShortenChain): every
 * snapshot adds one, and QEMU opens each at every start, restore and clone (200 layers: 0.2 s here), and a read
 * of a cluster no upper layer holds walks them all (4 KiB reads 4x slower at 200 layers than at one).
 */
export const MAX_LAYERS_UNDER_TOP = 16;

/**
 * How prepareFreeze shortens a chain longer than MAX_LAYERS_UNDER_TOP: the top takes in every layer above the
 * chain's bottom (the image's copy), so the chain is two files again. `live`: QEMU has the top open, and only
 * `stream` (VMMDriver.streamDisk) may change it; a VMM that cannot leaves the chain as it is. A stopped VM's top
 * is rebased by qemu-img. Either way the top's header changes last: a failure midway leaves a valid chain, and
 * is reported (`warn`) rather than thrown: the snapshot goes on over the long chain.
 */
export interface ShortenChain {
  live: boolean;
  stream?: (base: { path: string; name: string }) => Promise<void>;
  /** Before the copy (it may take seconds: all the VM wrote since its image). */
  progress?: (layers: number) => void;
  warn?: (message: string) => void;
  /** The operation's: a cancelled shortening is thrown, not reported. */
  signal?: AbortSignal;
}

/**
 * Before the freeze: the disk's chain (shortened first when too long: `shorten`), a layer name for its top, the
 * overlay it will switch to (`qemu-img create -u`: the running VM holds the top's lock) and `<disk>.top` naming
 * it. null: a layer lies outside the VM's dir (an overlay an older banger made over a snapshot's copy): this
 * disk is copied, as before.
 */
export async function prepareFreeze(fs: FS, exec: Exec, top: { path: string; format: DiskFormat }, index: number, tag: string, shorten?: ShortenChain): Promise<FreezePlan | null> {
  const vmDir = dirname(top.path);
  const disk = basename(top.path).replace(/(-[0-9a-z]+)?\.(img|qcow2)$/, "");
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
    if (shorten && below.length > MAX_LAYERS_UNDER_TOP && (await _shortenChain(exec, top.path, chain.at(-1)!, below.length, shorten))) below.splice(0, below.length - 1);
    await _dropUnread(fs, vmDir, disk, new Set([basename(top.path), ...below]));
  }
  if (!size) throw new BangerError("E_INTERNAL", `cannot read the size of ${top.path}`);
  const undos: (() => Promise<void>)[] = [];
  const undo = async () => {
    for (const u of undos.splice(0).reverse()) await u();
  };
  try {
    let frozen = basename(top.path);
    if (!parseLayer(frozen)) {
      // system.img (or an older banger's system.qcow2) gets a unique name too; its old name stays for QEMU
      frozen = layerName(disk, `${tag}b`, top.format);
      await fs.link(top.path, join(vmDir, frozen));
      undos.push(() => fs.rmrf(join(vmDir, frozen)));
    }
    const next = layerName(disk, tag, "qcow2");
    undos.push(() => fs.rmrf(join(vmDir, next)));
    await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-F", top.format, "-b", frozen, join(vmDir, next), String(size)]);
    // from here a start of the VM boots from the overlay: the same bytes as the top, which it reads through
    const pointer = topPointer(vmDir, disk);
    const was = await fs.readText(pointer);
    undos.push(() => (was === null ? fs.rmrf(pointer) : fs.writeAtomic(pointer, was)));
    await fs.writeAtomic(pointer, next + "\n");
    return { disk, index, vmDir, top: top.path, frozen, below, next, switched: false, undo };
  } catch (e) {
    await undo();
    throw e;
  }
}

/**
 * The VM dir's layers of `disk` its chain does not read (`chain`: the top and the layers under it, by their
 * headers): a chain a shortening left (this one's, or one a killed daemon's stream finished after it died). QEMU
 * has none of them open (a stream's end closes the layers it dropped); the snapshots that hold them keep their own links.
 */
async function _dropUnread(fs: FS, vmDir: string, disk: string, chain: ReadonlySet<string>): Promise<void> {
  for (const { name } of await fs.list(vmDir)) {
    if (!chain.has(name) && parseLayer(name)?.disk === disk) await fs.rmrf(join(vmDir, name));
  }
}

/** The top at `topPath` takes in every layer above `bottom` and is backed by it directly (ShortenChain). Whether it did. */
async function _shortenChain(exec: Exec, topPath: string, bottom: _ChainEntry, layers: number, o: ShortenChain): Promise<boolean> {
  if (o.live && !o.stream) return false;
  const name = basename(bottom.filename);
  o.progress?.(layers);
  try {
    if (o.stream) await o.stream({ path: bottom.filename, name });
    // safe mode (no -u): qemu-img copies into the top every cluster the old chain and the new backing read differently
    else await exec.run("qemu-img", ["rebase", "-q", "-f", "qcow2", "-F", bottom.format, "-b", name, topPath]);
  } catch (e) {
    if (o.signal?.aborted) throw e;
    o.warn?.(`shortening the ${layers}-layer chain under ${basename(topPath)} failed (it stays as it is): ${(e as Error).message}`);
    return false;
  }
  return true;
}

/**
 * In the freeze: the VMM (when live) writes to the overlay from now on; the snapshot dir gets links to the
 * frozen chain. Returns the name of the chain's top in `snapDir`. A failed switch leaves the plan to its undo.
 */
export async function freezeDisk(fs: FS, exec: Exec, plan: FreezePlan, snapDir: string, switchDisk?: (index: number, overlay: string) => Promise<void>): Promise<string> {
  if (switchDisk) await switchDisk(plan.index, join(plan.vmDir, plan.next));
  plan.switched = true;
  for (const name of [...plan.below, plan.frozen]) await linkInto(fs, exec, join(plan.vmDir, name), join(snapDir, name));
  return plan.frozen;
}

/**
 * A VM's disk from a snapshot (a clone's, or a rollback's: the VM is stopped), staged: the snapshot's chain
 * linked into the VM's dir and a new empty overlay over its top, named nowhere yet (commitStaged does). An
 * older snapshot's whole copy (`system.img`) is linked in under a layer name of its own.
 */
export async function stageFromSnapshot(fs: FS, exec: Exec, snap: { id: string; dir: string; disks: string[] }, disk: string, vmDir: string): Promise<{ next: string; chain: Set<string> }> {
  const top = snap.disks.find((n) => diskFileOf(n)?.disk === disk);
  if (!top) throw new BangerError("E_STATE", `snapshot ${snap.id} has no ${disk} disk`);
  const format = diskFileOf(top)!.format;
  const below = (await fs.list(snap.dir)).map((e) => e.name).filter((n) => n !== top && parseLayer(n)?.disk === disk);
  const topHere = parseLayer(top) ? top : layerName(disk, `${snap.id}c`, format);
  for (const n of below) await linkInto(fs, exec, join(snap.dir, n), join(vmDir, n));
  await linkInto(fs, exec, join(snap.dir, top), join(vmDir, topHere));
  const next = layerName(disk, newTag(), "qcow2");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", format, "-b", topHere, join(vmDir, next)]);
  return { next, chain: new Set([...below, topHere, next]) };
}

/** A staged overlay becomes the disk's top (one atomic write of `<disk>.top`); the files of the chain the VM had go (other dirs keep their own links). */
export async function commitStaged(fs: FS, vmDir: string, disk: string, staged: { next: string; chain: Set<string> }): Promise<void> {
  await fs.writeAtomic(topPointer(vmDir, disk), staged.next + "\n");
  for (const { name } of await fs.list(vmDir)) {
    if (diskFileOf(name)?.disk === disk && !staged.chain.has(name)) await fs.rmrf(join(vmDir, name));
  }
}
