// The copy storage's layer chains (plugins/storage/chain.ts) on real files with the real qemu-img; the VMM's
// disk switch is a recorder (what it was asked, and what the VM dir held at that instant). Dirs are named with
// shell-hostile characters: every path goes to qemu-img as an argument and every backing name is a layer name.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { commitStaged, freezeDisk, MAX_LAYERS_UNDER_TOP, prepareFreeze, stageFromSnapshot, topOf } from "../../plugins/storage/chain.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";

const root = mkdtempSync(join(tmpdir(), "banger-chain-it's; $(x)\n"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const exec = createExec();
const fs = createFS();
const MiB = 1 << 20;

const dirOf = (name: string) => {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  return d;
};
const ino = (p: string) => statSync(p).ino;
const files = (d: string) => readdirSync(d).filter((n) => !n.startsWith(".")).sort();
/** The bytes a guest would read: the chain flattened. */
const read = async (top: string, format: "raw" | "qcow2", offset: number, length: number) => {
  const out = join(root, `flat-${Math.random().toString(36).slice(2)}`);
  await exec.run("qemu-img", ["convert", "-U", "-f", format, "-O", "raw", top, out]);
  const b = readFileSync(out).subarray(offset, offset + length).toString();
  rmSync(out);
  return b;
};
/** A guest's write through the VM's top. */
const write = (top: string, offset: number, text: string) => exec.run("qemu-io", ["-f", "qcow2", "-c", `write -P ${text.charCodeAt(0)} ${offset} ${text.length}`, top]);
const backing = async (p: string) => (JSON.parse((await exec.run("qemu-img", ["info", "-U", "--output=json", "-f", "qcow2", p])).stdout) as { "backing-filename"?: string; "backing-filename-format"?: string });
const recorder = (vmDir: string, o: { fail?: boolean } = {}) => {
  const calls: { index: number; overlay: string; backing: string; top: string[] }[] = [];
  const sw = async (index: number, overlay: string) => {
    calls.push({ index, overlay, backing: (await backing(overlay))["backing-filename"] ?? "", top: files(vmDir) });
    if (o.fail) throw new Error("QMP GenericError: boom");
  };
  return { calls, sw };
};

const top = async (raw: string) => topOf(fs, raw);
const pointer = (vm: string) => readFileSync(join(vm, "system.top"), "utf8").trim();

test("a running VM's raw disk is taken without a copy and without renaming anything QEMU has open: a layer name (a second link) for the top, an overlay over it named in system.top before the freeze, in the freeze the switch and the snapshot's links; a second snapshot adds one layer; clone, rollback and deletes keep every chain whole", async () => {
  const vm = dirOf("vms/a");
  const raw = join(vm, "system.img");
  const base = Buffer.alloc(4 * MiB);
  base.write("AAAA", 0);
  writeFileSync(raw, base);
  const rawIno = ino(raw);
  expect(await top(raw)).toEqual({ path: raw, format: "raw" });

  // before the freeze: the layer name, the overlay (sized as the disk, over the layer name) and the pointer
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "t1"))!;
  expect(plan).toMatchObject({ disk: "system", index: 0, vmDir: vm, top: raw, below: [], frozen: "system-t1b.img", next: "system-t1.qcow2", switched: false });
  expect(files(vm)).toEqual(["system-t1.qcow2", "system-t1b.img", "system.img", "system.top"]);
  expect(ino(join(vm, "system-t1b.img"))).toBe(rawIno);
  expect(pointer(vm)).toBe("system-t1.qcow2");
  expect(await backing(join(vm, "system-t1.qcow2"))).toEqual(expect.objectContaining({ "backing-filename": "system-t1b.img", "backing-filename-format": "raw" }));
  // a start now would boot from the overlay: the same bytes
  expect(await top(raw)).toEqual({ path: join(vm, "system-t1.qcow2"), format: "qcow2" });
  expect(await read(join(vm, "system-t1.qcow2"), "qcow2", 0, 4)).toBe("AAAA");

  // the freeze: the switch to the overlay, then links; the raw file keeps its name for the QEMU that has it open
  const snap1 = dirOf("snapshots/s1");
  const rec = recorder(vm);
  expect(await freezeDisk(fs, exec, plan, snap1, rec.sw)).toBe("system-t1b.img");
  expect(rec.calls).toEqual([{ index: 0, overlay: join(vm, "system-t1.qcow2"), backing: "system-t1b.img", top: ["system-t1.qcow2", "system-t1b.img", "system.img", "system.top"] }]);
  expect(plan.switched).toBe(true);
  expect(files(snap1)).toEqual(["system-t1b.img"]);
  expect(ino(join(snap1, "system-t1b.img"))).toBe(rawIno);

  // the VM writes on, into its overlay only
  await write(join(vm, "system-t1.qcow2"), 0, "BBBB");
  expect(readFileSync(join(snap1, "system-t1b.img")).subarray(0, 4).toString()).toBe("AAAA");

  // a second snapshot: the top already has a layer name, so no new link; the chain under it is linked too
  const plan2 = (await prepareFreeze(fs, exec, await top(raw), 0, "t2"))!;
  expect(plan2).toMatchObject({ top: join(vm, "system-t1.qcow2"), below: ["system-t1b.img"], frozen: "system-t1.qcow2", next: "system-t2.qcow2" });
  const snap2 = dirOf("snapshots/s2");
  expect(await freezeDisk(fs, exec, plan2, snap2, recorder(vm).sw)).toBe("system-t1.qcow2");
  expect(files(snap2)).toEqual(["system-t1.qcow2", "system-t1b.img"]);
  expect(pointer(vm)).toBe("system-t2.qcow2");
  await write(join(vm, "system-t2.qcow2"), 0, "CCCC");
  expect(await read(join(snap2, "system-t1.qcow2"), "qcow2", 0, 4)).toBe("BBBB");

  // a clone of snapshot 2: its own links and overlay; the source VM and the snapshots can go, the clone reads on
  const clone = dirOf("vms/clone");
  const s2 = { id: "s2id", dir: snap2, disks: ["system-t1.qcow2"] };
  const staged = await stageFromSnapshot(fs, exec, s2, "system", clone);
  expect(existsSync(join(clone, "system.top"))).toBe(false);
  await commitStaged(fs, clone, "system", staged);
  expect(files(clone)).toEqual(["system-t1.qcow2", "system-t1b.img", staged.next, "system.top"].sort());
  expect((await backing(join(clone, staged.next)))["backing-filename"]).toBe("system-t1.qcow2");

  // rollback of the VM (stopped now) to snapshot 1: its chain becomes that one; what it no longer needs goes from its dir only
  const r = await stageFromSnapshot(fs, exec, { id: "s1id", dir: snap1, disks: ["system-t1b.img"] }, "system", vm);
  await commitStaged(fs, vm, "system", r);
  expect(files(vm)).toEqual(["system-t1b.img", r.next, "system.top"].sort());
  expect(await read((await top(raw)).path, "qcow2", 0, 4)).toBe("AAAA");

  rmSync(snap2, { recursive: true });
  rmSync(vm, { recursive: true });
  rmSync(snap1, { recursive: true });
  const ctop = (await top(join(clone, "system.img"))).path;
  expect(await read(ctop, "qcow2", 0, 4)).toBe("BBBB");
  await write(ctop, 0, "DDDD");
  expect(await read(ctop, "qcow2", 0, 4)).toBe("DDDD");
});

