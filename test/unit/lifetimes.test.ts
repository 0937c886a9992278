// The lifetime scheduler on a fake clock and a real SQLite store: one timer for the earliest
// deadline, TTL delete/stop, extension, idle with busy requests, retry after a failure,
// overdue deadlines at start, and deadlines that come back from the file after a "restart".
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkDurationMs, initialLifetime, Lifetimes } from "../../src/core/lifetimes.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { formatDuration, parseDuration } from "../../src/shared/duration.ts";
import type { VMRecord, VMState } from "../../src/shared/model.ts";
import { Store } from "../../src/store/store.ts";
import { fakeClock, type FakeClock } from "../helpers/fakes.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const silent = { debug() {}, info() {}, warn() {}, error() {} };

function vmRecord(name: string, clock: FakeClock, state: VMState, o: Parameters<typeof initialLifetime>[1] = {}): VMRecord {
  const now = clock.now().toISOString();
  return {
    id: `id-${name}`,
    name,
    spec: { image: "default", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: "fake", net: "user", storage: "copy" },
    runtime: { state, guestIP: "", apiSockPath: "", vsockPath: "", vsockCID: 0, logPath: "", metricsPath: "", dnsName: "", vmDir: "", systemOverlay: "", workDiskPath: "", lastError: "", sshHost: "", sshPort: 0 },
    lifetime: initialLifetime(clock.now(), o),
    createdAt: now,
    updatedAt: now,
  };
}

/** A store in a temp file, a fake clock and a scheduler whose stop/delete record what they were asked and change the row as the engine would. */
function setup(path = join(mkdtempSync(join(tmpdir(), "banger-lt-")), "db")) {
  dirs.push(path.slice(0, path.lastIndexOf("/")));
  const store = new Store(path);
  const clock = fakeClock();
  const calls: string[] = [];
  const failing = new Set<string>();
  const locked = new Set<string>();
  const logs: string[] = [];
  const lt = new Lifetimes({
    store,
    clock,
    inOperation: (id) => locked.has(id),
    log: { ...silent, info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) },
    async stop(id) {
      calls.push(`stop ${id}`);
      if (failing.has(id)) throw new Error("boom");
      const vm = store.getVM(id)!;
      vm.runtime.state = "stopped";
      store.upsertVM(vm);
    },
    async delete(id) {
      calls.push(`delete ${id}`);
      if (failing.has(id)) throw new Error("boom");
      store.deleteVM(id);
    },
  });
  return { store, clock, calls, failing, locked, logs, lt, path };
}

/** Let the fired deadlines' async stop/delete settle. */
const settle = () => new Promise((r) => setTimeout(r, 5));

describe("durations", () => {
  test("out of range: said in the units typed, with the ms an API client sent", () => {
    const e = (v: number) => (() => checkDurationMs(v, "ttl")) as () => void;
    expect(e(400 * 86_400_000)).toThrow("ttl is at most 366d (31622400000 ms), got 400d");
    expect(e(-1)).toThrow("whole number of milliseconds");
    expect(checkDurationMs(366 * 86_400_000, "ttl")).toBe(366 * 86_400_000);
  });
  test("parse and format", () => {
    expect(parseDuration("20s")).toBe(20_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("2d")).toBe(172_800_000);
    expect(parseDuration("90")).toBe(90_000);
    expect(parseDuration("250ms")).toBe(250);
    // one form for every duration option: decimals too (as --timeout took them), a bare number is seconds
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("1.5")).toBe(1500);
    expect(parseDuration("0.5s")).toBe(500);
    for (const bad of ["", "0", "0s", "0.0001ms", "5x", "-5s", ".5s", "1.h", "s", "5 s", "1h 2m", "$(x)"]) expect(parseDuration(bad)).toBeNull();
    expect(formatDuration(93_000)).toBe("1m33s");
    expect(formatDuration(90_061_000)).toBe("1d1h");
    expect(formatDuration(400)).toBe("0s");
  });
});

