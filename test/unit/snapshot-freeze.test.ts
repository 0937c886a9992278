// The order of a snapshot's steps (src/core/snapshots.ts) with a driver that switches disks, on the engine with
// recording fakes: the freeze is the pause, the disks (switchDisk offered to the storage), the state save told
// whether the VM runs on, and the resume; a VM the user paused stays paused; a failed switch resumes the VM.
import { afterEach, expect, test } from "bun:test";
import { Snapshots } from "../../src/core/snapshots.ts";
import type { SaveOptions, VMMDriver } from "../../src/vmm/driver.ts";
import { caught, engineWorld } from "../helpers/fakes.ts";

const PATHS = { home: "/s", imagesDir: "/s/images", vmsDir: "/s/vms" };
const stores: { cleanup(): void }[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
});

async function world(o: { failSwitch?: boolean; prepare?: boolean } = {}) {
  let n = 0;
  const w = engineWorld({ paths: PATHS, newId: () => `id${++n}` });
  stores.push(w.ts);
  const d = w.driver as typeof w.driver & Pick<VMMDriver, "saveState" | "switchDisk"> & { liveSave: boolean };
  d.liveSave = true;
  d.switchDisk = async (vm, _h, index, overlay) => {
    d.calls.push(`switch ${vm.name} ${index} ${overlay}`);
    if (o.failSwitch) throw new Error("QMP GenericError: boom");
  };
  d.saveState = async (vm, _h, path, opts?: SaveOptions) => {
    d.calls.push(`save ${vm.name} runOn=${opts?.runOn}`);
    await w.host.fs.writeFile(path, "state");
    return { frozenMs: 0, finish: async () => void d.calls.push(`finish ${vm.name}`) };
  };
  if (o.prepare) {
    (d as VMMDriver).prepareSave = async (vm, h, path) => {
      d.calls.push(`prepare ${vm.name}`);
      return {
        save: (opts) => d.saveState!(vm, h, path, opts),
        abandon: async () => void d.calls.push(`abandon ${vm.name}`),
      };
    };
  }
  w.hooks.hook("storage", "vm:snapshot:before", ({ vm, live }) => void d.calls.push(`before ${vm.name} live=${live}`));
  w.hooks.hook("storage", "vm:snapshot", async ({ vm, disks, switchDisk }) => {
    d.calls.push(`disks ${vm.name}`);
    await switchDisk?.(0, "/s/vms/x/system-t.qcow2");
    disks.push("system-tb.img");
  });
  const engine = w.make();
  await engine.create({ name: "box" });
  await engine.start("box");
  d.calls.length = 0;
  return { w, d, engine, snaps: new Snapshots(engine) };
}

test("a running VM: pause, disks (switched), state save with runOn, resume, then the rest of the save", async () => {
  const { d, snaps } = await world();
  const s = await snaps.create("box", { name: "one" });
  expect(s).toMatchObject({ state: "ready", memory: true, disks: ["system-tb.img"] });
  expect(d.calls.map((c) => c.replace(/ \d+$/, ""))).toEqual(["before box live=true", "pause box", "disks box", "switch box 0 /s/vms/x/system-t.qcow2", "save box runOn=true", "resume box", "finish box"]);
});

test("a VM the user paused: saved with runOn false, never resumed", async () => {
  const { d, engine, snaps } = await world();
  await engine.pause("box");
  d.calls.length = 0;
  await snaps.create("box", { name: "p" });
  expect(d.calls).toEqual(["before box live=true", "disks box", "switch box 0 /s/vms/x/system-t.qcow2", "save box runOn=false", "finish box"]);
  expect(engine.getVM("box").runtime.state).toBe("paused");
});

test("a failed switch: no state save, the VM resumed, no snapshot", async () => {
  const { d, snaps } = await world({ failSwitch: true });
  const err = await caught(snaps.create("box", { name: "bad" }));
  expect(err.message).toContain("boom");
  expect(d.calls.map((c) => c.replace(/ \d+$/, ""))).toEqual(["before box live=true", "pause box", "disks box", "switch box 0 /s/vms/x/system-t.qcow2", "resume box"]);
  expect(snaps.list()).toEqual([]);
});

test("a driver that prepares its save: prepared after the storage's before-step and before the pause, saved in the freeze; abandoned (after the resume) when the freeze fails", async () => {
  const { d, snaps } = await world({ prepare: true });
  await snaps.create("box", { name: "one" });
  expect(d.calls.map((c) => c.replace(/ \d+$/, ""))).toEqual(["before box live=true", "prepare box", "pause box", "disks box", "switch box 0 /s/vms/x/system-t.qcow2", "save box runOn=true", "resume box", "finish box"]);
  const bad = await world({ prepare: true, failSwitch: true });
  expect((await caught(bad.snaps.create("box", { name: "bad" }))).message).toContain("boom");
  expect(bad.d.calls.map((c) => c.replace(/ \d+$/, ""))).toEqual(["before box live=true", "prepare box", "pause box", "disks box", "switch box 0 /s/vms/x/system-t.qcow2", "resume box", "abandon box"]);
  expect(bad.snaps.list()).toEqual([]);
});

test("a live snapshot whose save fails and leaves the guest unable to run (guestStuck): the VM is stopped with the reason, and the error says so and how to start it; a guest that runs on is left running", async () => {
  const { w, d, engine, snaps } = await world();
  d.saveState = async () => ({ frozenMs: 0, finish: async () => { throw new Error("qemu state save failed: Unable to write to socket"); } });
  let stuck: string | null = null;
  (d as VMMDriver).guestStuck = async () => stuck;
  const first = await caught(snaps.create("box", { name: "cut" }));
  expect(first.message).toBe("qemu state save failed: Unable to write to socket");
  expect(engine.getVM("box").runtime.state).toBe("running");
  stuck = "its guest cannot run again: a background state save failed and QEMU left its memory write-protected";
  const second = await caught(snaps.create("box", { name: "cut2" }));
  expect(second.message).toBe(`qemu state save failed: Unable to write to socket; vm box was stopped, ${stuck} (start it again: \`banger vm start box\`)`);
  expect(engine.getVM("box").runtime).toMatchObject({ state: "stopped", lastError: stuck });
  expect(d.kills).toHaveLength(1);
  expect(snaps.list()).toEqual([]);
  expect(w.log.of("warn")).toContain(`vm box: stopped: ${stuck}`);
});