test("the switch fails: undo gives back the names as they were (raw top, and a top already an overlay); nothing in the snapshot dir", async () => {
  const vm = dirOf("vms/b");
  const raw = join(vm, "system.img");
  writeFileSync(raw, Buffer.alloc(MiB));
  const snap = dirOf("snapshots/fail1");
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "f1"))!;
  const rec = recorder(vm, { fail: true });
  await expect(freezeDisk(fs, exec, plan, snap, rec.sw)).rejects.toThrow("boom");
  expect(plan.switched).toBe(false);
  await plan.undo();
  expect(readdirSync(vm)).toEqual(["system.img"]);
  expect(readdirSync(snap)).toEqual([]);

  const ok = (await prepareFreeze(fs, exec, await top(raw), 0, "f2"))!;
  await freezeDisk(fs, exec, ok, snap, recorder(vm).sw);
  const before = files(vm);
  const plan2 = (await prepareFreeze(fs, exec, await top(raw), 0, "f3"))!;
  const snapB = dirOf("snapshots/fail2");
  await expect(freezeDisk(fs, exec, plan2, snapB, recorder(vm, { fail: true }).sw)).rejects.toThrow("boom");
  await plan2.undo();
  expect(files(vm)).toEqual(before);
  expect(pointer(vm)).toBe("system-f2.qcow2");
  expect(readdirSync(snapB)).toEqual([]);
});

