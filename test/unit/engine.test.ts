import { afterEach, describe, expect, test } from "bun:test";
import { rawDb } from "../helpers/fakes.ts";
import { join } from "node:path";
import { Engine, RESTORE_PENDING } from "../../src/core/engine.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { emptyHandles, type VMHandles, type VMRecord } from "../../src/shared/model.ts";
import { readHandlesFile, writeHandlesFile } from "../../src/handles/file.ts";
import {
  caught,
  engineWorld,
  sampleVM,
  testLogger,
  type FakeDriver,
  type FakeHost,
  type TestStore,
} from "../helpers/fakes.ts";

const PATHS = { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" };

const stores: TestStore[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
});

interface World {
  host: FakeHost;
  driver: FakeDriver;
  ts: TestStore;
  hooks: HookEngine;
  engine: Engine;
  log: ReturnType<typeof testLogger>;
  /** A new Engine on the same store/host/driver: what a daemon restart looks like. */
  restart(): Engine;
}

function world(): World {
  let n = 0;
  const w = engineWorld({ paths: PATHS, newId: () => `id${String(++n).padStart(4, "0")}`, stopTimeoutMs: 1000 });
  stores.push(w.ts);
  return { host: w.host, driver: w.driver, ts: w.ts, hooks: w.hooks, engine: w.make(), log: w.log, restart: w.make };
}

const handlesPath = (vm: VMRecord) => join(vm.runtime.vmDir, "handles.json");

describe("create", () => {
  test.each(["Bad_Name", "-x", "a".repeat(64), "", "UPPER", "has space", "dot.ted"])("rejects name %j with E_BAD_NAME (exit 2)", async (name) => {
    const w = world();
    const err = await caught(w.engine.create({ name }));
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_BAD_NAME");
    expect(err.exitCode).toBe(2);
    expect(err.httpStatus).toBe(400);
    expect(err.message).toContain("[a-z0-9][a-z0-9-]{0,62}");
    expect(w.ts.store.listVMs()).toEqual([]);
  });

  test("accepts a 63-character name and a digit-first name", async () => {
    const w = world();
    await w.engine.create({ name: "a".repeat(63) });
    await w.engine.create({ name: "0-vm" });
    expect(w.ts.store.listVMs().length).toBe(2);
  });

  test("a name that is another VM's id is taken (commands take either: `vm delete NAME` would reach that VM); a new id is never another VM's name", async () => {
    const w = world();
    const first = await w.engine.create({ name: "first" });
    const err = await caught(w.engine.create({ name: first.id }));
    expect([err.code, err.message]).toEqual(["E_NAME_TAKEN", `vm name already taken: ${first.id} is the id of vm first`]);
    // a VM named as the next id will be (this world's ids count up): that id is passed over
    const n = Number(first.id.slice(2));
    const next = `id${String(n + 2).padStart(4, "0")}`;
    const named = await w.engine.create({ name: next });
    const other = await w.engine.create({ name: "other" });
    expect(other.id).not.toBe(next);
    expect(w.ts.store.getVM(next)?.id).toBe(named.id);
  });

  test("unknown image → E_IMAGE_NOT_FOUND naming it", async () => {
    const w = world();
    const err = await caught(w.engine.create({ name: "vm", image: "nope" }));
    expect(err.code).toBe("E_IMAGE_NOT_FOUND");
    expect(err.message).toContain("nope");
    expect(w.host.fs.ops).toEqual([]);
  });

  test("a taken name → E_NAME_TAKEN; unknown driver → E_BAD_REQUEST; bad sizes → E_BAD_REQUEST", async () => {
    const w = world();
    await w.engine.create({ name: "vm" });
    expect((await caught(w.engine.create({ name: "vm" }))).code).toBe("E_NAME_TAKEN");
    const d = await caught(w.engine.create({ name: "other", driver: "firecracker" }));
    expect(d.code).toBe("E_BAD_REQUEST");
    expect(d.message).toContain("fake");
    expect((await caught(w.engine.create({ name: "m", memoryMiB: 8 }))).code).toBe("E_BAD_REQUEST");
    expect((await caught(w.engine.create({ name: "c", cpus: 0 }))).code).toBe("E_BAD_REQUEST");
    expect(w.ts.store.listVMs().map((v) => v.name)).toEqual(["vm"]);
  });

  test("more vCPUs than the VMM runs, or more memory than the host has, is refused at create (not by the VMM at the first start)", async () => {
    const w = world();
    (w.driver as { maxCpus?: number }).maxCpus = 4;
    w.host.fs.files.set("/proc/meminfo", "MemTotal:        2097152 kB\nMemAvailable:    1048576 kB\n");
    const cpus = await caught(w.engine.create({ name: "c", cpus: 5 }));
    expect([cpus.code, cpus.message]).toEqual(["E_BAD_REQUEST", "cpus 5: the fake driver runs at most 4"]);
    const mem = await caught(w.engine.create({ name: "m", memoryMiB: 2049 }));
    expect([mem.code, mem.message]).toEqual(["E_BAD_REQUEST", "memory 2049 MiB is more than the host has (2048 MiB)"]);
    // at the limits: made (memory the host has but not free now is the start's to find)
    await w.engine.create({ name: "ok", cpus: 4, memoryMiB: 2048 });
    expect(w.ts.store.listVMs().map((v) => v.name)).toEqual(["ok"]);
  });

  test("network: the driver's first mode by default; a mode the driver cannot attach → E_BAD_REQUEST naming what it supports", async () => {
    const w = world();
    expect((await w.engine.create({ name: "plain" })).spec.net).toBe("user");
    expect((await w.engine.create({ name: "tapped", net: "tap" })).spec.net).toBe("tap");
    Object.assign(w.driver, { nets: ["tap"] }); // a Firecracker-like VMM: no user-mode networking
    expect((await w.engine.create({ name: "fc" })).spec.net).toBe("tap");
    const e = await caught(w.engine.create({ name: "fc-user", net: "user" }));
    expect(e.code).toBe("E_BAD_REQUEST");
    expect(e.message).toBe("fake cannot use --net user (it supports: tap)");
    expect(w.ts.store.listVMs().map((v) => v.name).sort()).toEqual(["fc", "plain", "tapped"]);
  });

  test("success: row saved in state created, VMDir made, vm:create sees the row and its changes persist", async () => {
    const w = world();
    let seenInStore: VMRecord | null = null;
    w.hooks.hook("ports", "vm:create", ({ vm }) => {
      seenInStore = w.ts.store.getVM(vm.id);
      vm.runtime.sshPort = 22001;
      vm.runtime.sshHost = "127.0.0.1";
    });
    const vm = await w.engine.create({ name: "web", cpus: 2, memoryMiB: 512 });
    expect(seenInStore).not.toBeNull();
    expect(vm.runtime.state).toBe("created");
    expect(vm.runtime.vmDir).toBe("/state/vms/id0001");
    expect(vm.runtime.apiSockPath).toBe("/state/vms/id0001/api.sock");
    expect(w.host.fs.dirs.has(vm.runtime.vmDir)).toBe(true);
    const row = w.ts.store.getVM("web")!;
    expect(row.spec).toMatchObject({ cpus: 2, memoryMiB: 512, image: "default", driver: "fake" });
    expect(row.runtime.sshPort).toBe(22001);
  });

  test("a vm:create failure leaves no row and no VMDir, and unwinds earlier undos in reverse", async () => {
    const w = world();
    const seq: string[] = [];
    w.hooks.hook("disk", "vm:create", () => {
      seq.push("disk");
      return () => void seq.push("undo disk");
    });
    w.hooks.hook("keys", "vm:create", () => {
      seq.push("keys");
      return () => void seq.push("undo keys");
    });
    const offQuota = w.hooks.hook("quota", "vm:create", () => {
      throw new Error("out of ports");
    });
    const err = await caught(w.engine.create({ name: "doomed" }));
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toBe("quota:vm:create: out of ports");
    expect(seq).toEqual(["disk", "keys", "undo keys", "undo disk"]);
    expect(w.ts.store.getVM("doomed")).toBeNull();
    expect(w.host.fs.dirs.size).toBe(0);
    expect(w.host.fs.ops).toEqual(["mkdirp /state/vms/id0001", "rmrf /state/vms/id0001"]);
    // the name is free again
    offQuota();
    expect((await w.engine.create({ name: "doomed" })).name).toBe("doomed");
  });

  test("an undo that fails rides along on the first error, never replacing it", async () => {
    const w = world();
    w.hooks.hook("disk", "vm:create", () => () => {
      throw new Error("rm failed");
    });
    w.hooks.hook("quota", "vm:create", () => {
      throw new Error("first");
    });
    const err = await caught(w.engine.create({ name: "x" }));
    expect(err.message).toBe("quota:vm:create: first");
    expect(err.undoFailures).toEqual(["disk:vm:create: rm failed"]);
    expect(w.log.of("warn")).toEqual(["vm create x: undo disk:vm:create: rm failed"]);
  });
});