describe("Lifetimes (fake clock)", () => {
  test("one timer, armed for the earliest deadline; a TTL deletes through delete()", async () => {
    const { store, clock, calls, lt } = setup();
    store.upsertVM(vmRecord("a", clock, "running", { ttlMs: 60_000 }));
    store.upsertVM(vmRecord("b", clock, "running", { ttlMs: 20_000 }));
    store.upsertVM(vmRecord("c", clock, "stopped"));
    await lt.start();
    expect(clock.timers.length).toBe(1);
    expect(lt.nextAt).toBe(clock.ms + 20_000);
    clock.advance(19_999);
    await settle();
    expect(calls).toEqual([]);
    clock.advance(1);
    await settle();
    expect(calls).toEqual(["delete id-b"]);
    expect(store.getVM("b")).toBeNull();
    // re-armed for the next one, still one timer
    expect(clock.timers.length).toBe(1);
    expect(lt.nextAt).toBe(Date.parse(store.getVM("a")!.lifetime!.expiresAt));
    clock.advance(40_000);
    await settle();
    expect(calls).toEqual(["delete id-b", "delete id-a"]);
    expect(clock.timers.length).toBe(0);
    expect(store.getVM("c")).not.toBeNull();
  });

  test("ttl action stop: stop() then the TTL is cleared; it never fires again", async () => {
    const { store, clock, calls, lt } = setup();
    store.upsertVM(vmRecord("s", clock, "running", { ttlMs: 5000, ttlAction: "stop" }));
    await lt.start();
    clock.advance(5000);
    await settle();
    expect(calls).toEqual(["stop id-s"]);
    expect(store.getVM("s")!.lifetime!.expiresAt).toBe("");
    expect(store.getVM("s")!.runtime.state).toBe("stopped");
    expect(clock.timers.length).toBe(0);
  });

  test("set: a TTL changed keeps its action; once cleared (or spent) the next TTL without one has the default (delete)", async () => {
    const { store, clock, lt } = setup();
    store.upsertVM(vmRecord("k", clock, "running", {}));
    await lt.start();
    const action = () => store.getVM("k")!.lifetime!.ttlAction;
    lt.set(store.getVM("k")!, { ttlMs: 60_000, ttlAction: "stop" });
    lt.set(store.getVM("k")!, { ttlMs: 120_000 });
    expect(action()).toBe("stop");
    lt.set(store.getVM("k")!, { ttlMs: 0 });
    lt.set(store.getVM("k")!, { ttlMs: 120_000 });
    expect(action()).toBe("delete");
  });

  test("set: extends from now, `0` removes, the timer follows", async () => {
    const { store, clock, calls, lt } = setup();
    store.upsertVM(vmRecord("e", clock, "running", { ttlMs: 5000 }));
    await lt.start();
    clock.advance(4000);
    lt.set(store.getVM("e")!, { ttlMs: 60_000 });
    expect(store.getVM("e")!.lifetime!.expiresAt).toBe(new Date(clock.ms + 60_000).toISOString());
    expect(lt.nextAt).toBe(clock.ms + 60_000);
    clock.advance(2000);
    await settle();
    expect(calls).toEqual([]);
    lt.set(store.getVM("e")!, { ttlMs: 0 });
    expect(clock.timers.length).toBe(0);
    expect(() => lt.set(store.getVM("e")!, { ttlMs: -1 })).toThrow("ttl must be");
    expect(() => lt.set(store.getVM("e")!, { ttlAction: "explode" as never })).toThrow('ttl action must be "delete" or "stop"');
  });

  test("idle: activity restarts the clock, a busy request holds it, then stop(); stopped VMs have no idle deadline", async () => {
    const { store, clock, calls, lt, logs } = setup();
    store.upsertVM(vmRecord("i", clock, "running", { idleTimeoutMs: 10_000 }));
    store.upsertVM(vmRecord("off", clock, "stopped", { idleTimeoutMs: 1000 }));
    await lt.start();
    expect(lt.nextAt).toBe(clock.ms + 10_000);
    clock.advance(8000);
    lt.touch("id-i");
    expect(lt.nextAt).toBe(clock.ms + 10_000);
    // a long request: no deadline at all while it runs
    const end = lt.busy("i");
    expect(clock.timers.length).toBe(0);
    clock.advance(60_000);
    await settle();
    expect(calls).toEqual([]);
    end();
    end(); // once only
    expect(lt.nextAt).toBe(clock.ms + 10_000);
    clock.advance(10_000);
    await settle();
    expect(calls).toEqual(["stop id-i"]);
    expect(logs.some((l) => /^lifetime: vm i: idle since .* \(timeout 10s\): stopping it$/.test(l))).toBe(true);
    expect(clock.timers.length).toBe(0);
  });

  test("idle action delete (vm run --rm's lease): fires in any settled state, never mid-operation, held by a busy request", async () => {
    const { store, clock, calls, lt, logs } = setup();
    for (const state of ["running", "stopped", "error", "created", "paused"] as const) store.upsertVM(vmRecord(`d-${state}`, clock, state, { idleTimeoutMs: 5000, idleAction: "delete" }));
    // a cold boot or a disk copy longer than the lease is no idleness
    for (const state of ["starting", "creating", "stopping", "deleting"] as const) store.upsertVM(vmRecord(`mid-${state}`, clock, state, { idleTimeoutMs: 5000, idleAction: "delete" }));
    // a stop action still needs a running VM
    store.upsertVM(vmRecord("s-stopped", clock, "stopped", { idleTimeoutMs: 5000 }));
    await lt.start();
    const end = lt.busy("d-running");
    clock.advance(5000);
    await settle();
    expect(calls.sort()).toEqual(["delete id-d-created", "delete id-d-error", "delete id-d-paused", "delete id-d-stopped"]);
    expect(logs.some((l) => /^lifetime: vm d-stopped: idle since .* \(timeout 5s\): deleting it$/.test(l))).toBe(true);
    end();
    clock.advance(5000);
    await settle();
    expect(calls).toContain("delete id-d-running");
    for (const state of ["starting", "creating", "stopping", "deleting"]) expect(store.getVM(`mid-${state}`)).not.toBeNull();
    expect(store.getVM("s-stopped")).not.toBeNull();
    expect(calls.filter((c) => c.startsWith("stop"))).toEqual([]);
  });

  test("an idle deletion that fell due mid-operation looks again every 5 s, and fires once the VM settled", async () => {
    const { store, clock, calls, lt } = setup();
    const vm = vmRecord("boot", clock, "starting", { idleTimeoutMs: 5000, idleAction: "delete" });
    store.upsertVM(vm);
    await lt.start();
    expect(lt.nextAt).toBe(clock.ms + 5000);
    clock.advance(5000);
    await settle();
    expect(calls).toEqual([]);
    expect(lt.nextAt).toBe(clock.ms + 5000);
    // the start failed: no event says so
    vm.runtime.state = "error";
    store.upsertVM(vm);
    clock.advance(5000);
    await settle();
    expect(calls).toEqual(["delete id-boot"]);
    expect(clock.timers.length).toBe(0);
  });

  test("an idle deletion never fires while an operation holds the VM (its lock), whatever its state says; the end of a create or a clone's restore restarts the idle clock", async () => {
    const { store, clock, calls, locked, lt } = setup();
    const hooks = new HookEngine();
    lt.hookInto(hooks);
    const vm = vmRecord("op", clock, "created", { idleTimeoutMs: 5000, idleAction: "delete" });
    store.upsertVM(vm);
    locked.add(vm.id); // a clone's disks being copied (vm:restore, state created)
    await lt.start();
    clock.advance(12_000);
    await settle();
    expect(calls).toEqual([]);
    // the restore ends: idleness counts from now, not from the create
    await hooks.run("vm:restore", { vm, snapshot: {} as never, progress: () => {}, op: { defer() {} } as never });
    locked.delete(vm.id);
    expect(store.getVM("op")!.lifetime!.lastActiveAt).toBe(clock.now().toISOString());
    clock.advance(4000);
    await settle();
    expect(calls).toEqual([]);
    clock.advance(6000);
    await settle();
    expect(calls).toEqual(["delete id-op"]);
    // and the end of a create does the same
    const c = vmRecord("made", clock, "creating", { idleTimeoutMs: 5000, idleAction: "delete" });
    store.upsertVM(c);
    clock.advance(20_000);
    await hooks.run("vm:create", { vm: c, progress: () => {}, op: { defer() {} } as never });
    expect(store.getVM("made")!.lifetime!.lastActiveAt).toBe(clock.now().toISOString());
  });

  test("set: an idle action alone keeps the timeout and restarts the clock; bad actions are refused", async () => {
    const { store, clock, lt } = setup();
    store.upsertVM(vmRecord("a", clock, "running", { idleTimeoutMs: 10_000 }));
    clock.advance(4000);
    lt.set(store.getVM("a")!, { idleAction: "delete" });
    expect(store.getVM("a")!.lifetime).toMatchObject({ idleTimeoutMs: 10_000, idleAction: "delete", lastActiveAt: clock.now().toISOString() });
    lt.set(store.getVM("a")!, { idleTimeoutMs: 20_000 });
    expect(store.getVM("a")!.lifetime).toMatchObject({ idleTimeoutMs: 20_000, idleAction: "delete" });
    expect(() => lt.set(store.getVM("a")!, { idleAction: "explode" as never })).toThrow('idle action must be "delete" or "stop", got "explode"');
    expect(() => initialLifetime(clock.now(), { idleTimeoutMs: 1000, idleAction: "x" as never })).toThrow("idle action must be");
  });

  test("the vm:start:after hook restarts the idle clock", async () => {
    const { store, clock, lt } = setup();
    const hooks = new HookEngine();
    lt.hookInto(hooks);
    const vm = vmRecord("h", clock, "running", { idleTimeoutMs: 10_000 });
    store.upsertVM(vm);
    clock.advance(7000);
    await hooks.run("vm:start:after", { vm, handles: {} as never, progress: () => {}, signal: new AbortController().signal, op: { defer() {} } as never });
    expect(vm.lifetime!.lastActiveAt).toBe(clock.now().toISOString());
    expect(lt.nextAt).toBe(clock.ms + 10_000);
  });

  test("a failed stop or delete is retried after retryMs, not in a loop", async () => {
    const { store, clock, calls, failing, lt, logs } = setup();
    store.upsertVM(vmRecord("f", clock, "running", { ttlMs: 1000 }));
    failing.add("id-f");
    await lt.start();
    clock.advance(1000);
    await settle();
    expect(calls).toEqual(["delete id-f"]);
    expect(logs.at(-1)).toBe("lifetime: vm f: delete failed (trying again in 30s): boom");
    expect(lt.nextAt).toBe(clock.ms + 30_000);
    failing.delete("id-f");
    clock.advance(30_000);
    await settle();
    expect(calls).toEqual(["delete id-f", "delete id-f"]);
    expect(store.getVM("f")).toBeNull();
  });

  test("durable: deadlines come back from the file; those overdue at start fire at once", async () => {
    const first = setup();
    first.store.upsertVM(vmRecord("d1", first.clock, "running", { ttlMs: 5000 }));
    first.store.upsertVM(vmRecord("d2", first.clock, "running", { ttlMs: 50_000 }));
    first.store.upsertVM(vmRecord("d3", first.clock, "running", { idleTimeoutMs: 3000 }));
    const at = first.store.getVM("d2")!.lifetime!.expiresAt;
    first.lt.close();
    first.store.close();
    // "the daemon was dead" for 10 s: a new store and scheduler on the same file
    const second = setup(first.path);
    second.clock.ms = first.clock.ms + 10_000;
    await second.lt.start();
    expect(second.calls.sort()).toEqual(["delete id-d1", "stop id-d3"]);
    expect(second.store.getVM("d2")!.lifetime!.expiresAt).toBe(at);
    expect(second.lt.nextAt).toBe(Date.parse(at));
  });

  test("an operation saving an older copy of the record never undoes a TTL set meanwhile", () => {
    const { store, clock, lt } = setup();
    const vm = vmRecord("r", clock, "running");
    store.upsertVM(vm);
    lt.set(store.getVM("r")!, { ttlMs: 60_000 });
    vm.runtime.state = "stopped";
    store.upsertVM(vm); // e.g. a stop that read the row before `vm ttl`
    expect(store.getVM("r")!.lifetime!.expiresAt).toBe(new Date(clock.ms + 60_000).toISOString());
    expect(store.getVM("r")!.runtime.state).toBe("stopped");
  });
});
