/**
 * plugins/storage-dm through the host exec seam: this machine has no
 * device-mapper, so every losetup/blockdev/dmsetup goes to a recording fake
 * Exec and the tests assert the exact commands, their order, that the
 * global lock (a real flock on BANGER_HOME/dm.lock) is held during each one,
 * teardown order, teardown from a scratch handles.json after a crash, undo
 * when `dmsetup create` fails, and that concurrent starts never interleave.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setupPlugins } from "../../src/core/loader.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { emptyHandles, type VMHandles, type VMRecord } from "../../src/shared/model.ts";
import type { BangerPlugin } from "../../src/core/plugin.ts";
import { readHandlesFile, writeHandlesFile } from "../../src/handles/file.ts";
import { createClock } from "../../src/host/clock.ts";
import { createFileLocks } from "../../src/host/flock.ts";
import type { Host } from "../../src/host/types.ts";
import type { BootConfig } from "../../src/vmm/driver.ts";
import storage from "../../plugins/storage/index.ts";
import { cowPathFor, createStorageDmPlugin, probeDeviceMapper } from "../../plugins/storage-dm/index.ts";
import { GlobalLock } from "../../plugins/storage-dm/lock.ts";
import { cowBytesFor } from "../../plugins/storage-dm/snapshot.ts";
import { caught, engineWorld, fakeClock, fakeExec, fakeFS, fakeHost, fakeLocks, sampleImage, sampleVM, testLogger, type FakeExec, recordingOp } from "../helpers/fakes.ts";
import { Providers } from "../../src/core/providers.ts";

const ROOTFS = sampleImage().rootfsPath;
const ORIGIN_BYTES = 1073741824;
const SECTORS = ORIGIN_BYTES / 512;
const IDENTITY = "2049:131:1073741824:1767225600";
const DM_TOOLS = new Set(["losetup", "dmsetup", "blockdev"]);

const homes: string[] = [];
const stores: { cleanup(): void }[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
  while (homes.length) rmSync(homes.pop()!, { recursive: true, force: true });
});
function tempHome(): string {
  const h = mkdtempSync(join(tmpdir(), "banger-dm-"));
  homes.push(h);
  return h;
}

/**
 * Script a host with device-mapper: losetup --find hands out /dev/loop0,1,…
 * and remembers the file, so the BACK-FILE query answers like the kernel.
 * Every loop/dm command checks, with a second open of the lock file, that
 * the lock is held right then.
 */
function dmExec(exec: FakeExec, lockPath: string, opts: { delayMs?: number } = {}) {
  const attached = new Map<string, string>();
  let next = 0;
  const violations: string[] = [];
  let checked = 0;
  exec.on("stat -L -c %s", { stdout: `${ORIGIN_BYTES}\n` });
  exec.on("stat -L -c %d:%i:%s:%Y", { stdout: `${IDENTITY}\n` });
  exec.on("losetup --find --show", async (_c, args) => {
    const dev = `/dev/loop${next++}`;
    attached.set(dev, args.at(-1)!);
    return { stdout: `${dev}\n` };
  });
  exec.on("losetup --noheadings --output BACK-FILE", async (_c, args) => {
    const f = attached.get(args.at(-1)!);
    return f ? { stdout: `${f}\n` } : { exitCode: 1, stderr: "losetup: No such device" };
  });
  exec.on("losetup -d", async (_c, args) => {
    attached.delete(args[1]!);
    return {};
  });
  exec.on("blockdev --getsz", { stdout: `${SECTORS}\n` });
  const run = exec.run.bind(exec);
  exec.run = async (cmd, args, o) => {
    if (DM_TOOLS.has(cmd)) {
      checked++;
      const probe = createFileLocks().tryLock(lockPath);
      if (probe) {
        probe();
        violations.push([cmd, ...args].join(" "));
      }
      // yield for real so a concurrent caller would get the chance to interleave
      if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    }
    return run(cmd, args, o);
  };
  return { attached, violations, checked: () => checked };
}

