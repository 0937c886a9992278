// The copy storage's layer chains (plugins/storage/chain.ts) on real files with the real qemu-img; the VMM's
// disk switch is a recorder (what it was asked, and what the VM dir held at that instant). Dirs are named with
// shell-hostile characters: every path goes to qemu-img as an argument and every backing name is a layer name.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commitStaged, freezeDisk, prepareFreeze, stageFromSnapshot, topOf } from "../../plugins/storage/chain.ts";
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
