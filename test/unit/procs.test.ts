import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { anyThreadRunning, createProcs, parseProcStat, sameProcess } from "../../src/host/procs.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-procs-"));
const children: number[] = [];
afterAll(() => {
  for (const pid of children) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A /proc/<pid>/stat line: fields 3.. after comm; starttime is field 22. */
function statLine(pid: number, comm: string, state: string, startTime: number): string {
  // fields 4..21 (18 of them), then 22 = starttime, then a few more
  const mid = Array.from({ length: 18 }, (_, i) => String(i + 4));
  return `${pid} (${comm}) ${state} ${mid.join(" ")} ${startTime} 23 24 25\n`;
}

describe("parseProcStat", () => {
  test("plain comm", () => {
    expect(parseProcStat(statLine(1, "bash", "S", 424242))).toEqual({ state: "S", startTime: 424242 });
  });

  test.each(["with space", "a) b", "x) S 1 2 3 (y", ")", "((", "qemu-system-x86"])("comm %j with spaces and ')' doesn't shift the fields", (comm) => {
    expect(parseProcStat(statLine(77, comm, "R", 1234567))).toEqual({ state: "R", startTime: 1234567 });
  });

  test("garbage → null", () => {
    expect(parseProcStat("")).toBeNull();
    expect(parseProcStat("1234 no parens at all")).toBeNull();
    expect(parseProcStat("1 (x)")).toBeNull();
    expect(parseProcStat("1 (x) S 1 2")).toBeNull();
  });

  test("the real /proc/self/stat parses and agrees with the kernel's field 22", () => {
    const raw = readFileSync(`/proc/${process.pid}/stat`, "utf8");
    const parsed = parseProcStat(raw)!;
    const fields = raw.slice(raw.lastIndexOf(")") + 2).trim().split(" ");
    expect(parsed.state).toBe(fields[0]!);
    expect(parsed.startTime).toBe(Number(fields[19]));
    expect(parsed.startTime).toBeGreaterThan(0);
  });
});

describe("createProcs (real /proc)", () => {
  const procs = createProcs();

  test("info(process.pid) matches our own process", async () => {
    const info = (await procs.info(process.pid))!;
    expect(info.pid).toBe(process.pid);
    expect(info.startTime).toBe(parseProcStat(readFileSync(`/proc/${process.pid}/stat`, "utf8"))!.startTime);
    expect(info.cmdline.length).toBeGreaterThan(0);
    expect(info.cmdline.join(" ")).toContain("test");
    // stable across calls: it's what guards against PID reuse
    expect((await procs.info(process.pid))!.startTime).toBe(info.startTime);
  });

  test("a nonexistent pid and invalid pids → null", async () => {
    expect(await procs.info(4_194_305)).toBeNull(); // above any pid_max
    expect(await procs.info(0)).toBeNull();
    expect(await procs.info(-1)).toBeNull();
    expect(await procs.info(1.5)).toBeNull();
    expect(await procs.info(Number.NaN)).toBeNull();
  });

  test("a process whose comm has spaces and ')' is read correctly", async () => {
    const link = join(dir, "x) (y z");
    symlinkSync("/bin/sleep", link);
    const child = spawn(link, ["7.25"], { stdio: "ignore" });
    children.push(child.pid!);
    await new Promise((r) => child.once("spawn", r));
    let info = null;
    for (let i = 0; i < 50 && !(info?.cmdline.includes("7.25")); i++) {
      info = await procs.info(child.pid!);
      await Bun.sleep(10);
    }
    expect(info).not.toBeNull();
    expect(readFileSync(`/proc/${child.pid}/stat`, "utf8")).toContain("(x) (y z)");
    expect(info!.startTime).toBeGreaterThan(0);
    expect(info!.cmdline).toEqual([link, "7.25"]);
    const found = await procs.find(link, "7.25");
    expect(found.map((p) => p.pid)).toEqual([child.pid!]);
    expect(procs.kill(child.pid!, "SIGKILL")).toBe(true);
    await new Promise((r) => child.once("exit", r));
    expect(await procs.info(child.pid!)).toBeNull();
  });

  test("a zombie counts as gone", async () => {
    // sh starts a short-lived child, then execs a sleep that never reaps it: a zombie
    const child = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 5"], { stdio: ["ignore", "pipe", "ignore"] });
    children.push(child.pid!);
    const zpid = Number(await new Promise<string>((r) => child.stdout!.once("data", (d) => r(String(d).trim()))));
    let state = "";
    for (let i = 0; i < 200 && state !== "Z"; i++) {
      state = parseProcStat(readFileSync(`/proc/${zpid}/stat`, "utf8"))?.state ?? "";
      if (state !== "Z") await Bun.sleep(10);
    }
    expect(state).toBe("Z");
    expect(await procs.info(zpid)).toBeNull();
  });

  test("kill of a nonexistent pid → false", () => {
    expect(procs.kill(4_194_305, 0)).toBe(false);
  });
});

describe("createProcs (fake /proc root)", () => {
  const root = join(dir, "proc");
  function fakeProc(pid: number, comm: string, state: string, startTime: number, cmdline: string[] | null) {
    mkdirSync(join(root, String(pid)), { recursive: true });
    writeFileSync(join(root, String(pid), "stat"), statLine(pid, comm, state, startTime));
    if (cmdline) writeFileSync(join(root, String(pid), "cmdline"), cmdline.join("\0") + "\0");
  }
  fakeProc(100, "qemu) x", "S", 5000, ["qemu-system-x86_64", "-qmp", "unix:/vms/a/api.sock,server=on"]);
  fakeProc(101, "zomb", "Z", 5001, []);
  fakeProc(102, "dead", "X", 5002, []);
  fakeProc(103, "kthread", "S", 5003, null);
  fakeProc(104, "qemu", "S", 5004, ["qemu-system-x86_64", "-qmp", "unix:/vms/b/api.sock,server=on"]);
  // killed -9: the main thread is a zombie while a second thread still exits (and holds the files)
  fakeProc(105, "dying", "Z", 5005, ["bangerd"]);
  for (const [tid, state] of [["105", "Z"], ["106", "R"]] as const) {
    mkdirSync(join(root, "105", "task", tid), { recursive: true });
    writeFileSync(join(root, "105", "task", tid, "stat"), statLine(Number(tid), "dying", state, 5005));
  }
  // every thread a zombie: dead
  fakeProc(107, "gone", "Z", 5007, []);
  mkdirSync(join(root, "107", "task", "107"), { recursive: true });
  writeFileSync(join(root, "107", "task", "107", "stat"), statLine(107, "gone", "Z", 5007));
  // a dead qemu whose command line still matches: found by its line, then dropped as gone
  fakeProc(108, "qemu", "Z", 5008, ["qemu-system-x86_64", "-qmp", "unix:/vms/c/api.sock,server=on"]);
  mkdirSync(join(root, "self"), { recursive: true });
  const procs = createProcs(root);

  test("info reads state, start time and cmdline; Z and X are gone; no cmdline → []", async () => {
    expect(await procs.info(100)).toEqual({ pid: 100, startTime: 5000, cmdline: ["qemu-system-x86_64", "-qmp", "unix:/vms/a/api.sock,server=on"] });
    expect(await procs.info(101)).toBeNull();
    expect(await procs.info(102)).toBeNull();
    expect(await procs.info(103)).toEqual({ pid: 103, startTime: 5003, cmdline: [] });
    expect(await procs.info(999)).toBeNull();
  });

  test("a zombie main thread with a thread still exiting is alive until every thread is gone", async () => {
    expect(await procs.info(105)).toEqual({ pid: 105, startTime: 5005, cmdline: ["bangerd"] });
    expect(anyThreadRunning(105, root)).toBe(true);
    expect(await procs.info(107)).toBeNull();
    expect(anyThreadRunning(107, root)).toBe(false);
    expect(anyThreadRunning(999, root)).toBe(false);
  });

  test("find matches every needle and skips non-numeric entries and zombies", async () => {
    expect((await procs.find("qemu-system", "/vms/a/api.sock")).map((p) => p.pid)).toEqual([100]);
    expect((await procs.find("qemu-system")).map((p) => p.pid).sort()).toEqual([100, 104]);
    expect(await procs.find("nothing-like-this")).toEqual([]);
    expect(await procs.find("/vms/c/api.sock")).toEqual([]);
    // a line of several arguments is matched across them, as the command line reads
    expect((await procs.find("-qmp unix:/vms/b/api.sock")).map((p) => p.pid)).toEqual([104]);
  });

  test("sameProcess: the pid's process only while its start time matches; 0 means not recorded", async () => {
    expect((await sameProcess(procs, 100, 5000))?.pid).toBe(100);
    expect(await sameProcess(procs, 100, 4999)).toBeNull(); // pid reused by a stranger
    expect(await sameProcess(procs, 100, -1)).toBeNull();
    expect((await sameProcess(procs, 100, 0))?.pid).toBe(100);
    expect(await sameProcess(procs, 101, 0)).toBeNull(); // a zombie is gone
    expect(await sameProcess(procs, 999, 0)).toBeNull();
  });
});