describe("pooled guest connections", () => {
  test("stop, restart, delete and a VM found dead drop the VM's pooled connection, from the engine (any caller)", async () => {
    let n = 0;
    const dropped: string[] = [];
    const w = engineWorld({ paths: PATHS, newId: () => `id${String(++n).padStart(4, "0")}`, stopTimeoutMs: 1000, dropConnection: (id) => void dropped.push(id) });
    stores.push(w.ts);
    const engine = w.make();
    const vm = await engine.create({ name: "pooled" });
    await engine.start("pooled");
    expect(dropped).toEqual([]);
    await engine.stop("pooled");
    expect(dropped).toEqual([vm.id]);
    await engine.restart("pooled");
    expect(dropped).toEqual([vm.id, vm.id]);
    // the process dies under the daemon: noticing it drops the connection too
    w.host.procs.table.clear();
    await engine.noticeExit(vm.id);
    expect(dropped.length).toBe(3);
    await engine.delete("pooled");
    expect(dropped).toEqual([vm.id, vm.id, vm.id, vm.id]);
  });

  test("a stop on purpose says why to what it cut (cutSince a mark) and, while it runs, to its vm:cleanup hooks; a VM that died by itself has no why", async () => {
    const w = world();
    const { engine, hooks } = w;
    const a = await engine.create({ name: "a" });
    const b = await engine.create({ name: "b" });
    const seen: (string | null)[] = [];
    hooks.hook("t", "vm:cleanup", ({ vm }) => void seen.push(engine.stoppingBecause(vm.id)));
    // stopping a VM that is not running cuts nothing
    const m0 = engine.cutMark();
    await engine.stop("a");
    expect(engine.cutSince(a.id, m0)).toBeNull();
    await engine.start("a");
    await engine.start("b");
    const m1 = engine.cutMark();
    await engine.restart("a");
    expect([engine.cutSince(a.id, m1), engine.cutSince(b.id, m1)]).toEqual(["it was restarted", null]);
    const m2 = engine.cutMark();
    expect(engine.cutSince(a.id, m2)).toBeNull();
    await engine.stop("a", { why: "it was rolled back to a@s1" });
    await engine.stop("b");
    expect([engine.cutSince(a.id, m2), engine.cutSince(b.id, m2)]).toEqual(["it was rolled back to a@s1", "it was stopped"]);
    expect(seen).toEqual(["", "it was restarted", "it was rolled back to a@s1", ""]);
    expect(engine.stoppingBecause(a.id)).toBeNull();
    // dead by itself: cleanup runs with no why
    await engine.start("b");
    const m3 = engine.cutMark();
    w.host.procs.table.clear();
    await engine.noticeExit(b.id);
    expect([engine.cutSince(b.id, m3), seen.at(-1)]).toEqual([null, null]);
    const m4 = engine.cutMark();
    await engine.delete("a");
    expect(engine.cutSince(a.id, m4)).toBeNull(); // a was stopped already
  });
});

