import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createExec } from "../../src/host/exec.ts";
import { createProcs } from "../../src/host/procs.ts";
import { QmpClient, QmpError, qmpExecute, qmpPing, qmpPowerdown, qmpQuit } from "../../plugins/qemu/qmp.ts";
import { needs } from "../helpers/skip.ts";

// A real QEMU with no guest at all (-M none): fast, needs only qemu-system-x86.
const qemu = Bun.which("qemu-system-x86_64");
const exec = createExec();
const procs = createProcs();

needs(!!qemu, "needs qemu-system-x86_64 (apt-get install qemu-system-x86)").describe("QMP client against a real qemu (-M none)", () => {
  let dir = "";
  let sock = "";
  let pid = 0;

  beforeAll(async () => {
    dir = mkdtempSync("/tmp/banger-qmp-");
    sock = join(dir, "qmp.sock");
    pid = await exec.spawnDetached(qemu!, ["-M", "none", "-nodefaults", "-no-user-config", "-display", "none", "-qmp", `unix:${sock},server=on,wait=off`], {
      logPath: join(dir, "qemu.log"),
    });
    const deadline = Date.now() + 10_000;
    while (!(await qmpPing(sock, 200))) {
      if (Date.now() > deadline) throw new Error(`qemu -M none did not answer: ${await Bun.file(join(dir, "qemu.log")).text()}`);
      await Bun.sleep(20);
    }
  });

  afterAll(async () => {
    const info = await procs.info(pid);
    if (info) procs.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  test("greeting, capabilities, query-status", async () => {
    const c = await QmpClient.connect(sock, 2000);
    try {
      const st = (await c.execute("query-status")) as { status: string; running: boolean };
      expect(st.status).toBe("running");
      const ver = (await c.execute("query-version")) as { qemu: { major: number } };
      expect(ver.qemu.major).toBeGreaterThanOrEqual(5);
    } finally {
      c.close();
    }
  });

  test("errors come back as QmpError; the connection stays usable", async () => {
    const c = await QmpClient.connect(sock, 2000);
    try {
      const err = (await c.execute("no-such-command").catch((e: unknown) => e)) as QmpError;
      expect(err).toBeInstanceOf(QmpError);
      expect(err.errorClass).toBe("CommandNotFound");
      expect(await c.execute("query-status")).toBeTruthy();
    } finally {
      c.close();
    }
  });

  test("stop/cont show up as events and status changes", async () => {
    const c = await QmpClient.connect(sock, 2000);
    try {
      await c.execute("stop");
      expect(((await c.execute("query-status")) as { status: string }).status).toBe("paused");
      await c.execute("cont");
      expect(((await c.execute("query-status")) as { status: string }).status).toBe("running");
      expect(c.events.map((e) => e.event)).toContain("STOP");
    } finally {
      c.close();
    }
  });

  test("one-shot helpers; powerdown is accepted even with no guest", async () => {
    expect(await qmpExecute(sock, "query-name")).toEqual({});
    expect(await qmpPowerdown(sock, 1000)).toBe(true);
  });

  test("ping on a missing socket or a non-QMP socket is false, fast", async () => {
    const t0 = performance.now();
    expect(await qmpPing(join(dir, "nope.sock"), 300)).toBe(false);
    const srv = Bun.listen({ unix: join(dir, "mute.sock"), socket: { data() {} } });
    try {
      expect(await qmpPing(join(dir, "mute.sock"), 300)).toBe(false);
    } finally {
      srv.stop(true);
    }
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  test("quit ends the process", async () => {
    expect(await qmpQuit(sock, 1000)).toBe(true);
    const deadline = Date.now() + 5000;
    while ((await procs.info(pid)) && Date.now() < deadline) await Bun.sleep(20);
    expect(await procs.info(pid)).toBeNull();
    expect(await qmpPing(sock, 300)).toBe(false);
  });
});