test("a stopped VM (no switch) is taken the same way; an overlay whose backing lies outside the VM's dir (an older banger's clone) is left to be copied", async () => {
  const vm = dirOf("vms/c");
  const raw = join(vm, "system.img");
  writeFileSync(raw, Buffer.alloc(MiB));
  const snap = dirOf("snapshots/c1");
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "c1"))!;
  expect(await freezeDisk(fs, exec, plan, snap)).toBe("system-c1b.img");
  expect(pointer(vm)).toBe("system-c1.qcow2");

  const old = dirOf("vms/old");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", join(snap, "system-c1b.img"), join(old, "system.qcow2")]);
  expect(await top(join(old, "system.img"))).toEqual({ path: join(old, "system.qcow2"), format: "qcow2" });
  expect(await prepareFreeze(fs, exec, await top(join(old, "system.img")), 0, "c2")).toBeNull();
  expect(files(old)).toEqual(["system.qcow2"]);
});

test("a clone of an older snapshot (a whole raw copy named system.img) links it in under a layer name of its own", async () => {
  const snap = dirOf("snapshots/legacy");
  const copy = Buffer.alloc(MiB);
  copy.write("OLD!", 0);
  writeFileSync(join(snap, "system.img"), copy);
  writeFileSync(join(snap, "state.mig"), "x");
  const vm = dirOf("vms/d");
  writeFileSync(join(vm, "system.img"), Buffer.alloc(MiB));
  const s = await stageFromSnapshot(fs, exec, { id: "abc123", dir: snap, disks: ["system.img"] }, "system", vm);
  await commitStaged(fs, vm, "system", s);
  expect(files(vm)).toEqual(["system-abc123c.img", s.next, "system.top"].sort());
  expect(ino(join(vm, "system-abc123c.img"))).toBe(ino(join(snap, "system.img")));
  expect(await read((await top(join(vm, "system.img"))).path, "qcow2", 0, 4)).toBe("OLD!");
});

/** A VM dir whose system disk is a chain of `n` layers under its top (n snapshots of a stopped VM), each having written its own 4 bytes at its own offset; the snapshot dirs. */
const deepChain = async (name: string, n: number) => {
  const vm = dirOf(`vms/${name}`);
  const raw = join(vm, "system.img");
  const b = Buffer.alloc(4 * MiB);
  b.write("BASE", 0);
  writeFileSync(raw, b);
  const snaps: string[] = [];
  for (let i = 1; i <= n; i++) {
    const plan = (await prepareFreeze(fs, exec, await top(raw), 0, `${name}${i}`))!;
    const snap = dirOf(`snapshots/${name}${i}`);
    await freezeDisk(fs, exec, plan, snap);
    snaps.push(snap);
    await write((await top(raw)).path, 4096 * i, `${String.fromCharCode(96 + i)}`.repeat(4));
  }
  return { vm, raw, snaps };
};
const depth = async (p: string) => (JSON.parse((await exec.run("qemu-img", ["info", "-U", "--backing-chain", "--output=json", "-f", "qcow2", p])).stdout) as unknown[]).length;

test(`a chain longer than ${MAX_LAYERS_UNDER_TOP} layers under its top: a stopped VM's top is rebased onto the bottom (qemu-img, safe mode) before the freeze; the bytes stay, the snapshot takes two files, the VM dir keeps only what it reads, and the older snapshots stay whole`, async () => {
  const n = MAX_LAYERS_UNDER_TOP + 1;
  const { vm, raw, snaps } = await deepChain("deep", n);
  const before = (await top(raw)).path;
  expect(await depth(before)).toBe(n + 1);
  const progress: number[] = [];
  const warns: string[] = [];
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "deepx", { live: false, progress: (l) => progress.push(l), warn: (m) => warns.push(m) }))!;
  expect(progress).toEqual([n]);
  expect(warns).toEqual([]);
  expect(plan.below).toEqual(["system-deep1b.img"]);
  expect(await backing(before)).toEqual(expect.objectContaining({ "backing-filename": "system-deep1b.img", "backing-filename-format": "raw" }));
  expect(await depth(before)).toBe(2);
  // what a guest reads is what it read: every layer's bytes and the image's
  expect(await read(before, "qcow2", 0, 4)).toBe("BASE");
  for (let i = 1; i <= n; i++) expect(await read(before, "qcow2", 4096 * i, 4)).toBe(String.fromCharCode(96 + i).repeat(4));
  // the VM dir: the bottom (and its first name), the top, the new overlay and its pointer
  expect(files(vm)).toEqual(["system-deep1b.img", basename(before), plan.next, "system.img", "system.top"].sort());
  const snap = dirOf("snapshots/deepx");
  expect(await freezeDisk(fs, exec, plan, snap)).toBe(basename(before));
  expect(files(snap)).toEqual(["system-deep1b.img", basename(before)].sort());
  // a snapshot from before keeps its own whole chain (its own links): it reads what it read then
  expect(await read(join(snaps[2]!, files(snaps[2]!).find((f) => f.endsWith(".qcow2") && !files(snaps[1]!).includes(f))!), "qcow2", 4096 * 2, 4)).toBe("bbbb");
  // the next snapshot adds one layer: short again
  await write((await top(raw)).path, 0, "NEXT");
  const plan2 = (await prepareFreeze(fs, exec, await top(raw), 0, "deepy", { live: false }))!;
  expect(plan2.below).toEqual([basename(before), "system-deep1b.img"]);
});