describe("start", () => {
  test("runs hooks around the launch, writes handles.json, seeds the cache, state running", async () => {
    const w = world();
    const seq: string[] = [];
    w.hooks.hook("net", "vm:start:before", ({ boot, handles }) => {
      seq.push("before");
      boot.kernelArgs.push("console=ttyS0");
      boot.netArgs.push("-netdev", "user,id=n0");
      handles.tapDevice = "tap-web";
    });
    const origLaunch = w.driver.launch;
    w.driver.launch = (vm, boot) => {
      seq.push("launch");
      return origLaunch(vm, boot);
    };
    w.hooks.hook("ssh", "vm:start:after", async ({ handles, progress }) => {
      seq.push("after");
      progress("waiting for ssh");
      handles.extra["ssh:ready"] = "1";
      // the file and cache already exist while after-hooks run
      expect(w.host.fs.files.has("/state/vms/id0001/handles.json")).toBe(true);
    });
    const vm = await w.engine.create({ name: "web" });
    const progress: string[] = [];
    const started = await w.engine.start("web", (m) => progress.push(m));

    expect(seq).toEqual(["before", "launch", "after"]);
    expect(progress).toEqual(["launching fake", "waiting for ssh"]);
    expect(started.runtime.state).toBe("running");
    expect(w.ts.store.getVM("web")!.runtime.state).toBe("running");
    expect(w.driver.launches[0]!.boot).toEqual({
      kernelPath: "/img/default/vmlinuz",
      initrdPaths: ["/img/default/initrd.img"],
      kernelArgs: ["console=ttyS0"],
      disks: [],
      netArgs: ["-netdev", "user,id=n0"],
    });

    expect(w.driver.kills).toEqual([]);
    const file = await readHandlesFile(w.host.fs, vm.runtime.vmDir);
    expect(file.status).toBe("ok");
    expect(file.handles!.pid).toBeGreaterThan(0);
    expect(file.handles!.pidStartTime).toBeGreaterThan(0);
    expect(file.handles!.tapDevice).toBe("tap-web");
    expect(file.handles!.extra).toEqual({ "ssh:ready": "1" });
    expect(w.engine.cache.get(vm.id)).toEqual(file.handles);
    expect(await w.engine.alive(started)).toBe(true);
  });

  test("handles never reach SQLite", async () => {
    const w = world();
    w.hooks.hook("net", "vm:start:before", ({ handles }) => void (handles.tapDevice = "tap-secret-name"));
    await w.engine.create({ name: "web" });
    await w.engine.start("web");
    const dump = JSON.stringify(rawDb(w.ts.store).query("SELECT * FROM vms").all());
    expect(dump).not.toContain("tap-secret-name");
    const cols = (rawDb(w.ts.store).query("PRAGMA table_info(vms)").all() as { name: string }[]).map((c) => c.name);
    expect(cols.some((c) => /pid|tap|loop|dm_/.test(c))).toBe(false);
  });

  test("starting an already-running VM launches nothing", async () => {
    const w = world();
    await w.engine.create({ name: "web" });
    await w.engine.start("web");
    await w.engine.start("web");
    expect(w.driver.launches.length).toBe(1);
  });

  test("concurrent starts of one VM launch once", async () => {
    const w = world();
    await w.engine.create({ name: "web" });
    await Promise.all([w.engine.start("web"), w.engine.start("web"), w.engine.start("web")]);
    expect(w.driver.launches.length).toBe(1);
  });

  test("unknown vm → E_VM_NOT_FOUND 'vm not found: x'", async () => {
    const w = world();
    const err = await caught(w.engine.start("x"));
    expect(err.code).toBe("E_VM_NOT_FOUND");
    expect(err.message).toBe("vm not found: x");
  });

  test("a failure in vm:start:after unwinds undos in reverse and kills the VM, each once; vm:cleanup does not run on top", async () => {
    const w = world();
    const seq: string[] = [];
    let killedHandles: VMHandles | null = null;
    w.hooks.hook("storage", "vm:start:before", ({ handles }) => {
      handles.baseLoop = "/dev/loop1";
      handles.cowLoop = "/dev/loop2";
      handles.dmName = "banger-web";
      seq.push("storage up");
      return () => void seq.push("undo storage");
    });
    w.hooks.hook("net", "vm:start:before", ({ handles }) => {
      handles.tapDevice = "tap-web";
      seq.push("net up");
      return () => void seq.push("undo net");
    });
    const origKill = w.driver.kill;
    w.driver.kill = (vm, h) => {
      seq.push(`kill ${h.pid}`);
      killedHandles = structuredClone(h);
      return origKill(vm, h);
    };
    w.hooks.hook("dns", "vm:start:after", () => {
      seq.push("dns up");
      return () => void seq.push("undo dns");
    });
    w.hooks.hook("ssh", "vm:start:after", () => {
      throw new BangerError("E_TIMEOUT", "guest ssh did not answer in 60s");
    });
    w.hooks.hook("storage", "vm:cleanup", () => void seq.push("cleanup"));

    const vm = await w.engine.create({ name: "web" });
    const err = await caught(w.engine.start("web"));
    expect(err.code).toBe("E_TIMEOUT");
    expect(err.message).toBe("ssh:vm:start:after: guest ssh did not answer in 60s");
    expect(err.undoFailures).toEqual([]);

    const pid = killedHandles!.pid;
    expect(pid).toBeGreaterThan(0);
    expect(seq).toEqual(["storage up", "net up", "dns up", "undo dns", `kill ${pid}`, "undo net", "undo storage"]);
    expect(w.driver.kills.length).toBe(1);
    expect(w.host.procs.table.has(pid)).toBe(false);
    expect(killedHandles).toMatchObject({ tapDevice: "tap-web", baseLoop: "/dev/loop1", cowLoop: "/dev/loop2", dmName: "banger-web" });

    const row = w.ts.store.getVM("web")!;
    expect(row.runtime.state).toBe("error");
    expect(row.runtime.lastError).toBe("ssh:vm:start:after: guest ssh did not answer in 60s");
    expect(w.host.fs.files.has(handlesPath(vm))).toBe(false);
    expect(w.engine.cache.get(vm.id)).toBeNull();
  });

  test("a failed start tears down each thing it made exactly once (recording handlers, deferred and returned undos)", async () => {
    const w = world();
    const count = new Map<string, number>();
    const hit = (k: string): void => void count.set(k, (count.get(k) ?? 0) + 1);
    w.hooks.hook("storage-like", "vm:start:before", ({ op }) => {
      op.defer("loops", () => hit("loops"));
      op.defer("dm", () => hit("dm"));
    });
    w.hooks.hook("net-like", "vm:start:before", () => () => hit("tap"));
    w.hooks.hook("guest-like", "vm:start:before", ({ op }) => op.defer("initrd", () => hit("initrd")));
    w.hooks.hook("late", "vm:start:after", ({ op }) => {
      op.defer("half-made thing", () => hit("half-made"));
      throw new Error("no ssh");
    });
    for (const plugin of ["storage-like", "net-like", "guest-like"]) w.hooks.hook(plugin, "vm:cleanup", () => hit(`cleanup ${plugin}`));
    const origKill = w.driver.kill;
    w.driver.kill = (vm, h) => (hit("kill"), origKill(vm, h));
    await w.engine.create({ name: "once" });
    const removesBefore = w.host.fs.ops.filter((o) => o.startsWith("rm") && o.includes("handles.json")).length;
    await caught(w.engine.start("once"));
    expect(Object.fromEntries(count)).toEqual({ "half-made": 1, kill: 1, initrd: 1, tap: 1, dm: 1, loops: 1 });
    expect(w.host.fs.ops.filter((o) => o.startsWith("rm") && o.includes("handles.json")).length - removesBefore).toBe(1);
    // and stopping the VM in error afterwards finds nothing left to kill
    expect(w.ts.store.getVM("once")!.runtime.state).toBe("error");
  });

  test("an undo that fails reaches the error (undoFailures), the daemon log and lastError; the first failure stays the message", async () => {
    const w = world();
    w.hooks.hook("scratch", "vm:start:before", ({ op }) => {
      op.defer("scratch disk", () => {
        throw new Error("device busy");
      });
    });
    w.hooks.hook("late", "vm:start:after", () => {
      throw new BangerError("E_TIMEOUT", "no ssh");
    });
    await w.engine.create({ name: "u" });
    const err = await caught(w.engine.start("u"));
    expect(err.code).toBe("E_TIMEOUT");
    expect(err.message).toBe("late:vm:start:after: no ssh");
    expect(err.undoFailures).toEqual(["scratch:vm:start:before: scratch disk: device busy"]);
    expect(w.log.of("warn")).toContain("vm start u: undo scratch:vm:start:before: scratch disk: device busy");
    expect(w.ts.store.getVM("u")!.runtime.lastError).toBe("late:vm:start:after: no ssh (undo also failed: scratch:vm:start:before: scratch disk: device busy)");
  });

  test("a launch failure unwinds the before-hooks, kills nothing, state error (no vm:cleanup on top)", async () => {
    const w = world();
    const seq: string[] = [];
    w.hooks.hook("net", "vm:start:before", ({ handles }) => {
      handles.tapDevice = "tap-x";
      return () => void seq.push("undo net");
    });
    w.hooks.hook("net", "vm:cleanup", ({ handles }) => void seq.push(`cleanup ${handles.tapDevice} pid=${handles.pid}`));
    w.driver.failLaunch = new Error("qemu: could not load kernel");
    await w.engine.create({ name: "web" });
    const err = await caught(w.engine.start("web"));
    expect(err.message).toBe("qemu: could not load kernel");
    expect(seq).toEqual(["undo net"]);
    expect(w.driver.kills).toEqual([]);
    expect(w.host.procs.kills).toEqual([]);
    const row = w.ts.store.getVM("web")!;
    expect(row.runtime.state).toBe("error");
    expect(row.runtime.lastError).toBe("qemu: could not load kernel");
  });

  test("handles.json cannot be written (disk full): nothing is launched, cleanup runs, state error with the reason; a retry works", async () => {
    const w = world();
    const vm = await w.engine.create({ name: "full" });
    w.host.fs.failWrites = /handles\.json$/;
    const err = await caught(w.engine.start("full"));
    expect(err.message).toContain("EIO: write");
    // the handles are written before launch, so a VM is never running without its scratch file
    expect(w.host.procs.table.size).toBe(0);
    const row = w.ts.store.getVM("full")!;
    expect(row.runtime.state).toBe("error");
    expect(row.runtime.lastError).toContain("EIO");
    expect(w.engine.cache.get(vm.id)).toBeNull();
    expect(await w.engine.alive(row)).toBe(false);
    w.host.fs.failWrites = undefined;
    await w.engine.start("full");
    expect(w.ts.store.getVM("full")!.runtime.state).toBe("running");
    expect(w.host.procs.table.size).toBe(1);
  });

  test("a VM in error can be started again; lastError is cleared", async () => {
    const w = world();
    w.driver.failLaunch = new Error("boom");
    await w.engine.create({ name: "web" });
    await caught(w.engine.start("web"));
    w.driver.failLaunch = undefined;
    const vm = await w.engine.start("web");
    expect(vm.runtime.state).toBe("running");
    expect(vm.runtime.lastError).toBe("");
  });
});

