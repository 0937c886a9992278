import { afterAll, beforeAll, expect } from "bun:test";
import { closeSync, constants, openSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import EXEC_AGENT_PL from "../../plugins/image/exec-agent.pl" with { type: "text" };
import { AgentFirstSSH, ExecAgent } from "../../plugins/guest/exec-agent.ts";
import { createHost } from "../../src/host/index.ts";
import { execCommandLine, REFUSED_EXIT, REFUSED_MARK } from "../../src/sessions/exec.ts";
import { IS_ROOT, needs } from "../helpers/skip.ts";

// The host's exec client (plugins/guest/exec-agent.ts) against the real
// agent (the text the image installs) in a real perl, the port being two
// FIFOs held open both ways by this process as QEMU's pipe chardev holds
// them: the frames each side writes, as the other reads them. Root: the
// agent runs commands in uid 0's HOME.
const it = needs(IS_ROOT && !!Bun.which("perl"), "needs root (commands run in uid 0's HOME) and perl");

it.describe("ExecAgent with the real exec agent", () => {
  let dir: string;
  let pipe: string;
  let held: number[] = [];
  let perl: Bun.Subprocess;
  let agent: ExecAgent;
  const host = createHost({ dial: async () => Promise.reject(new Error("no ssh here")) });
  const run = async (command: string, o: { stdin?: Uint8Array | string; signal?: AbortSignal } = {}) => {
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    const code = await agent.exec(command, { ...o, onStdout: (c) => void out.push(c.slice()), onStderr: (c) => void err.push(c.slice()) });
    return { code, out: Buffer.concat(out), err: Buffer.concat(err) };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "banger-exec-agent-"));
    pipe = join(dir, "exec");
    Bun.spawnSync(["mkfifo", "-m", "600", `${pipe}.in`, `${pipe}.out`]);
    held = [openSync(`${pipe}.in`, constants.O_RDWR), openSync(`${pipe}.out`, constants.O_RDWR)];
    perl = Bun.spawn(["bash", "-c", 'exec perl -e "$1" <"$2" >"$3"', "bash", EXEC_AGENT_PL, `${pipe}.in`, `${pipe}.out`], { stdout: "ignore", stderr: "inherit" });
    agent = await ExecAgent.attach(host, pipe, { deadline: Date.now() + 20_000, alive: async () => perl.exitCode === null });
  });
  afterAll(async () => {
    agent?.close();
    perl.kill("SIGKILL");
    await perl.exited;
    for (const fd of held) closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });

  it.test("flow: paused, a command's output stops coming (its writes block on a full pipe); resumed, the rest comes whole; an older agent (version 2) has no h/g frames, so its pause is SIGSTOP of the command's group", async () => {
    for (const version of [3, 2]) {
      agent.version = version; // the older agent's way, asked of this one
      let got = 0;
      let ctl: { pause(): void; resume(): void } | undefined;
      const done = agent.exec("head -c 20000000 /dev/zero", {
        onStdout: (c) => void (got += c.length),
        flow: (f) => {
          ctl = f;
          f.pause();
        },
      });
      await Bun.sleep(600);
      const held = got;
      // what was on its way: a pipe's 64 KiB, a chunk or two
      expect([version, held]).toEqual([version, expect.any(Number)]);
      expect(held).toBeLessThan(1 << 20);
      await Bun.sleep(400);
      expect([version, got]).toEqual([version, held]);
      ctl!.resume();
      expect(await done).toBe(0);
      expect([version, got]).toEqual([version, 20_000_000]);
    }
    agent.version = 3;
  });

  it.test("the handshake reads the agent's version (3); clockUs is the host's clock within the round trip; an identity with a malformed value is refused with the agent's reason, and it serves on", async () => {
    expect(agent.version).toBe(3);
    const before = Date.now();
    const us = await agent.clockUs();
    const after = Date.now();
    expect(us / 1000).toBeGreaterThanOrEqual(before - 2);
    expect(us / 1000).toBeLessThanOrEqual(after + 2);
    // a clock offset refused as malformed (20 digits) before anything is applied: nothing of this host changes
    await expect(agent.identity({ clockOffsetNs: 10n ** 19n })).rejects.toThrow(/^identity: a malformed line$/);
    expect((await run("echo on")).out.toString()).toBe("on\n");
  });

  it.test("vm exec's own command lines: with options (a wrapper of several KB, in several frames) and a user the guest lacks: refused as over SSH; the agent serves the next", async () => {
    const token = "0123456789abcdef";
    const refused = execCommandLine(["true"], { user: "no-such-user", env: ["A=it's; $(x)"], cwd: "/tmp" }, token);
    expect(Buffer.byteLength(refused)).toBeGreaterThan(4000);
    const r = await run(refused);
    expect(r.code).toBe(REFUSED_EXIT);
    expect(r.err.toString()).toStartWith(`${REFUSED_MARK}${token}: no such user`);
    const ok = await run(execCommandLine(["sh", "-c", 'printf "%s|%s" "$A" "$PWD"'], { env: ["A=it's; $(x)\nnext"], cwd: "/tmp" }, token));
    expect([ok.code, ok.out.toString()]).toEqual([0, "it's; $(x)\nnext|/tmp"]);
  });

  it.test("a command line and stdin each longer than many frames arrive whole; stdout and stderr apart and binary-clean; the status", async () => {
    const long = "x".repeat(20_000);
    const stdin = new Uint8Array(50_000).map((_, i) => (i * 7) % 256);
    const r = await run(`printf '%s' ${long} | wc -c; wc -c; printf 'a\\0b' >&2; exit 9`, { stdin });
    expect(r.code).toBe(9);
    expect(r.out.toString()).toBe("20000\n50000\n");
    expect([...r.err]).toEqual([97, 0, 98]);
    const big = await run("head -c 3000000 /dev/zero | tr '\\0' 'z'");
    expect([big.code, big.out.length, big.out.every((b) => b === 122)]).toEqual([0, 3_000_000, true]);
  });

  it.test("two commands at once; an abort kills its command (SIGKILL to its group) and the other goes on", async () => {
    const ac = new AbortController();
    const pgFile = join(dir, "pgid");
    // the shell is the command's session (and group) leader: $$ names its group
    const slow = run(`echo $$ > ${pgFile}; sleep 30 | cat; echo never`, { signal: ac.signal });
    const quick = run("echo quick");
    expect((await quick).out.toString()).toBe("quick\n");
    let pgid = 0;
    for (let i = 0; i < 200 && !pgid; i++) {
      pgid = Number((await Bun.file(pgFile).text().catch(() => "")).trim()) || 0;
      if (!pgid) await Bun.sleep(10);
    }
    expect(pgid).toBeGreaterThan(1);
    const groupAlive = () => {
      try {
        process.kill(-pgid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(groupAlive()).toBe(true);
    ac.abort();
    await expect(slow).rejects.toThrow("aborted");
    // the signal lands as the agent reads it: a moment after the abort
    for (let i = 0; i < 100 && groupAlive(); i++) await Bun.sleep(20);
    expect(groupAlive()).toBe(false);
    expect((await run("echo after")).out.toString()).toBe("after\n");
  });

  /** Read a pid a command wrote to `file` (it may not have yet). */
  const pidIn = async (file: string): Promise<number> => {
    for (let i = 0; i < 300; i++) {
      const n = Number((await Bun.file(file).text().catch(() => "")).trim());
      if (n > 1) return n;
      await Bun.sleep(10);
    }
    throw new Error(`no pid in ${file}`);
  };
  const gone = async (pid: number, ms: number): Promise<boolean> => {
    for (const end = Date.now() + ms; Date.now() < end; await Bun.sleep(20)) {
      try {
        if (/^\S+ \(.*\) Z /.test(await Bun.file(`/proc/${pid}/stat`).text())) return true;
      } catch {
        return true;
      }
    }
    return false;
  };
  /** vm exec's way of running it: onRunning's signal, the output, the status. */
  const runSignalled = (command: string, o: { signal?: AbortSignal } = {}) => {
    let ctl: { signal(n: "INT" | "TERM" | "HUP"): void } | null = null;
    const out: Uint8Array[] = [];
    const done = agent.exec(command, { ...o, onStdout: (c) => void out.push(c.slice()), onRunning: (c) => void (ctl = c) });
    return { send: (n: "INT" | "TERM" | "HUP") => ctl!.signal(n), done: done.then((code) => ({ code, out: Buffer.concat(out).toString() })) };
  };

  it.test("a signal through onRunning reaches the command, which may clean up and exit as it would in a terminal; its output and status come back", async () => {
    const ready = join(dir, "ready-1");
    const bare = runSignalled(`trap 'echo cleaned up; exit 7' INT; echo x > ${ready}; while :; do sleep 0.05; done`);
    while (!(await Bun.file(ready).exists())) await Bun.sleep(10);
    bare.send("INT");
    expect(await bare.done).toEqual({ code: 7, out: "cleaned up\n" });
    // a command under vm exec's wrapper (--timeout: the command runs in a group of its own): the wrapper passes it on
    const childPid = join(dir, "child-1");
    const inner = `echo $$ > ${childPid}; trap 'echo got $1; exit 5' TERM; while :; do sleep 0.05; done`;
    const wrapped = runSignalled(execCommandLine(["bash", "-c", inner, "bash", "TERM"], { timeoutMs: 60_000 }, "0123456789abcdef"));
    const child = await pidIn(childPid);
    wrapped.send("TERM");
    expect(await wrapped.done).toEqual({ code: 5, out: "got TERM\n" });
    expect(await gone(child, 2000)).toBe(true);
  });

  it.test("an abort of a command under the --timeout wrapper (SIGKILL to the wrapper's group) still ends the command: the watchdog sees the wrapper gone", async () => {
    const ac = new AbortController();
    const childPid = join(dir, "child-2");
    const r = run(execCommandLine(["bash", "-c", `echo $$ > ${childPid}; exec sleep 313`], { timeoutMs: 3_600_000 }, "0123456789abcdef"), { signal: ac.signal });
    const child = await pidIn(childPid);
    ac.abort();
    await expect(r).rejects.toThrow("aborted");
    // the watchdog looks each second
    expect(await gone(child, 3000)).toBe(true);
  });

  it.test("the --timeout wrapper's watchdog still fires on time (exit 124, the command's tree killed), for a fraction and over a second", async () => {
    for (const [ms, min, max] of [[400, 350, 1500], [1300, 1250, 2600]] as const) {
      const childPid = join(dir, `child-t${ms}`);
      const t0 = performance.now();
      const r = await run(execCommandLine(["bash", "-c", `echo $$ > ${childPid}; sleep 30 & wait`], { timeoutMs: ms }, "0123456789abcdef"));
      const took = performance.now() - t0;
      expect(r.code).toBe(124);
      expect(took).toBeGreaterThanOrEqual(min);
      expect(took).toBeLessThan(max);
      expect(await gone(await pidIn(childPid), 2000)).toBe(true);
    }
  });

  it.test("AgentFirstSSH: a plain command over this agent, with no SSH dialled", async () => {
    let dials = 0;
    // a second host side on the same port: the first one's frames are not its own, and are dropped
    const second = await ExecAgent.attach(host, pipe, { deadline: Date.now() + 20_000, alive: async () => true });
    const conn = new AgentFirstSSH(second, async () => {
      dials++;
      throw new Error("no ssh here");
    });
    const out: string[] = [];
    expect(await conn.exec("echo $0 $HOME", { onStdout: (c) => void out.push(new TextDecoder().decode(c)) })).toBe(0);
    expect(out.join("")).toMatch(/^(ba)?sh \/root\n$/);
    expect(dials).toBe(0);
    second.close();
  });
  it.test("a daemon gone while it held a command: the next one's attach lets it go, so it runs to its end", async () => {
    const marker = join(dir, "released");
    let ctl: { pause(): void } | undefined;
    const first = agent;
    void first.exec(`head -c 5000000 /dev/zero; touch ${marker}`, { onStdout: () => {}, flow: (f) => (ctl = f) }).catch(() => {});
    ctl!.pause();
    await Bun.sleep(500);
    expect(await Bun.file(marker).exists()).toBe(false);
    first.close(); // what a daemon's death leaves: the held command, and nobody to say go
    const next = await ExecAgent.attach(host, pipe, { deadline: Date.now() + 20_000, alive: async () => perl.exitCode === null });
    // the next daemon reads the port (its next command's frames come after the old one's, which it drops)
    expect(await next.exec("true")).toBe(0);
    for (let i = 0; i < 100 && !(await Bun.file(marker).exists()); i++) {
      await next.exec("true");
      await Bun.sleep(50);
    }
    expect(await Bun.file(marker).exists()).toBe(true);
    agent = next; // closed by afterAll
  });
});
