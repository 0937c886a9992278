// The copy storage's layer chains (plugins/storage/chain.ts) on real files with the real qemu-img; the VMM's
// disk switch is a recorder (what it was asked, and what the VM dir held at that instant). Dirs are named with
// shell-hostile characters: every path goes to qemu-img as an argument and every backing name is a layer name.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commitStaged, freezeDisk, planFreeze, stageFromSnapshot } from "../../plugins/storage/chain.ts";
import { activeDisk } from "../../plugins/storage/overlay.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS, fileExists } from "../../src/host/fs.ts";

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

test("a running VM's raw disk is frozen without a copy: a link under its frozen name, the VMM switched to a new overlay over it, the snapshot gets links; a second snapshot adds one layer; rollback, clone and deletes keep every chain whole", async () => {
  const vm = dirOf("vms/a");
  const raw = join(vm, "system.img");
  const base = Buffer.alloc(4 * MiB);
  base.write("AAAA", 0);
  writeFileSync(raw, base);
  const rawIno = ino(raw);

  // before the freeze: only the staged overlay is made (named by its tag, sized as the disk, backing not opened)
  const plan = (await planFreeze(fs, exec, await activeDisk(fileExists, raw), 0, "t1"))!;
  expect(plan).toMatchObject({ disk: "system", index: 0, vmDir: vm, top: raw, below: [], frozen: "system-t1.img" });
  expect(files(vm)).toEqual(["system.img"]);
  expect(await backing(plan.staged)).toEqual(expect.objectContaining({ "backing-filename": "system-t1.img", "backing-filename-format": "raw" }));

  // the freeze: the switch sees the overlay in place over the frozen name, both naming what they should
  const snap1 = dirOf("snapshots/s1");
  const rec = recorder(vm);
  expect(await freezeDisk(fs, exec, plan, snap1, rec.sw)).toBe("system-t1.img");
  expect(rec.calls).toEqual([{ index: 0, overlay: join(vm, "system.qcow2"), backing: "system-t1.img", top: ["system-t1.img", "system.img", "system.qcow2"] }]);
  expect(files(vm)).toEqual(["system-t1.img", "system.qcow2"]);
  expect(ino(join(vm, "system-t1.img"))).toBe(rawIno);
  expect(files(snap1)).toEqual(["system-t1.img"]);
  expect(ino(join(snap1, "system-t1.img"))).toBe(rawIno);
  expect(await activeDisk(fileExists, raw)).toEqual({ path: join(vm, "system.qcow2"), format: "qcow2" });

  // the VM writes on, into its overlay only
  await write(join(vm, "system.qcow2"), 0, "BBBB");
  expect(readFileSync(join(snap1, "system-t1.img")).subarray(0, 4).toString()).toBe("AAAA");

  // a second snapshot: the top (a qcow2 now) is frozen, the chain under it linked too
  const plan2 = (await planFreeze(fs, exec, await activeDisk(fileExists, raw), 0, "t2"))!;
  expect(plan2).toMatchObject({ top: join(vm, "system.qcow2"), below: ["system-t1.img"], frozen: "system-t2.qcow2" });
  const topIno = ino(join(vm, "system.qcow2"));
  const snap2 = dirOf("snapshots/s2");
  expect(await freezeDisk(fs, exec, plan2, snap2, recorder(vm).sw)).toBe("system-t2.qcow2");
  expect(files(vm)).toEqual(["system-t1.img", "system-t2.qcow2", "system.qcow2"]);
  expect(ino(join(vm, "system-t2.qcow2"))).toBe(topIno);
  expect(files(snap2)).toEqual(["system-t1.img", "system-t2.qcow2"]);
  expect((await backing(join(vm, "system.qcow2")))["backing-filename"]).toBe("system-t2.qcow2");
  await write(join(vm, "system.qcow2"), 0, "CCCC");
  expect(await read(join(snap2, "system-t2.qcow2"), "qcow2", 0, 4)).toBe("BBBB");

  // a clone of snapshot 2: its own links and overlay; the source VM and the snapshot can go, the clone reads on
  const clone = dirOf("vms/clone");
  const s2 = { id: "s2id", dir: snap2, disks: ["system-t2.qcow2"] };
  const staged = await stageFromSnapshot(fs, exec, s2, "system", clone);
  await commitStaged(fs, clone, "system", staged.staged, staged.chain);
  expect(files(clone)).toEqual(["system-t1.img", "system-t2.qcow2", "system.qcow2"]);
  expect((await backing(join(clone, "system.qcow2")))["backing-filename"]).toBe("system-t2.qcow2");

  // rollback of the VM to snapshot 1: its chain becomes that one; the layer it no longer needs goes from its dir only
  const r = await stageFromSnapshot(fs, exec, { id: "s1id", dir: snap1, disks: ["system-t1.img"] }, "system", vm);
  expect(files(vm)).toEqual(["system-t1.img", "system-t2.qcow2", "system.qcow2"]);
  await commitStaged(fs, vm, "system", r.staged, r.chain);
  expect(files(vm)).toEqual(["system-t1.img", "system.qcow2"]);
  expect(await read(join(vm, "system.qcow2"), "qcow2", 0, 4)).toBe("AAAA");

  rmSync(snap2, { recursive: true });
  rmSync(vm, { recursive: true });
  rmSync(snap1, { recursive: true });
  expect(await read(join(clone, "system.qcow2"), "qcow2", 0, 4)).toBe("BBBB");
  await write(join(clone, "system.qcow2"), 0, "DDDD");
  expect(await read(join(clone, "system.qcow2"), "qcow2", 0, 4)).toBe("DDDD");
});