/** The engine over fakes with the real built-in storage plugins (dm first, like plugins/index.ts) and a real flock. */
async function world(o: { dm?: boolean; ids?: string[]; delayMs?: number; plugins?: BangerPlugin[] } = {}) {
  const home = tempHome();
  const paths = { home, imagesDir: join(home, "images"), vmsDir: join(home, "vms") };
  const ids = [...(o.ids ?? ["vm0001", "vm0002", "vm0003"])];
  const w = engineWorld({ paths, newId: () => ids.shift()!, fakeProviders: { storage: [] } });
  stores.push(w.ts);
  w.host.locks = createFileLocks() as never;
  const lockPath = join(home, "dm.lock");
  const dm = dmExec(w.host.exec, lockPath, { delayMs: o.delayMs });
  const plugins = o.plugins ?? [createStorageDmPlugin({ probe: async () => ({ usable: o.dm ?? true, reason: "test" }) }), storage];
  await setupPlugins(
    plugins.map((plugin) => ({ plugin, source: "builtin" })),
    { hooks: w.hooks, host: w.host, paths, log: w.log, store: w.ts.store, drivers: new Map(), providers: w.providers },
  );
  return { ...w, engine: w.make(), paths, lockPath, dm };
}

const dmLines = (exec: FakeExec) => exec.lines().filter((l) => DM_TOOLS.has(l.split(" ")[0]!));

function attachLines(vm: VMRecord, base: string, cow: string): string[] {
  return [
    `losetup --find --show --read-only ${ROOTFS}`,
    `losetup --find --show ${cowPathFor(vm)}`,
    `blockdev --getsz ${base}`,
    `dmsetup create banger-${vm.id} --table 0 ${SECTORS} snapshot ${base} ${cow} P 8`,
  ];
}
function teardownLines(vm: VMRecord, base: string, cow: string): string[] {
  return [
    `dmsetup remove --retry banger-${vm.id}`,
    `losetup --noheadings --output BACK-FILE ${cow}`,
    `losetup -d ${cow}`,
    `losetup --noheadings --output BACK-FILE ${base}`,
    `losetup -d ${base}`,
  ];
}

describe("storage-dm: create", () => {
  test("device-mapper usable → a sparse COW file sized for the image; the copy storage does nothing", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    expect(vm.spec.storage).toBe("dm");
    expect(w.ts.store.getVM("web")!.spec.storage).toBe("dm");
    expect(vm.runtime.systemOverlay).toBe(join(vm.runtime.vmDir, "system.cow"));
    expect(w.host.exec.lines()).toEqual([
      `stat -L -c %s ${ROOTFS}`, // usable for this VM? (a snapshot is exactly its image's size)
      `stat -L -c %s ${ROOTFS}`,
      `truncate -s ${cowBytesFor(ORIGIN_BYTES)} ${cowPathFor(vm)}`,
      `stat -L -c %d:%i:%s:%Y ${ROOTFS}`,
    ]);
    // never smaller than the origin plus the persistent store's metadata (1/256) and header
    expect(cowBytesFor(ORIGIN_BYTES)).toBe(ORIGIN_BYTES + ORIGIN_BYTES / 256 + 1048576);
    expect(w.host.fs.files.get(join(vm.runtime.vmDir, "system.cow.base"))).toBe(`${IDENTITY}\n`);
  });

  test("no device-mapper → the copy storage makes the system disk and storage-dm runs nothing", async () => {
    const w = await world({ dm: false });
    const vm = await w.engine.create({ name: "web" });
    expect(vm.spec.storage).toBe("copy");
    expect(vm.runtime.systemOverlay).toBe(join(vm.runtime.vmDir, "system.img"));
    expect(w.host.exec.lines()).toEqual([`cp --sparse=always --reflink=auto ${ROOTFS} ${vm.runtime.systemOverlay}`]);
    // asked for by name, it is refused with the reason, before any work
    const err = await caught(w.engine.create({ name: "asked", storage: "dm" }));
    expect([err.code, err.exitCode, err.message]).toEqual(["E_BAD_REQUEST", 2, "storage dm cannot be used for this vm: test"]);
    expect(w.ts.store.getVM("asked")).toBeNull();
  });

  test("--storage copy where device-mapper works: a copy, and storage-dm runs nothing for it (not even at start and stop)", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web", storage: "copy" });
    expect([vm.spec.storage, vm.runtime.systemOverlay]).toEqual(["copy", join(vm.runtime.vmDir, "system.img")]);
    await w.engine.start("web");
    await w.engine.stop("web");
    expect(dmLines(w.host.exec)).toEqual([]);
    const err = await caught(w.engine.create({ name: "other", storage: "zfs" }));
    expect([err.code, err.message]).toEqual(["E_BAD_REQUEST", 'unknown storage "zfs" (known: dm, copy)']);
  });

  test("--disk other than the image size → copy storage (a snapshot is its origin's size)", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web", diskMiB: 2048 });
    expect(vm.spec.storage).toBe("copy");
    expect(vm.runtime.systemOverlay).toBe(join(vm.runtime.vmDir, "system.img"));
    expect(w.host.exec.lines().some((l) => l.startsWith("truncate") && l.endsWith("system.cow"))).toBe(false);
    expect(w.log.of("debug").join("\n")).toContain("vm web: storage copy (dm: --disk 2048M differs from the image size");
    const err = await caught(w.engine.create({ name: "asked", diskMiB: 2048, storage: "dm" }));
    expect(err.message).toStartWith("storage dm cannot be used for this vm: --disk 2048M differs from the image size");
  });
});

