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

  it.test("the handshake reads the agent's version (2); clockUs is the host's clock within the round trip; an identity with a malformed value is refused with the agent's reason, and it serves on", async () => {
    expect(agent.version).toBe(2);
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
});