test("a live VM's long chain is streamed by its VMM (the bottom, by path and by the name its top will give it); a VMM that cannot leaves it; a failed stream is reported and the snapshot goes on over the long chain", async () => {
  const n = MAX_LAYERS_UNDER_TOP + 1;
  const { vm, raw } = await deepChain("live", n);
  const topPath = (await top(raw)).path;
  const layersBefore = files(vm);

  // no stream: as it is
  const still = (await prepareFreeze(fs, exec, await top(raw), 0, "livex", { live: true }))!;
  expect(still.below.length).toBe(n);
  await still.undo();
  expect(files(vm)).toEqual(layersBefore);

  // a stream that fails: reported, the plan over the long chain, nothing removed
  const warns: string[] = [];
  const failed = (await prepareFreeze(fs, exec, await top(raw), 0, "livey", { live: true, stream: async () => { throw new Error("QMP GenericError: No space left on device"); }, warn: (m) => warns.push(m) }))!;
  expect(warns).toEqual([`shortening the ${n}-layer chain under ${basename(topPath)} failed (it stays as it is): QMP GenericError: No space left on device`]);
  expect(failed.below.length).toBe(n);
  await failed.undo();
  expect(files(vm)).toEqual(layersBefore);

  // cancelled (the operation's signal): thrown
  const ac = new AbortController();
  ac.abort();
  await expect(prepareFreeze(fs, exec, await top(raw), 0, "livez", { live: true, signal: ac.signal, stream: async () => { throw new Error("cancelled"); } })).rejects.toThrow("cancelled");

  // the VMM's stream: asked for the bottom; what it does to the top (QEMU's block-stream) is qemu-img's rebase here
  const asked: { path: string; name: string }[] = [];
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "livew", {
    live: true,
    stream: async (base) => {
      asked.push(base);
      await exec.run("qemu-img", ["rebase", "-q", "-f", "qcow2", "-F", "raw", "-b", base.name, topPath]);
    },
  }))!;
  expect(asked).toEqual([{ path: join(vm, "system-live1b.img"), name: "system-live1b.img" }]);
  expect(plan.below).toEqual(["system-live1b.img"]);
  expect(files(vm)).toEqual(["system-live1b.img", basename(topPath), plan.next, "system.img", "system.top"].sort());
  for (let i = 1; i <= n; i++) expect(await read(topPath, "qcow2", 4096 * i, 4)).toBe(String.fromCharCode(96 + i).repeat(4));
});

test(`a chain of ${MAX_LAYERS_UNDER_TOP} layers under its top is left as it is`, async () => {
  const { raw } = await deepChain("edge", MAX_LAYERS_UNDER_TOP);
  const asked: unknown[] = [];
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "edgex", { live: true, stream: async (b) => void asked.push(b) }))!;
  expect(asked).toEqual([]);
  expect(plan.below.length).toBe(MAX_LAYERS_UNDER_TOP);
});

test("the layers a VM's chain no longer reads (a killed daemon's stream finished after it died) leave the VM dir at its next snapshot; what it reads stays", async () => {
  const { vm, raw, snaps } = await deepChain("left", 4);
  const topPath = (await top(raw)).path;
  // what QEMU's block-stream does at its end, with no daemon to prune after it
  await exec.run("qemu-img", ["rebase", "-q", "-f", "qcow2", "-F", "raw", "-b", "system-left1b.img", topPath]);
  expect(files(vm).filter((f) => f.startsWith("system-")).length).toBe(5);
  const plan = (await prepareFreeze(fs, exec, await top(raw), 0, "leftx"))!;
  expect(plan.below).toEqual(["system-left1b.img"]);
  expect(files(vm)).toEqual(["system-left1b.img", basename(topPath), plan.next, "system.img", "system.top"].sort());
  for (let i = 1; i <= 4; i++) expect(await read(topPath, "qcow2", 4096 * i, 4)).toBe(String.fromCharCode(96 + i).repeat(4));
  // the snapshots keep their own links: each still reads what it held
  const s3 = snaps[2]!;
  expect(await read(join(s3, files(s3).find((f) => f.endsWith(".qcow2") && !files(snaps[1]!).includes(f))!), "qcow2", 4096 * 2, 4)).toBe("bbbb");
});