describe("storage-dm: start and stop", () => {
  test("start: base loop, COW loop, snapshot target in that order, each under the lock; the driver gets /dev/mapper raw", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web", workDiskMiB: 64 });
    w.host.exec.runs.length = 0;
    await w.engine.start("web");
    expect(dmLines(w.host.exec)).toEqual(attachLines(vm, "/dev/loop0", "/dev/loop1"));
    expect(w.dm.checked()).toBe(4);
    expect(w.dm.violations).toEqual([]);
    expect(w.driver.launches[0]!.boot.disks).toEqual([
      { path: `/dev/mapper/banger-${vm.id}`, format: "raw" },
      { path: join(vm.runtime.vmDir, "work.img"), format: "raw" },
    ]);
    const h = w.engine.cache.get(vm.id)!;
    expect(h).toMatchObject({ baseLoop: "/dev/loop0", cowLoop: "/dev/loop1", dmName: `banger-${vm.id}`, dmDev: `/dev/mapper/banger-${vm.id}` });
    expect(h.extra.storage).toBe("dm");
    // the lock is free again once the work is done
    const again = createFileLocks().tryLock(w.lockPath);
    expect(again).not.toBeNull();
    again!();
  });

  test("handles.json names each device as soon as it exists (before the VMM launches)", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    const writes = w.host.fs.writes.filter((x) => x.path === join(vm.runtime.vmDir, "handles.json")).map((x) => JSON.parse(x.data) as VMHandles);
    // three from storage-dm before launch, then the engine's two
    expect(writes.slice(0, 3).map((h) => [h.baseLoop, h.cowLoop, h.dmName, h.pid])).toEqual([
      ["/dev/loop0", "", "", 0],
      ["/dev/loop0", "/dev/loop1", "", 0],
      ["/dev/loop0", "/dev/loop1", `banger-${vm.id}`, 0],
    ]);
    expect(writes.at(-1)!.pid).toBeGreaterThan(0);
  });

  test("the copy storage records itself in the handles and hands its file to the driver", async () => {
    const w = await world({ dm: false });
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    expect(w.engine.cache.get(vm.id)!.extra.storage).toBe("copy");
    expect(w.driver.launches[0]!.boot.disks).toEqual([{ path: join(vm.runtime.vmDir, "system.img"), format: "raw" }]);
    expect(dmLines(w.host.exec)).toEqual([]);
  });

  test("stop: dmsetup remove → losetup -d COW → losetup -d base, under the lock", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    w.host.exec.runs.length = 0;
    const stopped = await w.engine.stop("web");
    expect(stopped.runtime.lastError).toBe("");
    expect(dmLines(w.host.exec)).toEqual(teardownLines(vm, "/dev/loop0", "/dev/loop1"));
    expect(w.dm.violations).toEqual([]);
    expect(w.dm.attached.size).toBe(0);
    // stop → start reuses the same COW file: the snapshot is persistent
    await w.engine.start("web");
    expect([...w.dm.attached.values()]).toEqual([ROOTFS, cowPathFor(vm)]);
  });

  test("image changed since create → E_STATE before any loop is made", async () => {
    const w = await world();
    await w.engine.create({ name: "web" });
    w.host.exec.on("stat -L -c %d:%i:%s:%Y", { stdout: "2049:999:1073741824:1767300000\n" });
    const err = await caught(w.engine.start("web"));
    expect(err.code).toBe("E_STATE");
    expect(err.message).toContain("changed since the VM was created");
    expect(dmLines(w.host.exec)).toEqual([]);
  });
});

