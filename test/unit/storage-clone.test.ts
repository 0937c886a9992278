// The copy storage's clone path on QEMU (plugins/storage/index.ts) over a recording exec and fake files: a
// clone's disks are made once, by vm:create, and the vm:restore of the same snapshot that follows (as
// Snapshots.createFrom runs them) makes nothing again, unless something may have written them since.
import { afterAll, expect, test } from "bun:test";
import storage from "../../plugins/storage/index.ts";
import type { SnapshotRecord, VMRecord } from "../../src/shared/model.ts";
import { engineWorld, recordingOp, sampleVM, type TestStore } from "../helpers/fakes.ts";

const PATHS = { home: "/state", vmsDir: "/state/vms", imagesDir: "/state/images" };
const stores: TestStore[] = [];
afterAll(() => stores.forEach((s) => s.cleanup()));

function snapshotOf(id: string, top = `system-${id}b.img`): SnapshotRecord {
  const vm = sampleVM({ id: "parent", driver: "qemu" });
  return { id, name: id, vmId: vm.id, vmName: "parent", state: "ready", dir: `/state/snapshots/${id}`, memory: true, spec: vm.spec, disks: [top], sizeBytes: 0, freezeMs: 0, createdAt: vm.createdAt };
}

async function world() {
  const w = engineWorld({ paths: PATHS, newId: () => "x", fakeProviders: { storage: [] } });
  stores.push(w.ts);
  await w.load([{ plugin: storage, source: "builtin" }]);
  for (const id of ["s1", "s2"]) await w.host.fs.writeFile(`/state/snapshots/${id}/system-${id}b.img`, "disk");
  const overlays = () => w.host.exec.lines().filter((l) => l.startsWith("qemu-img create"));
  const create = async (vm: VMRecord, snap: SnapshotRecord) => {
    await w.host.fs.mkdirp(vm.runtime.vmDir);
    // qemu-img is recorded, not run: the overlay it would write is a file here
    w.host.exec.on("qemu-img create", async (_c, args) => {
      await w.host.fs.writeFile(args.at(-1)!, "overlay");
      return {};
    });
    const op = recordingOp({ vm, host: w.host });
    await w.hooks.run("vm:create", { vm, progress: () => {}, op, disksFrom: snap });
    return op;
  };
  const restore = (vm: VMRecord, snap: SnapshotRecord) => w.hooks.run("vm:restore", { vm, snapshot: snap, progress: () => {}, op: recordingOp({ vm, host: w.host }) });
  const top = async (vm: VMRecord) => (await w.host.fs.readText(`${vm.runtime.vmDir}/system.top`))?.trim();
  return { ...w, overlays, create, restore, top };
}

test("a clone's overlay is made once: vm:create makes it from the snapshot, the vm:restore of that snapshot right after keeps it", async () => {
  const w = await world();
  const vm = sampleVM({ id: "c1", driver: "qemu" });
  const snap = snapshotOf("s1");
  await w.create(vm, snap);
  expect(w.overlays()).toHaveLength(1);
  expect(w.overlays()[0]).toContain("-b system-s1b.img /state/vms/c1/system-");
  const made = await w.top(vm);
  expect(made).toMatch(/^system-[0-9a-f]{16}\.qcow2$/);
  await w.restore(vm, snap);
  expect(w.overlays()).toHaveLength(1);
  expect(await w.top(vm)).toBe(made);
  // nothing was asked of qemu-img about the disks either (no info, no second create)
  expect(w.host.exec.lines().filter((l) => l.startsWith("qemu-img"))).toHaveLength(1);
  // the mark is used up: a later restore of that snapshot makes a new overlay
  await w.restore(vm, snap);
  expect(w.overlays()).toHaveLength(2);
  expect(await w.top(vm)).not.toBe(made);
});

test("a start in between, or a restore of another snapshot: the restore makes the disks again", async () => {
  const w = await world();
  const s1 = snapshotOf("s1");
  // started: its guest may have written the overlay
  const a = sampleVM({ id: "a", driver: "qemu" });
  await w.create(a, s1);
  await w.hooks.run("vm:start:before", { vm: a, boot: { kernelPath: "k", initrdPaths: [], kernelArgs: [], disks: [], netArgs: [] }, handles: { pid: 0, pidStartTime: 0, tapDevice: "", baseLoop: "", cowLoop: "", dmName: "", dmDev: "", extra: {} }, progress: () => {}, op: recordingOp({ vm: a, host: w.host }), restored: false });
  await w.restore(a, s1);
  expect(w.overlays()).toHaveLength(2);
  // a restore of another snapshot than the one it was made from
  const b = sampleVM({ id: "b", driver: "qemu" });
  await w.create(b, s1);
  await w.restore(b, snapshotOf("s2"));
  expect(w.overlays()).toHaveLength(4);
  expect(w.overlays()[3]).toContain("-b system-s2b.img /state/vms/b/system-");
});

test("a failed create drops the mark with its undo", async () => {
  const w = await world();
  const s1 = snapshotOf("s1");
  const c = sampleVM({ id: "c", driver: "qemu" });
  const op = await w.create(c, s1);
  expect(await op.unwind()).toEqual([]);
  await w.restore(c, s1);
  expect(w.overlays()).toHaveLength(2);
});