describe("stop and delete", () => {
  test("stop → driver.stop with the handles, vm:cleanup with the handles, state stopped, file and cache gone", async () => {
    const w = world();
    w.hooks.hook("net", "vm:start:before", ({ handles }) => void (handles.tapDevice = "tap-web"));
    const seq: string[] = [];
    w.hooks.hook("net", "vm:stop:before", ({ handles }) => void seq.push(`stop:before ${handles.tapDevice}`));
    w.hooks.hook("net", "vm:cleanup", ({ handles }) => void seq.push(`cleanup ${handles.tapDevice} ${handles.pid}`));
    w.hooks.hook("net", "vm:stop:after", ({ vm }) => void seq.push(`stop:after ${vm.runtime.state}`));
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    const pid = w.engine.cache.get(vm.id)!.pid;

    const stopped = await w.engine.stop("web");
    expect(w.driver.stops.length).toBe(1);
    expect(w.driver.stops[0]!.handles).toMatchObject({ pid, tapDevice: "tap-web" });
    expect(w.driver.stops[0]!.timeoutMs).toBe(1000);
    expect(w.driver.kills).toEqual([]);
    expect(seq).toEqual(["stop:before tap-web", `cleanup tap-web ${pid}`, "stop:after stopped"]);
    expect(stopped.runtime.state).toBe("stopped");
    expect(stopped.runtime.lastError).toBe("");
    expect(w.ts.store.getVM("web")!.runtime.state).toBe("stopped");
    expect(w.host.fs.files.has(handlesPath(vm))).toBe(false);
    expect(w.engine.cache.get(vm.id)).toBeNull();
    expect(w.host.procs.table.has(pid)).toBe(false);
  });

  test("stop --force kills; a failing graceful stop falls back to kill and is recorded", async () => {
    const w = world();
    await w.engine.create({ name: "a" });
    await w.engine.start("a");
    await w.engine.stop("a", { force: true });
    expect(w.driver.calls.filter((c) => c.startsWith("stop"))).toEqual([]);
    expect(w.driver.kills.length).toBe(1);

    await w.engine.start("a");
    w.driver.stop = async () => {
      throw new Error("guest ignored powerdown");
    };
    const vm = await w.engine.stop("a");
    expect(w.driver.kills.length).toBe(2);
    expect(vm.runtime.state).toBe("stopped");
    expect(vm.runtime.lastError).toContain("guest ignored powerdown");
    expect(w.log.of("warn").join("\n")).toContain("guest ignored powerdown");
  });

  test("stop after a daemon restart uses the scratch handles (cache empty)", async () => {
    const w = world();
    w.hooks.hook("net", "vm:start:before", ({ handles }) => void (handles.tapDevice = "tap-web"));
    const cleaned: string[] = [];
    w.hooks.hook("net", "vm:cleanup", ({ handles }) => void cleaned.push(handles.tapDevice));
    await w.engine.create({ name: "web" });
    await w.engine.start("web");
    const fresh = w.restart();
    await fresh.stop("web");
    expect(cleaned).toEqual(["tap-web"]);
    expect(w.driver.stops[0]!.handles.tapDevice).toBe("tap-web");
  });

  test("delete stops, runs vm:delete, removes VMDir and the row", async () => {
    const w = world();
    const seq: string[] = [];
    w.hooks.hook("x", "vm:cleanup", () => void seq.push("cleanup"));
    w.hooks.hook("x", "vm:delete", ({ vm }) => void seq.push(`delete ${vm.runtime.state}`));
    const vm = await w.engine.create({ name: "web" });
    await w.engine.start("web");
    await w.engine.delete("web");
    expect(seq).toEqual(["cleanup", "delete deleting"]);
    expect(w.ts.store.getVM("web")).toBeNull();
    expect(w.host.fs.ops.at(-1)).toBe(`rmrf ${vm.runtime.vmDir}`);
    expect(w.host.fs.dirs.has(vm.runtime.vmDir)).toBe(false);
    expect((await caught(w.engine.delete("web"))).code).toBe("E_VM_NOT_FOUND");
  });
});

