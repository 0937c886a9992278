// The seed's vm_handles_test: scratch-file roundtrip, missing/corrupt file,
// cache concurrency, rediscoverHandles preferring the live process over the
// scratch pid (and returning scratch contents when the process is dead), and
// vmAlive as the single liveness check.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emptyHandles, type VMHandles } from "../../src/shared/model.ts";
import { vmAlive } from "../../src/handles/alive.ts";
import { HandleCache } from "../../src/handles/cache.ts";
import { parseHandles, readHandlesFile, removeHandlesFile, writeHandlesFile } from "../../src/handles/file.ts";
import { rediscoverHandles } from "../../src/handles/rediscover.ts";
import { createFS } from "../../src/host/fs.ts";
import { fakeDriver, fakeFS, fakeProcs, sampleVM } from "../helpers/fakes.ts";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});
function vmDir(): string {
  const d = mkdtempSync(join(tmpdir(), "banger-handles-"));
  dirs.push(d);
  return d;
}

function full(): VMHandles {
  return {
    pid: 4242,
    pidStartTime: 987654,
    tapDevice: "tap-bg0",
    baseLoop: "/dev/loop3",
    cowLoop: "/dev/loop4",
    dmName: "banger-demo",
    dmDev: "/dev/mapper/banger-demo",
    extra: { "net-user:port": "2222", "storage:overlay": "/vms/x/overlay.qcow2" },
  };
}