describe("storage-dm: failure and crash", () => {
  test("dmsetup create fails → both loops undone in reverse, handles cleared, state error, lock released", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    w.host.exec.on("dmsetup create", { exitCode: 1, stderr: "device-mapper: reload ioctl failed: Invalid argument" });
    const err = await caught(w.engine.start("web"));
    expect(err.message).toContain("storage-dm:vm:start:before: dmsetup create");
    expect(err.message).toContain("Invalid argument");
    expect(dmLines(w.host.exec)).toEqual([
      ...attachLines(vm, "/dev/loop0", "/dev/loop1"),
      "losetup --noheadings --output BACK-FILE /dev/loop1",
      "losetup -d /dev/loop1",
      "losetup --noheadings --output BACK-FILE /dev/loop0",
      "losetup -d /dev/loop0",
    ]);
    expect(w.dm.violations).toEqual([]);
    expect(w.dm.attached.size).toBe(0);
    expect(w.driver.launches).toEqual([]);
    expect(w.ts.store.getVM("web")!.runtime.state).toBe("error");
    // what is left on disk names nothing to tear down
    const file = await readHandlesFile(w.host.fs, vm.runtime.vmDir);
    expect(file.handles ? [file.handles.baseLoop, file.handles.cowLoop, file.handles.dmName] : ["", "", ""]).toEqual(["", "", ""]);
    const free = createFileLocks().tryLock(w.lockPath);
    expect(free).not.toBeNull();
    free!();
  });

  test("launch fails after the snapshot is up → undo tears it down once, in reverse", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    w.driver.failLaunch = new Error("qemu exploded");
    await caught(w.engine.start("web"));
    expect(dmLines(w.host.exec)).toEqual([...attachLines(vm, "/dev/loop0", "/dev/loop1"), ...teardownLines(vm, "/dev/loop0", "/dev/loop1")]);
    expect(w.dm.attached.size).toBe(0);
    // the file left behind no longer names devices a later VM may be handed
    const left = (await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles!;
    expect([left.baseLoop, left.cowLoop, left.dmName, left.dmDev]).toEqual(["", "", "", ""]);
  });

  test("daemon killed while the VM runs, VM died too → the next daemon's reconcile tears down from handles.json", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    const pid = w.engine.cache.get(vm.id)!.pid;
    w.host.procs.table.delete(pid); // the VM process is gone; the daemon is "restarted" below with an empty cache
    w.host.exec.runs.length = 0;
    const fresh = w.make();
    const out = await fresh.reconcile();
    expect(out).toEqual([{ vm: "web", action: "demoted", source: "scratch", cleanupErrors: [] }]);
    expect(dmLines(w.host.exec)).toEqual(teardownLines(vm, "/dev/loop0", "/dev/loop1"));
    expect(w.dm.attached.size).toBe(0);
    expect(w.dm.violations).toEqual([]);
  });

  test("crash between dmsetup create and launch: a scratch handles.json alone is enough to tear down", async () => {
    const w = await world();
    const vm = sampleVM({ id: "abc123", name: "ghost", state: "starting", vmsDir: w.paths.vmsDir, storage: "dm" });
    w.ts.store.upsertVM(vm);
    const cow = join(vm.runtime.vmDir, "system.cow");
    w.dm.attached.set("/dev/loop7", ROOTFS).set("/dev/loop8", cow);
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, {
      ...emptyHandles(),
      baseLoop: "/dev/loop7",
      cowLoop: "/dev/loop8",
      dmName: "banger-abc123",
      dmDev: "/dev/mapper/banger-abc123",
      extra: { storage: "dm", "dm.baseFile": ROOTFS, "dm.cowFile": cow },
    });
    const out = await w.engine.reconcile();
    expect(out[0]).toMatchObject({ vm: "ghost", action: "demoted", cleanupErrors: [] });
    expect(dmLines(w.host.exec)).toEqual(teardownLines(vm, "/dev/loop7", "/dev/loop8"));
    expect(w.dm.attached.size).toBe(0);
    expect(w.host.fs.files.has(join(vm.runtime.vmDir, "handles.json"))).toBe(false);
  });

  test("after a reboot the loop numbers belong to someone else → left alone; a dm target already gone counts as removed", async () => {
    const w = await world();
    const vm = sampleVM({ id: "abc124", name: "ghost", state: "running", vmsDir: w.paths.vmsDir, storage: "dm" });
    w.ts.store.upsertVM(vm);
    w.dm.attached.set("/dev/loop7", "/var/lib/other/disk.img"); // loop8: not attached at all
    w.host.exec.on("dmsetup remove", { exitCode: 1, stderr: "Device banger-abc124 not found" });
    w.host.exec.on("dmsetup info", { exitCode: 1 });
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, {
      ...emptyHandles(),
      baseLoop: "/dev/loop7",
      cowLoop: "/dev/loop8",
      dmName: "banger-abc124",
      extra: { "dm.baseFile": ROOTFS, "dm.cowFile": join(vm.runtime.vmDir, "system.cow") },
    });
    const out = await w.engine.reconcile();
    expect(out[0]!.cleanupErrors).toEqual([]);
    expect(dmLines(w.host.exec)).toEqual([
      "dmsetup remove --retry banger-abc124",
      "dmsetup info banger-abc124",
      "losetup --noheadings --output BACK-FILE /dev/loop8",
      "losetup --noheadings --output BACK-FILE /dev/loop7",
    ]);
    expect(w.dm.attached.get("/dev/loop7")).toBe("/var/lib/other/disk.img");
    expect(w.log.of("warn").join("\n")).toContain("/dev/loop7 is no longer attached to");
  });

  test("a dm target that will not go away: the error says how to remove it, the loops are still released", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    w.host.exec.on("dmsetup remove", { exitCode: 1, stderr: "device-mapper: remove ioctl failed: Device or resource busy" });
    const stopped = await w.engine.stop("web");
    expect(stopped.runtime.lastError).toContain(`dmsetup remove banger-${vm.id} failed: device-mapper: remove ioctl failed: Device or resource busy (remove it by hand: dmsetup remove banger-${vm.id})`);
    expect(w.dm.attached.size).toBe(0);
  });
});