test("the switch fails: the VM's file keeps its name (raw and overlay tops), no frozen link, no staged file; the snapshot dir has nothing", async () => {
  const vm = dirOf("vms/b");
  const raw = join(vm, "system.img");
  writeFileSync(raw, Buffer.alloc(MiB));
  const rawIno = ino(raw);
  const snap = dirOf("snapshots/fail1");
  const plan = (await planFreeze(fs, exec, { path: raw, format: "raw" }, 0, "f1"))!;
  const rec = recorder(vm, { fail: true });
  await expect(freezeDisk(fs, exec, plan, snap, rec.sw)).rejects.toThrow("boom");
  expect(rec.calls.length).toBe(1);
  expect(readdirSync(vm)).toEqual(["system.img"]);
  expect(ino(raw)).toBe(rawIno);
  expect(readdirSync(snap)).toEqual([]);

  // the same for a VM already on an overlay: the top's name is its file again (one rename)
  const ok = (await planFreeze(fs, exec, { path: raw, format: "raw" }, 0, "f2"))!;
  await freezeDisk(fs, exec, ok, snap, recorder(vm).sw);
  const top = join(vm, "system.qcow2");
  const topIno = ino(top);
  const snapB = dirOf("snapshots/fail2");
  const plan2 = (await planFreeze(fs, exec, { path: top, format: "qcow2" }, 0, "f3"))!;
  await expect(freezeDisk(fs, exec, plan2, snapB, recorder(vm, { fail: true }).sw)).rejects.toThrow("boom");
  expect(readdirSync(vm).sort()).toEqual(["system-f2.img", "system.qcow2"]);
  expect(ino(top)).toBe(topIno);
  expect(readdirSync(snapB)).toEqual([]);
});

test("a stopped VM (no switch) is frozen the same way; an overlay whose backing lies outside the VM's dir (an older banger's clone) is left to be copied", async () => {
  const vm = dirOf("vms/c");
  const raw = join(vm, "system.img");
  writeFileSync(raw, Buffer.alloc(MiB));
  const snap = dirOf("snapshots/c1");
  const plan = (await planFreeze(fs, exec, { path: raw, format: "raw" }, 0, "c1"))!;
  expect(await freezeDisk(fs, exec, plan, snap)).toBe("system-c1.img");
  expect(files(vm)).toEqual(["system-c1.img", "system.qcow2"]);

  const old = dirOf("vms/old");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", join(snap, "system-c1.img"), join(old, "system.qcow2")]);
  expect(await planFreeze(fs, exec, { path: join(old, "system.qcow2"), format: "qcow2" }, 0, "c2")).toBeNull();
  expect(files(old)).toEqual(["system.qcow2"]);
});

test("a clone of an older snapshot (a whole raw copy named system.img) links it in as a layer named by the snapshot's id", async () => {
  const snap = dirOf("snapshots/legacy");
  const copy = Buffer.alloc(MiB);
  copy.write("OLD!", 0);
  writeFileSync(join(snap, "system.img"), copy);
  writeFileSync(join(snap, "state.mig"), "x");
  const vm = dirOf("vms/d");
  const s = await stageFromSnapshot(fs, exec, { id: "abc123", dir: snap, disks: ["system.img"] }, "system", vm);
  await commitStaged(fs, vm, "system", s.staged, s.chain);
  expect(files(vm)).toEqual(["system-abc123.img", "system.qcow2"]);
  expect(ino(join(vm, "system-abc123.img"))).toBe(ino(join(snap, "system.img")));
  expect(await read(join(vm, "system.qcow2"), "qcow2", 0, 4)).toBe("OLD!");
  expect(existsSync(join(vm, "state.mig"))).toBe(false);
});