describe("reconcile (the seed's reconcile test)", () => {
  const scratch: VMHandles = {
    pid: 31337,
    pidStartTime: 4444,
    tapDevice: "tap-ghost",
    baseLoop: "/dev/loop7",
    cowLoop: "/dev/loop8",
    dmName: "banger-ghost",
    dmDev: "/dev/mapper/banger-ghost",
    extra: { "net:bridge": "br-banger" },
  };

  async function runningRow(w: World, id: string, name: string, state: VMRecord["runtime"]["state"] = "running"): Promise<VMRecord> {
    const vm = sampleVM({ id, name, state, vmsDir: PATHS.vmsDir });
    w.ts.store.upsertVM(vm);
    return vm;
  }

  test("a VM recorded running whose process is gone: running() says so in one line (not the stale record's `state: running`)", async () => {
    const w = world();
    await runningRow(w, "g0", "crashed");
    const e = await caught(w.engine.running("crashed"));
    expect([e.code, e.message]).toEqual(["E_STATE", "vm crashed is not running (its process is gone); start it with `banger vm start crashed`"]);
    await runningRow(w, "g00", "made", "created");
    expect((await caught(w.engine.running("made"))).message).toBe("vm made is not running (state: created); start it with `banger vm start made`");
  });

  test("process gone → demoted to stopped; vm:cleanup gets the scratch handles; file removed", async () => {
    const w = world();
    const vm = await runningRow(w, "g1", "ghost");
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    const cleanups: VMHandles[] = [];
    // what the storage/net plugins would do: tear down exactly what the scratch file names
    w.hooks.hook("storage", "vm:cleanup", async ({ handles }) => {
      cleanups.push(structuredClone(handles));
      if (handles.dmName) await w.host.exec.run("dmsetup", ["remove", handles.dmName]);
      for (const l of [handles.cowLoop, handles.baseLoop]) if (l) await w.host.exec.run("losetup", ["-d", l]);
    });
    w.hooks.hook("net", "vm:cleanup", async ({ handles }) => {
      if (handles.tapDevice) await w.host.exec.run("ip", ["link", "del", handles.tapDevice]);
    });
    const reconcileSeen: { alive: boolean; tap: string }[] = [];
    w.hooks.hook("net", "vm:reconcile", ({ handles, alive }) => void reconcileSeen.push({ alive, tap: handles.tapDevice }));

    const out = await w.engine.reconcile();
    expect(out).toEqual([{ vm: "ghost", action: "demoted", source: "scratch", cleanupErrors: [] }]);
    expect(reconcileSeen).toEqual([{ alive: false, tap: "tap-ghost" }]);
    expect(cleanups).toEqual([scratch]);
    expect(w.host.exec.lines()).toEqual(["dmsetup remove banger-ghost", "losetup -d /dev/loop8", "losetup -d /dev/loop7", "ip link del tap-ghost"]);
    const row = w.ts.store.getVM("ghost")!;
    expect(row.runtime.state).toBe("stopped");
    expect(row.runtime.lastError).toBe("vm process was gone at daemon start");
    expect(w.host.fs.files.has(handlesPath(vm))).toBe(false);
    expect(w.engine.cache.get(vm.id)).toBeNull();
    expect(w.host.procs.kills).toEqual([]);
    expect(w.driver.kills).toEqual([]);
  });

  test("cleanup failures are recorded as lastError and reported, and the VM is still demoted", async () => {
    const w = world();
    const vm = await runningRow(w, "g2", "ghost");
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    w.host.exec.on("dmsetup", { exitCode: 1, stderr: "device busy" });
    w.hooks.hook("storage", "vm:cleanup", async ({ handles }) => void (await w.host.exec.run("dmsetup", ["remove", handles.dmName])));
    w.hooks.hook("net", "vm:cleanup", async ({ handles }) => void (await w.host.exec.run("ip", ["link", "del", handles.tapDevice])));
    const [o] = await w.engine.reconcile();
    expect(o!.action).toBe("demoted");
    expect(o!.cleanupErrors).toEqual(["storage:vm:cleanup: dmsetup remove failed (exit 1): device busy"]);
    expect(w.host.exec.lines()).toContain("ip link del tap-ghost");
    expect(w.ts.store.getVM("ghost")!.runtime.lastError).toContain("device busy");
  });

  test("a live VM whose driver says its guest can never run again (guestStuck) is killed and demoted with that reason, not kept", async () => {
    const w = world();
    const vm = await runningRow(w, "s1", "stuck");
    w.host.procs.add(scratch.pid, scratch.pidStartTime, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    const asked: number[] = [];
    w.driver.guestStuck = async (_vm, handles) => {
      asked.push(handles.pid);
      return "its guest cannot run again: a background state save failed";
    };
    const out = await w.engine.reconcile();
    expect(out).toEqual([{ vm: "stuck", action: "demoted", source: "process", cleanupErrors: [] }]);
    expect(asked).toEqual([scratch.pid]);
    expect(w.driver.kills.map((k) => k.handles.pid)).toEqual([scratch.pid]);
    const row = w.ts.store.getVM("stuck")!;
    expect(row.runtime.state).toBe("stopped");
    expect(row.runtime.lastError).toBe("its guest cannot run again: a background state save failed");
    expect(w.engine.cache.get(vm.id)).toBeNull();
  });

  test("a start from a snapshot marks its handles until its after-hooks are done; a live VM the next daemon finds still marked (clock and identity never given) is killed and demoted, not kept", async () => {
    const w = world();
    await w.engine.create({ name: "clone" });
    const vm = w.engine.getVM("clone");
    const seen: string[] = [];
    const launch = w.driver.launch.bind(w.driver);
    w.driver.launch = async (v, boot, opts) => {
      seen.push(`launch: ${JSON.stringify((await readHandlesFile(w.host.fs, v.runtime.vmDir)).handles?.extra)}`);
      return launch(v, boot, opts);
    };
    w.hooks.hook("guest", "vm:start:after", async ({ vm: v, restored }) => void seen.push(`after (restored ${restored}): ${JSON.stringify((await readHandlesFile(w.host.fs, v.runtime.vmDir)).handles?.extra)}`));
    await w.engine.cache.withLock(vm.id, () => w.engine.startHeld(vm.id, () => {}, new AbortController().signal, { restoreFrom: "/s/snapshots/x/state.mig" }));
    expect(seen).toEqual([`launch: {"${RESTORE_PENDING}":"1"}`, `after (restored true): {"${RESTORE_PENDING}":"1"}`]);
    expect((await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles?.extra).toEqual({});
    // a daemon that died in the after-hooks left the mark: the next one does not keep that guest
    const h = (await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles!;
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, { ...h, extra: { [RESTORE_PENDING]: "1" } });
    const out = await w.restart().reconcile();
    expect(out).toEqual([{ vm: "clone", action: "demoted", source: "process", cleanupErrors: [] }]);
    expect(w.driver.kills.map((k) => k.handles.pid)).toEqual([h.pid]);
    expect(w.ts.store.getVM("clone")!.runtime).toMatchObject({ state: "stopped", lastError: expect.stringContaining("its start from a snapshot was cut short") });
  });

  test("stopIfStuck (after a live snapshot failed): a stuck guest's VM is stopped with the reason; one that runs on is left as it is", async () => {
    const w = world();
    const vm = await runningRow(w, "s2", "maybe");
    w.host.procs.add(scratch.pid, scratch.pidStartTime, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    await w.engine.reconcile();
    let stuck: string | null = null;
    w.driver.guestStuck = async () => stuck;
    expect(await w.engine.cache.withLock(vm.id, () => w.engine.stopIfStuck(vm))).toBeNull();
    expect(w.ts.store.getVM("maybe")!.runtime.state).toBe("running");
    expect(w.driver.kills).toEqual([]);
    stuck = "its guest cannot run again";
    expect(await w.engine.cache.withLock(vm.id, () => w.engine.stopIfStuck(w.ts.store.getVM("maybe")!))).toBe("its guest cannot run again");
    expect(w.ts.store.getVM("maybe")!.runtime).toMatchObject({ state: "stopped", lastError: "its guest cannot run again" });
    expect(w.driver.kills).toHaveLength(1);
  });

  test("a live VM (process + start time + socket answers) is kept and the cache seeded", async () => {
    const w = world();
    const vm = await runningRow(w, "l1", "live");
    w.host.procs.add(scratch.pid, scratch.pidStartTime, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    let cleaned = false;
    w.hooks.hook("x", "vm:cleanup", () => void (cleaned = true));
    const alive: boolean[] = [];
    w.hooks.hook("x", "vm:reconcile", (p) => void alive.push(p.alive));

    const out = await w.engine.reconcile();
    expect(out).toEqual([{ vm: "live", action: "kept", source: "process", cleanupErrors: [] }]);
    expect(alive).toEqual([true]);
    expect(cleaned).toBe(false);
    expect(w.engine.cache.get(vm.id)).toEqual(scratch);
    expect((await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles).toEqual(scratch);
    expect(w.ts.store.getVM("live")!.runtime.state).toBe("running");
    expect(await w.engine.alive(vm)).toBe(true);
    expect(w.host.procs.kills).toEqual([]);
  });

  test("re-adopting a live VM leaves a correct handles.json alone, and writes it when a reconcile hook changed the handles", async () => {
    const w = world();
    const a = await runningRow(w, "k1", "same");
    const b = await runningRow(w, "k2", "changed");
    w.host.procs.add(scratch.pid, scratch.pidStartTime, ["fake-vmm", "--api-sock", a.runtime.apiSockPath]);
    w.host.procs.add(4242, 42, ["fake-vmm", "--api-sock", b.runtime.apiSockPath]);
    await writeHandlesFile(w.host.fs, a.runtime.vmDir, scratch);
    await writeHandlesFile(w.host.fs, b.runtime.vmDir, { ...scratch, pid: 4242, pidStartTime: 42 });
    w.hooks.hook("net", "vm:reconcile", ({ vm, handles }) => {
      if (vm.name === "changed") handles.tapDevice = "tap-refound";
    });
    const before = w.host.fs.writes.length;
    const out = await w.engine.reconcile();
    expect(out.map((o) => [o.vm, o.action, o.source]).sort()).toEqual([["changed", "kept", "process"], ["same", "kept", "process"]]);
    const written = w.host.fs.writes.slice(before).map((x) => x.path);
    expect(written.some((p) => p.startsWith(a.runtime.vmDir))).toBe(false);
    expect(written.some((p) => p.startsWith(b.runtime.vmDir))).toBe(true);
    expect((await readHandlesFile(w.host.fs, b.runtime.vmDir)).handles!.tapDevice).toBe("tap-refound");
  });

  test("reconcile looks at several VMs at once (bounded) and reports them in store order", async () => {
    const w = world();
    const names = Array.from({ length: 40 }, (_, i) => `v${String(i).padStart(2, "0")}`);
    for (const [i, name] of names.entries()) {
      const vm = await runningRow(w, `p${i}`, name);
      w.host.procs.add(9000 + i, 90 + i, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
      await writeHandlesFile(w.host.fs, vm.runtime.vmDir, { ...scratch, pid: 9000 + i, pidStartTime: 90 + i });
    }
    let active = 0;
    let most = 0;
    w.driver.apiAnswers = async () => {
      most = Math.max(most, ++active);
      await Bun.sleep(2);
      active--;
      return true;
    };
    const out = await w.engine.reconcile();
    expect(out.map((o) => o.vm)).toEqual(w.ts.store.listVMs().map((v) => v.name));
    expect(out.every((o) => o.action === "kept")).toBe(true);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(16);
  });

  test("a create or delete the daemon died in (state creating / deleting) is finished: process killed, cleanup run, dir and row gone", async () => {
    const w = world();
    const half = await runningRow(w, "c1", "half", "creating");
    const gone = await runningRow(w, "d1", "gone", "deleting");
    await writeHandlesFile(w.host.fs, gone.runtime.vmDir, scratch);
    w.host.procs.add(4242, 42, ["fake-vmm", "--api-sock", half.runtime.apiSockPath]);
    const cleanups: string[] = [];
    w.hooks.hook("x", "vm:cleanup", ({ vm, handles }) => void cleanups.push(`${vm.name}:${handles.tapDevice}`));
    const deletes: string[] = [];
    w.hooks.hook("x", "vm:delete", ({ vm }) => void deletes.push(vm.name));
    const out = await w.engine.reconcile();
    expect(out.map((o) => `${o.vm}:${o.action}`).sort()).toEqual(["gone:finished deleting", "half:removed half-created"]);
    expect(cleanups.sort()).toEqual(["gone:tap-ghost", "half:"]);
    expect(deletes.sort()).toEqual(["gone", "half"]);
    expect(w.driver.kills.length).toBe(1);
    expect(w.ts.store.listVMs()).toEqual([]);
    expect([...w.host.fs.files.keys()].filter((f) => f.startsWith(PATHS.vmsDir))).toEqual([]);
    // the names are free again
    await w.engine.create({ name: "half" });
    expect(w.ts.store.getVM("half")!.runtime.state).toBe("created");
  });

  test("a live VM whose scratch file is missing is kept with the rediscovered pid", async () => {
    const w = world();
    const vm = await runningRow(w, "l2", "nofile");
    w.host.procs.add(777, 70, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    const out = await w.engine.reconcile();
    expect(out[0]).toMatchObject({ action: "kept", source: "process" });
    expect(w.engine.cache.get(vm.id)).toEqual({ ...emptyHandles(), pid: 777, pidStartTime: 70 });
    expect(w.host.fs.files.has(handlesPath(vm))).toBe(true);
  });

  test("a reused PID (same pid, different start time, unrelated process) is demoted and NOT signalled", async () => {
    const w = world();
    const vm = await runningRow(w, "r1", "reused");
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    w.host.procs.add(scratch.pid, 999_999, ["/usr/sbin/unrelated-daemon"]);
    w.driver.answers = () => true; // even a confused socket probe must not save it
    const cleanups: VMHandles[] = [];
    w.hooks.hook("x", "vm:cleanup", ({ handles }) => void cleanups.push(structuredClone(handles)));

    const out = await w.engine.reconcile();
    expect(out).toEqual([{ vm: "reused", action: "demoted", source: "scratch", cleanupErrors: [] }]);
    expect(cleanups).toEqual([scratch]);
    expect(w.host.procs.kills).toEqual([]);
    expect(w.driver.kills).toEqual([]);
    expect(w.host.procs.table.get(scratch.pid)?.cmdline).toEqual(["/usr/sbin/unrelated-daemon"]);
    expect(w.ts.store.getVM("reused")!.runtime.state).toBe("stopped");
  });

  test("a live process whose API socket doesn't answer (hung VMM) is killed, then cleaned up", async () => {
    const w = world();
    const vm = await runningRow(w, "h1", "hung");
    w.host.procs.add(scratch.pid, scratch.pidStartTime, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, scratch);
    w.driver.answers = () => false;
    const seq: string[] = [];
    const origKill = w.driver.kill;
    w.driver.kill = (v, h) => {
      seq.push(`kill ${h.pid}`);
      return origKill(v, h);
    };
    w.hooks.hook("x", "vm:cleanup", ({ handles }) => void seq.push(`cleanup ${handles.tapDevice}`));
    const out = await w.engine.reconcile();
    expect(out[0]).toMatchObject({ action: "demoted", source: "process" });
    expect(seq).toEqual([`kill ${scratch.pid}`, "cleanup tap-ghost"]);
    expect(w.host.procs.table.has(scratch.pid)).toBe(false);
    // its lastError says what was found: a process that ran and did not answer, not one that was gone
    expect(w.ts.store.getVM("hung")!.runtime.lastError).toBe(`its VMM process (pid ${scratch.pid}) ran but did not answer: killed`);
  });

  test("only VMs the store says are up are looked at; error without any trace is left alone", async () => {
    const w = world();
    await runningRow(w, "s1", "stopped-one", "stopped");
    await runningRow(w, "c1", "created-one", "created");
    const err = await runningRow(w, "e1", "errored", "error");
    err.runtime.lastError = "earlier failure";
    w.ts.store.upsertVM(err);
    let cleanups = 0;
    w.hooks.hook("x", "vm:cleanup", () => void cleanups++);
    expect(await w.engine.reconcile()).toEqual([]);
    expect(cleanups).toBe(0);
    expect(w.ts.store.getVM("errored")!.runtime.lastError).toBe("earlier failure");
  });

  test("a VM left in starting/stopping by a crashed daemon is settled either way", async () => {
    const w = world();
    const up = await runningRow(w, "st1", "was-starting", "starting");
    w.host.procs.add(900, 9, ["fake-vmm", "--api-sock", up.runtime.apiSockPath]);
    const down = await runningRow(w, "st2", "was-stopping", "stopping");
    await writeHandlesFile(w.host.fs, down.runtime.vmDir, scratch);
    const out = await w.engine.reconcile();
    expect(out.map((o) => `${o.vm}:${o.action}`).sort()).toEqual(["was-starting:kept", "was-stopping:demoted"]);
    expect(w.ts.store.getVM("was-starting")!.runtime.state).toBe("running");
    expect(w.ts.store.getVM("was-stopping")!.runtime.state).toBe("stopped");
  });

  test("first, each driver reaps what a killed daemon left of its own (every VM and the vms dir in view), before any VM is looked at; a failed reap is logged, not fatal", async () => {
    const w = world();
    await runningRow(w, "r1", "ghost");
    await runningRow(w, "r2", "parked", "stopped");
    const order: string[] = [];
    w.driver.reapLeftovers = async (scope) => {
      order.push(`reap ${scope.vms.map((v) => v.name).join(",")} in ${scope.vmsDir}`);
      return ["ghost: killed the snapshot receiver qemu (pid 7) a killed daemon left"];
    };
    w.hooks.hook("x", "vm:reconcile", ({ vm }) => void order.push(`reconcile ${vm.name}`));
    expect((await w.engine.reconcile()).map((o) => o.action)).toEqual(["demoted"]);
    expect(order).toEqual(["reap ghost,parked in /state/vms", "reconcile ghost"]);
    expect(w.log.of("info")).toContain("reconcile fake: ghost: killed the snapshot receiver qemu (pid 7) a killed daemon left");

    w.driver.reapLeftovers = () => Promise.reject(new Error("qemu (pid 7) did not exit after SIGKILL"));
    await w.restart().reconcile();
    expect(w.log.of("warn")).toContain("reconcile fake: reaping what it left failed: qemu (pid 7) did not exit after SIGKILL");
  });

  test("a corrupt scratch file with a dead process demotes without crashing", async () => {
    const w = world();
    const vm = await runningRow(w, "k1", "corrupt");
    w.host.fs.files.set(handlesPath(vm), "{not json");
    const got: VMHandles[] = [];
    w.hooks.hook("x", "vm:cleanup", ({ handles }) => void got.push(handles));
    const out = await w.engine.reconcile();
    expect(out[0]).toMatchObject({ action: "demoted", source: "none" });
    expect(got).toEqual([emptyHandles()]);
    expect(w.host.fs.files.has(handlesPath(vm))).toBe(false);
  });

  test("a VM whose driver isn't loaded is left as is, with a warning", async () => {
    const w = world();
    const vm = sampleVM({ id: "d1", name: "other-driver", state: "running", driver: "firecracker", vmsDir: PATHS.vmsDir });
    w.ts.store.upsertVM(vm);
    expect(await w.engine.reconcile()).toEqual([]);
    expect(w.ts.store.getVM("other-driver")!.runtime.state).toBe("running");
    expect(w.log.of("warn").join("\n")).toContain("other-driver");
  });

  test("end to end: start, daemon restart keeps it; VM killed -9, next restart demotes and tears down", async () => {
    const w = world();
    w.hooks.hook("net", "vm:start:before", ({ handles }) => void (handles.tapDevice = "tap-e2e"));
    const torn: string[] = [];
    w.hooks.hook("net", "vm:cleanup", ({ handles }) => void torn.push(handles.tapDevice));
    const vm = await w.engine.create({ name: "e2e" });
    await w.engine.start("e2e");
    const h = w.engine.cache.get(vm.id)!;

    const second = w.restart();
    expect(await second.reconcile()).toEqual([{ vm: "e2e", action: "kept", source: "process", cleanupErrors: [] }]);
    expect(second.cache.get(vm.id)).toEqual(h);

    w.host.procs.table.delete(h.pid); // kill -9 of the VM while no daemon watches
    const third = w.restart();
    expect(await third.reconcile()).toEqual([{ vm: "e2e", action: "demoted", source: "scratch", cleanupErrors: [] }]);
    expect(torn).toEqual(["tap-e2e"]);
    expect(w.ts.store.getVM("e2e")!.runtime.state).toBe("stopped");
    // and it can start again
    expect((await third.start("e2e")).runtime.state).toBe("running");
  });
});

describe("pause and resume", () => {
  test("pause stops the VMM's vCPUs and records paused; resume undoes it; both are idempotent and keep the same process", async () => {
    const w = world();
    const vm = await w.engine.create({ name: "p" });
    await w.engine.start("p");
    const pid = w.engine.cache.get(vm.id)!.pid;
    expect((await w.engine.pause("p")).runtime.state).toBe("paused");
    expect(w.ts.store.getVM("p")!.runtime.state).toBe("paused");
    expect(w.driver.paused.has(vm.id)).toBe(true);
    expect((await w.engine.pause("p")).runtime.state).toBe("paused");
    expect((await w.engine.resume("p")).runtime.state).toBe("running");
    expect((await w.engine.resume("p")).runtime.state).toBe("running");
    expect(w.driver.calls.filter((c) => /^(pause|resume)/.test(c))).toEqual([`pause p ${pid}`, `resume p ${pid}`]);
    expect(w.engine.cache.get(vm.id)!.pid).toBe(pid);
  });

  test("resume tells vm:resume how long the guest stood still (null after a daemon restart), with its guest to dial; a failing handler is logged, the VM runs", async () => {
    const w = world();
    await w.engine.create({ name: "p" });
    await w.engine.start("p");
    const seen: (number | null)[] = [];
    w.hooks.hook("clock", "vm:resume", async ({ pausedMs, guest }) => {
      seen.push(pausedMs);
      await guest(); // no pool in this world: rejects
    });
    await w.engine.pause("p");
    w.host.clock.advance(12_000);
    expect((await w.engine.resume("p")).runtime.state).toBe("running");
    expect(seen).toEqual([12_000]);
    expect(w.log.of("warn")).toEqual(["resume p: clock:vm:resume: vm p: no connection to its guest here"]);
    // paused under an earlier daemon: how long is not known
    await w.engine.pause("p");
    const next = w.restart();
    await next.reconcile();
    await next.resume("p");
    expect(seen).toEqual([12_000, null]);
  });

  test("a paused VM refuses what needs its guest with the way out; start does not pretend it runs", async () => {
    const w = world();
    await w.engine.create({ name: "p" });
    await w.engine.start("p");
    await w.engine.pause("p");
    const e = await caught(w.engine.running("p"));
    expect(e.code).toBe("E_STATE");
    expect(e.message).toBe("vm p is paused: resume it with `banger vm resume p`");
    expect((await caught(w.engine.start("p"))).message).toBe("vm p is paused: resume it with `banger vm resume p`");
    expect(w.ts.store.getVM("p")!.runtime.state).toBe("paused");
  });

  test("pause or resume of a VM that is not running → E_STATE saying how to start it; nothing is asked of the VMM", async () => {
    const w = world();
    await w.engine.create({ name: "c" });
    const e = await caught(w.engine.pause("c"));
    expect(e.code).toBe("E_STATE");
    expect(e.message).toContain("banger vm start c");
    expect((await caught(w.engine.resume("c"))).code).toBe("E_STATE");
    expect((await caught(w.engine.pause("nope"))).code).toBe("E_VM_NOT_FOUND");
    expect(w.driver.calls.filter((c) => /^(pause|resume)/.test(c))).toEqual([]);
  });

  test("a VMM that cannot pause → one clear E_STATE line naming the driver", async () => {
    const w = world();
    await w.engine.create({ name: "n" });
    await w.engine.start("n");
    delete (w.driver as { pause?: unknown }).pause;
    const e = await caught(w.engine.pause("n"));
    expect(e.code).toBe("E_STATE");
    expect(e.message).toBe("vm n: the fake driver cannot pause a VM");
    expect(w.ts.store.getVM("n")!.runtime.state).toBe("running");
  });

  /** A fake driver whose VMM halts VMs on its own (as QEMU on a full host disk): `halts` says which, "sticky" ones halt again on resume. */
  function haltingDriver(w: World): Map<string, "once" | "sticky"> {
    const halts = new Map<string, "once" | "sticky">();
    const resume = w.driver.resume!.bind(w.driver);
    Object.assign(w.driver, {
      haltedBy: async (vm: VMRecord) => (halts.has(vm.id) ? "the disk is full" : null),
      resume: async (vm: VMRecord, handles: VMHandles) => {
        if (halts.get(vm.id) === "once") halts.delete(vm.id);
        return resume(vm, handles);
      },
    });
    return halts;
  }

  test("a VM its VMM halted: what needs its guest is refused with the cause and the way on; resume lets it run on, or says it halted again at once", async () => {
    const w = world();
    const vm = await w.engine.create({ name: "h" });
    await w.engine.start("h");
    const halts = haltingDriver(w);
    expect(await w.engine.haltedBy(vm)).toBeNull();
    halts.set(vm.id, "sticky");
    expect(await w.engine.haltedBy(w.engine.getVM("h"))).toBe("the disk is full");
    const e = await caught(w.engine.running("h"));
    expect([e.code, e.message]).toEqual(["E_STATE", "vm h is halted: the disk is full; fix that, then `banger vm resume h`: it runs on from where it stopped"]);
    const again = await caught(w.engine.resume("h"));
    expect([again.code, again.message]).toEqual(["E_STATE", "vm h is halted again at once: the disk is full; the cause is still there"]);
    halts.set(vm.id, "once");
    expect((await w.engine.resume("h")).runtime.state).toBe("running");
    expect(await w.engine.haltedBy(w.engine.getVM("h"))).toBeNull();
    expect((await w.engine.running("h")).name).toBe("h");
    // stop: a guest halted for good cannot act on the power button, so it is killed at once, saying why; one that can run on is resumed and shut down
    halts.set(vm.id, "sticky");
    expect((await w.engine.stop("h")).runtime.state).toBe("stopped");
    expect(w.driver.calls.at(-1)).toMatch(/^kill h /);
    expect(w.log.of("warn")).toContain("stop h: its guest cannot shut down (vm h is halted again at once: the disk is full; the cause is still there): stopped at once");
    await w.engine.start("h");
    halts.set(vm.id, "once");
    expect((await w.engine.stop("h")).runtime.state).toBe("stopped");
    expect(w.driver.calls.slice(-2).map((c) => c.split(" ")[0])).toEqual(["resume", "stop"]);
    // a stopped VM is never asked about: nothing of it runs to halt
    halts.set(vm.id, "sticky");
    expect(await w.engine.haltedBy(w.engine.getVM("h"))).toBeNull();
    // the VMM answering nothing is not called a halt
    Object.assign(w.driver, { haltedBy: async () => Promise.reject(new Error("no answer")) });
    await w.engine.start("h");
    expect(await w.engine.haltedBy(w.engine.getVM("h"))).toBeNull();
  });

  test("watchHalt: aborts with the halt's error once the VMM halts the VM, passes the request's own abort through, and stops looking when told", async () => {
    const w = world();
    const vm = await w.engine.create({ name: "h" });
    await w.engine.start("h");
    const halts = haltingDriver(w);
    const req = new AbortController();
    const watch = w.engine.watchHalt(w.engine.getVM("h"), req.signal, 2000);
    w.host.clock.advance(2000);
    await Bun.sleep(1);
    expect(watch.signal.aborted).toBe(false);
    halts.set(vm.id, "sticky");
    w.host.clock.advance(2000);
    await Bun.sleep(1);
    expect(watch.signal.aborted).toBe(true);
    expect((watch.signal.reason as BangerError).message).toStartWith("vm h is halted: the disk is full;");
    watch.stop();
    // the request's own abort, its reason kept
    const req2 = new AbortController();
    const w2 = w.engine.watchHalt(w.engine.getVM("h"), req2.signal, 2000);
    req2.abort(new Error("client went away"));
    expect((w2.signal.reason as Error).message).toBe("client went away");
    w2.stop();
    // stopped: no timer left behind
    const w3 = w.engine.watchHalt(w.engine.getVM("h"), new AbortController().signal, 2000);
    w3.stop();
    expect(w.host.clock.timers).toHaveLength(0);
    // stopped while a look is in flight: its answer arms nothing
    let answer: (why: string | null) => void = () => {};
    Object.assign(w.driver, { haltedBy: () => new Promise<string | null>((r) => (answer = r)) });
    const w4 = w.engine.watchHalt(w.engine.getVM("h"), new AbortController().signal, 2000);
    w.host.clock.advance(2000);
    w4.stop();
    answer(null);
    await Bun.sleep(1);
    expect(w.host.clock.timers).toHaveLength(0);
    expect(w4.signal.aborted).toBe(false);
  });

  test("stop of a paused VM resumes it first so the guest can shut down; --force just kills", async () => {
    const w = world();
    const vm = await w.engine.create({ name: "s" });
    await w.engine.start("s");
    await w.engine.pause("s");
    expect((await w.engine.stop("s")).runtime.state).toBe("stopped");
    const pid = w.driver.stops[0]!.handles.pid;
    expect(w.driver.calls.slice(-2)).toEqual([`resume s ${pid}`, `stop s ${pid}`]);
    await w.engine.start("s");
    await w.engine.pause("s");
    await w.engine.stop("s", { force: true });
    expect(w.driver.calls.at(-1)).toMatch(/^kill s /);
    expect(w.driver.calls.at(-2)).toMatch(/^pause s /);
    expect(w.driver.paused.has(vm.id)).toBe(false);
  });

  test("daemon restart: a paused VM stays paused; the record follows the VMM when a crash came between its answer and the write", async () => {
    const w = world();
    const a = await w.engine.create({ name: "a" });
    const b = await w.engine.create({ name: "b" });
    await w.engine.start("a");
    await w.engine.start("b");
    await w.engine.pause("a");
    // b: the VMM paused it, the daemon died before recording it
    w.driver.paused.add(b.id);
    const second = w.restart();
    const out = await second.reconcile();
    expect(out.map((o) => [o.vm, o.action])).toEqual([["a", "kept"], ["b", "kept"]]);
    expect(w.ts.store.getVM("a")!.runtime.state).toBe("paused");
    expect(w.ts.store.getVM("b")!.runtime.state).toBe("paused");
    // and the other way: recorded paused, the VMM runs it
    w.driver.paused.delete(a.id);
    await w.restart().reconcile();
    expect(w.ts.store.getVM("a")!.runtime.state).toBe("running");
  });

  test("a paused VM whose process died is demoted and cleaned up like a running one", async () => {
    const w = world();
    const torn: string[] = [];
    w.hooks.hook("net", "vm:cleanup", ({ vm }) => void torn.push(vm.name));
    const vm = await w.engine.create({ name: "d" });
    await w.engine.start("d");
    await w.engine.pause("d");
    w.host.procs.table.delete(w.engine.cache.get(vm.id)!.pid);
    expect(await w.engine.noticeExit(vm.id)).toMatchObject({ vm: "d", action: "demoted" });
    expect(torn).toEqual(["d"]);
    expect(w.ts.store.getVM("d")!.runtime.state).toBe("stopped");
  });
});