describe("storage-dm: the global lock", () => {
  test("two starts at once in one daemon: their loop/dm commands never interleave", async () => {
    const w = await world({ delayMs: 5 });
    const a = await w.engine.create({ name: "a" });
    const b = await w.engine.create({ name: "b" });
    await Promise.all([w.engine.start("a"), w.engine.start("b")]);
    expect(dmLines(w.host.exec)).toEqual([...attachLines(a, "/dev/loop0", "/dev/loop1"), ...attachLines(b, "/dev/loop2", "/dev/loop3")]);
    expect(w.dm.violations).toEqual([]);
  });

  test("two processes (separate mutexes, one lock file): the flock alone keeps their sequences apart", async () => {
    const home = tempHome();
    const exec = fakeExec();
    const lockPath = join(home, "dm.lock");
    const dm = dmExec(exec, lockPath, { delayMs: 5 });
    const mk = () => {
      const host = { ...fakeHost(), exec, clock: createClock(), locks: createFileLocks() } as Host;
      return { host, hooks: new HookEngine() };
    };
    const procs = [mk(), mk()];
    const vms = [sampleVM({ id: "p1", name: "p1", vmsDir: join(home, "vms"), storage: "dm" }), sampleVM({ id: "p2", name: "p2", vmsDir: join(home, "vms"), storage: "dm" })];
    for (const [i, p] of procs.entries()) {
      const plugin = createStorageDmPlugin({ probe: async () => ({ usable: true, reason: "test" }) });
      const store = { listVMs: () => vms, getImage: () => sampleImage() };
      await setupPlugins([{ plugin, source: "builtin" }], { hooks: p.hooks, host: p.host, paths: { home, imagesDir: "", vmsDir: "" }, log: testLogger(), store, drivers: new Map(), providers: new Providers() });
      vms[i]!.runtime.systemOverlay = cowPathFor(vms[i]!);
    }
    const boot = (): BootConfig => ({ kernelPath: "", initrdPaths: [], kernelArgs: [], disks: [], netArgs: [] });
    await Promise.all(procs.map((p, i) => p.hooks.run("vm:start:before", { vm: vms[i]!, boot: boot(), handles: emptyHandles(), progress: () => {}, op: recordingOp() })));
    const lines = dmLines(exec);
    const first = lines[1]!.endsWith(cowPathFor(vms[0]!)) ? 0 : 1;
    expect(lines).toEqual([...attachLines(vms[first]!, "/dev/loop0", "/dev/loop1"), ...attachLines(vms[1 - first]!, "/dev/loop2", "/dev/loop3")]);
    expect(dm.violations).toEqual([]);
  });

  test("held by another process for too long → E_TIMEOUT naming the lock file; runs nothing", async () => {
    const locks = fakeLocks();
    const release = locks.tryLock("/h/dm.lock")!;
    const lock = new GlobalLock({ locks, clock: fakeClock(), path: "/h/dm.lock", timeoutMs: 1000, pollMs: 100 });
    let ran = false;
    const err = await caught(lock.run(async () => void (ran = true)));
    expect(err.code).toBe("E_TIMEOUT");
    expect(err.message).toContain("/h/dm.lock");
    expect(ran).toBe(false);
    release();
    // and a failed holder does not wedge the queue
    expect(await lock.run(async () => 42)).toBe(42);
  });
});