describe("handles.json scratch file (real fs)", () => {
  test("roundtrip through writeHandlesFile/readHandlesFile", async () => {
    const fs = createFS();
    const dir = vmDir();
    await writeHandlesFile(fs, dir, full());
    const got = await readHandlesFile(fs, dir);
    expect(got.status).toBe("ok");
    expect(got.handles).toEqual(full());
  });

  test("written atomically: no temp files left behind, mode 0600, overwrite replaces", async () => {
    const fs = createFS();
    const dir = vmDir();
    await writeHandlesFile(fs, dir, full());
    await writeHandlesFile(fs, dir, { ...full(), pid: 7, tapDevice: "tap-new" });
    expect(readdirSync(dir)).toEqual(["handles.json"]);
    expect(statSync(join(dir, "handles.json")).mode & 0o777).toBe(0o600);
    const got = await readHandlesFile(fs, dir);
    expect(got.handles?.pid).toBe(7);
    expect(got.handles?.tapDevice).toBe("tap-new");
  });

  test("concurrent writes never leave a half-written file", async () => {
    const fs = createFS();
    const dir = vmDir();
    await Promise.all(Array.from({ length: 20 }, (_, i) => writeHandlesFile(fs, dir, { ...full(), pid: i + 1, tapDevice: "t".repeat(i * 50) })));
    const got = await readHandlesFile(fs, dir);
    expect(got.status).toBe("ok");
    expect(got.handles!.tapDevice.length).toBe((got.handles!.pid - 1) * 50);
    expect(readdirSync(dir)).toEqual(["handles.json"]);
  });

  test("missing file → status missing, handles null", async () => {
    const got = await readHandlesFile(createFS(), vmDir());
    expect(got).toEqual({ status: "missing", handles: null });
  });

  test("missing VMDir altogether → missing, not a crash", async () => {
    const got = await readHandlesFile(createFS(), join(vmDir(), "does", "not", "exist"));
    expect(got.status).toBe("missing");
  });

  test.each([
    ["garbage", "\x00\x01not json{{{"],
    ["empty", ""],
    ["truncated", '{"pid": 12, "tapDev'],
    ["json array", "[1,2,3]"],
    ["json null", "null"],
    ["json string", '"tap0"'],
    ["json number", "42"],
  ])("corrupt file (%s) → status corrupt, handles null", async (_label, text) => {
    const dir = vmDir();
    writeFileSync(join(dir, "handles.json"), text);
    const got = await readHandlesFile(createFS(), dir);
    expect(got).toEqual({ status: "corrupt", handles: null });
  });

  test("wrong field types are coerced to safe defaults, never trusted", async () => {
    const dir = vmDir();
    writeFileSync(
      join(dir, "handles.json"),
      JSON.stringify({
        pid: "4242",
        pidStartTime: -5,
        tapDevice: 7,
        baseLoop: null,
        cowLoop: ["x"],
        dmName: "dm-ok",
        dmDev: { a: 1 },
        extra: { good: "yes", bad: 3, worse: { x: 1 } },
        unknownField: "ignored",
      }),
    );
    const got = await readHandlesFile(createFS(), dir);
    expect(got.status).toBe("ok");
    expect(got.handles).toEqual({ ...emptyHandles(), dmName: "dm-ok", extra: { good: "yes" } });
  });

  test("non-finite and fractional numbers", () => {
    expect(parseHandles('{"pid": 12.7, "pidStartTime": 1e400}')).toEqual({ ...emptyHandles(), pid: 12, pidStartTime: 0 });
    expect(parseHandles('{"extra": [1, 2]}')).toEqual(emptyHandles());
  });

  test("removeHandlesFile removes it and tolerates a missing file", async () => {
    const fs = createFS();
    const dir = vmDir();
    await writeHandlesFile(fs, dir, full());
    await removeHandlesFile(fs, dir);
    await removeHandlesFile(fs, dir);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("HandleCache", () => {
  test("get/set hand out copies so no caller mutates another's view", () => {
    const c = new HandleCache();
    const h = full();
    c.set("a", h);
    h.pid = 1;
    h.extra.sneaky = "x";
    const got = c.get("a")!;
    expect(got.pid).toBe(4242);
    expect(got.extra.sneaky).toBeUndefined();
    got.tapDevice = "mutated";
    got.extra.more = "y";
    expect(c.get("a")!.tapDevice).toBe("tap-bg0");
    expect(c.get("a")!.extra.more).toBeUndefined();
    expect(c.get("b")).toBeNull();
    expect(c.ids()).toEqual(["a"]);
    c.delete("a");
    expect(c.get("a")).toBeNull();
  });

  test("many concurrent withLock sections on one id never interleave and run in arrival order", async () => {
    const c = new HandleCache();
    let active = 0;
    let maxActive = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        c.withLock("vm1", async () => {
          active++;
          maxActive = Math.max(maxActive, active);
          // read-modify-write across awaits: lost updates would show if sections interleaved
          const cur = c.get("vm1") ?? emptyHandles();
          await Bun.sleep(i % 3);
          await Promise.resolve();
          c.set("vm1", { ...cur, pid: cur.pid + 1 });
          order.push(i);
          active--;
        }),
      ),
    );
    expect(maxActive).toBe(1);
    expect(c.get("vm1")!.pid).toBe(50);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  test("a throwing section releases the lock for the next one", async () => {
    const c = new HandleCache();
    const results = await Promise.allSettled([
      c.withLock("x", async () => {
        throw new Error("boom");
      }),
      c.withLock("x", async () => "second"),
    ]);
    expect(results[0]!.status).toBe("rejected");
    expect(results[1]).toEqual({ status: "fulfilled", value: "second" });
    // and later callers are not stuck
    expect(await c.withLock("x", async () => 3)).toBe(3);
  });

  test("different ids run in parallel", async () => {
    const c = new HandleCache();
    let active = 0;
    let maxActive = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runs = ["a", "b", "c"].map((id) =>
      c.withLock(id, async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await gate;
        active--;
      }),
    );
    await Bun.sleep(5);
    expect(active).toBe(3);
    release();
    await Promise.all(runs);
    expect(maxActive).toBe(3);
  });
});

describe("rediscoverHandles", () => {
  const vm = sampleVM({ id: "r1", name: "redisc", state: "running", vmsDir: "/vms" });

  test("prefers the live process over the scratch pid, keeping scratch tap/loops/dm", async () => {
    const fs = fakeFS();
    await writeHandlesFile(fs, vm.runtime.vmDir, { ...full(), pid: 111, pidStartTime: 1 });
    const procs = fakeProcs();
    const driver = fakeDriver(procs);
    driver.findProcessImpl = () => ({ pid: 222, startTime: 2 });
    const r = await rediscoverHandles(vm, driver, fs);
    expect(r.source).toBe("process");
    expect(r.scratch).toBe("ok");
    expect(r.handles).toEqual({ ...full(), pid: 222, pidStartTime: 2 });
  });

  test("finds the live process via the default fake driver (cmdline names the API socket)", async () => {
    const fs = fakeFS();
    const procs = fakeProcs();
    procs.add(333, 33, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    procs.add(334, 34, ["fake-vmm", "--api-sock", "/vms/other/api.sock"]);
    const r = await rediscoverHandles(vm, fakeDriver(procs), fs);
    expect(r.source).toBe("process");
    expect(r.scratch).toBe("missing");
    expect(r.handles).toEqual({ ...emptyHandles(), pid: 333, pidStartTime: 33 });
  });

  test("process dead → scratch contents are still returned (so cleanup can tear down kernel state)", async () => {
    const fs = fakeFS();
    await writeHandlesFile(fs, vm.runtime.vmDir, full());
    const r = await rediscoverHandles(vm, fakeDriver(fakeProcs()), fs);
    expect(r.source).toBe("scratch");
    expect(r.handles).toEqual(full());
  });

  test("neither process nor file → source none, empty handles", async () => {
    const r = await rediscoverHandles(vm, fakeDriver(fakeProcs()), fakeFS());
    expect(r).toEqual({ handles: emptyHandles(), source: "none", scratch: "missing" });
  });

  test("with procs: a scratch pid alive with its recorded start time is taken without the driver's search", async () => {
    const fs = fakeFS();
    await writeHandlesFile(fs, vm.runtime.vmDir, { ...full(), pid: 111, pidStartTime: 11 });
    const procs = fakeProcs([{ pid: 111, startTime: 11 }]);
    const driver = fakeDriver(procs);
    let searched = 0;
    driver.findProcessImpl = () => (searched++, { pid: 222, startTime: 2 });
    const r = await rediscoverHandles(vm, driver, fs, procs);
    expect(r).toEqual({ handles: { ...full(), pid: 111, pidStartTime: 11 }, source: "process", scratch: "ok", unchanged: true });
    expect(searched).toBe(0);
  });

  test("with procs: a reused scratch pid (other start time) falls back to the driver's search", async () => {
    const fs = fakeFS();
    await writeHandlesFile(fs, vm.runtime.vmDir, { ...full(), pid: 111, pidStartTime: 11 });
    const procs = fakeProcs([{ pid: 111, startTime: 99 }]);
    const driver = fakeDriver(procs);
    driver.findProcessImpl = () => ({ pid: 222, startTime: 2 });
    const r = await rediscoverHandles(vm, driver, fs, procs);
    expect(r.source).toBe("process");
    expect(r.handles).toEqual({ ...full(), pid: 222, pidStartTime: 2 });
    // dead scratch pid and no live process: still the scratch contents, for cleanup
    driver.findProcessImpl = () => null;
    const gone = await rediscoverHandles(vm, driver, fs, fakeProcs());
    expect(gone.source).toBe("scratch");
  });

  test("corrupt file and dead process → none/corrupt, no crash", async () => {
    const fs = fakeFS({ [join(vm.runtime.vmDir, "handles.json")]: "{{{" });
    const r = await rediscoverHandles(vm, fakeDriver(fakeProcs()), fs);
    expect(r).toEqual({ handles: emptyHandles(), source: "none", scratch: "corrupt" });
  });
});

describe("vmAlive", () => {
  const vm = sampleVM({ id: "al", name: "alive", state: "running" });

  function setup() {
    const procs = fakeProcs();
    procs.add(500, 12345, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
    const driver = fakeDriver(procs);
    const handles = { ...emptyHandles(), pid: 500, pidStartTime: 12345 };
    return { procs, driver, handles };
  }

  test("true when pid exists, start time matches and the API socket answers", async () => {
    const { procs, driver, handles } = setup();
    expect(await vmAlive(vm, handles, driver, procs)).toBe(true);
  });

  test("false without handles or with pid 0", async () => {
    const { procs, driver } = setup();
    expect(await vmAlive(vm, null, driver, procs)).toBe(false);
    expect(await vmAlive(vm, emptyHandles(), driver, procs)).toBe(false);
  });

  test("false when the pid is gone", async () => {
    const { procs, driver, handles } = setup();
    procs.table.delete(500);
    driver.answers = () => true; // even if something answers on the socket
    expect(await vmAlive(vm, handles, driver, procs)).toBe(false);
  });

  test("false when the start time differs (PID reuse)", async () => {
    const { procs, driver, handles } = setup();
    procs.add(500, 99999, ["/usr/bin/unrelated"]);
    driver.answers = () => true;
    expect(await vmAlive(vm, handles, driver, procs)).toBe(false);
  });

  test("false when the API socket doesn't answer (hung VMM)", async () => {
    const { procs, driver, handles } = setup();
    driver.answers = () => false;
    expect(await vmAlive(vm, handles, driver, procs)).toBe(false);
  });

  test("an unknown start time (0) skips the reuse check but still needs the socket", async () => {
    const { procs, driver } = setup();
    const h = { ...emptyHandles(), pid: 500, pidStartTime: 0 };
    expect(await vmAlive(vm, h, driver, procs)).toBe(true);
    driver.answers = () => false;
    expect(await vmAlive(vm, h, driver, procs)).toBe(false);
  });

  test("never signals anything", async () => {
    const { procs, driver, handles } = setup();
    await vmAlive(vm, handles, driver, procs);
    await vmAlive(vm, { ...handles, pidStartTime: 1 }, driver, procs);
    expect(procs.kills).toEqual([]);
    expect(driver.calls).toEqual([]);
  });
});