describe("probeDeviceMapper", () => {
  const host = (files: string[], versionExit = 0) => {
    const exec = fakeExec().on("dmsetup version", { exitCode: versionExit, stderr: "/dev/mapper/control: open failed: Permission denied" });
    return { exec, fs: fakeFS(Object.fromEntries(files.map((f) => [f, ""]))) };
  };
  test("no /dev/mapper/control → not usable, nothing run", async () => {
    const h = host([]);
    expect(await probeDeviceMapper(h, {})).toEqual({ usable: false, reason: "/dev/mapper/control does not exist (device-mapper not available)" });
    expect(h.exec.lines()).toEqual([]);
  });
  test("no /dev/loop-control → not usable", async () => {
    expect((await probeDeviceMapper(host(["/dev/mapper/control"]), {})).reason).toBe("/dev/loop-control does not exist (no loop devices)");
  });
  test("dmsetup missing → not usable", async () => {
    const h = host(["/dev/mapper/control", "/dev/loop-control"]);
    h.exec.missing.add("dmsetup");
    expect((await probeDeviceMapper(h, {})).reason).toBe("dmsetup not found");
  });
  test("dmsetup version fails (no rights, no dm_mod) → not usable with its message", async () => {
    const r = await probeDeviceMapper(host(["/dev/mapper/control", "/dev/loop-control"], 1), {});
    expect(r).toEqual({ usable: false, reason: "dmsetup version failed: /dev/mapper/control: open failed: Permission denied" });
  });
  test("all there → usable; BANGER_STORAGE=copy turns it off", async () => {
    const all = ["/dev/mapper/control", "/dev/loop-control"];
    const h = host(all);
    expect(await probeDeviceMapper(h, {})).toEqual({ usable: true, reason: "device-mapper usable" });
    expect(h.exec.lines()).toEqual(["dmsetup version"]);
    expect((await probeDeviceMapper(host(all), { BANGER_STORAGE: "copy" })).usable).toBe(false);
  });
});
