import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthenticationError, CommandExitError, Sandbox } from "e2b";
import { fakeHost, testLogger } from "../helpers/fakes.ts";
import type { ExecResult, ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import type { GuestSession, VMRecord } from "../../src/shared/model.ts";
import { SessionEngine, type SessionEngineDeps } from "../../src/sessions/engine.ts";
import { CloseStdinScript, StartFollowScript, bootstrapCommand } from "../../src/sessions/scripts.ts";
import { Store } from "../../src/store/store.ts";
import { haltedError, type Engine } from "../../src/core/engine.ts";
import type { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { createEnvd, type EnvdSandbox } from "../../src/daemon/e2b/envd/index.ts";
import { processService } from "../../src/daemon/e2b/envd/process.ts";
import { endEvent } from "../../src/daemon/e2b/envd/process-events.ts";
import TIMEOUT_SH from "../../src/sessions/scripts/timeout.sh" with { type: "text" };

const HOSTILE = "it's; $(touch /tmp/pwned) `x` \"q\" \\ \nnext line";
const MARK = "banger-start-tok";

/** Plays the guest's side of a start: replies to the start-follow exec as told, records every script. */
class RecordingGuest implements GuestSSH {
  execs: { command: string; stdin: string }[] = [];
  scripts: string[] = [];
  closed = false;
  constructor(
    private readonly _start: (script: string, o: ExecStreamOptions) => number | Promise<number>,
    private readonly _script: (script: string) => Partial<ExecResult> = () => ({}),
  ) {}
  async exec(command: string, opts: ExecStreamOptions = {}): Promise<number> {
    let stdin = "";
    const input = opts.stdin;
    if (input && typeof input === "object" && Symbol.asyncIterator in input) {
      // the start script is the first chunk; the rest of stdin only ends the follow
      for await (const c of input) {
        stdin = new TextDecoder().decode(c);
        break;
      }
    } else if (typeof input === "string") stdin = input;
    this.execs.push({ command, stdin });
    return stdin ? this._start(stdin, opts) : 0;
  }
  async runScript(script: string): Promise<ExecResult> {
    this.scripts.push(script);
    const r = this._script(script);
    return { exitCode: r.exitCode ?? 0, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  }
  async upload(): Promise<void> {}
  close(): void {
    this.closed = true;
  }
}

const enc = (s: string) => new TextEncoder().encode(s);

/** A guest whose process prints, then exits with `code`. */
function guestThatRuns(out: string, err: string, code: number, pid = 4242): RecordingGuest {
  return new RecordingGuest((_script, o) => {
    o.onStderr?.(enc(`${MARK} pid ${pid} 999\n${err}`));
    o.onStdout?.(enc(out));
    return code;
  });
}

let dir: string;
let store: Store;
let vm: VMRecord;
const servers: { stop(force?: boolean): unknown }[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "banger-e2b-proc-unit-"));
  store = new Store(join(dir, "banger.db"));
  const now = new Date().toISOString();
  vm = {
    id: "vm-1",
    name: "sbx",
    spec: { image: "none", cpus: 1, memoryMiB: 128, diskMiB: 0, workDiskMiB: 0, driver: "none", storage: "copy" },
    runtime: {
      state: "running", guestIP: "", apiSockPath: "", vsockPath: "", vsockCID: 0, logPath: "", metricsPath: "",
      dnsName: "", vmDir: "", systemOverlay: "", workDiskPath: "", lastError: "", sshHost: "127.0.0.1", sshPort: 0,
    },
    createdAt: now,
    updatedAt: now,
  };
  store.upsertVM(vm);
});

afterAll(() => {
  for (const s of servers) void s.stop(true);
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** The engine's halt watch as a VMM that halts the guest `haltAfterMs` after a follow starts (never: undefined). */
function haltingEngine(haltAfterMs?: number): Engine {
  return {
    watchHalt: (_vm: VMRecord, signal: AbortSignal) => {
      const ctl = new AbortController();
      const onAbort = () => ctl.abort(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      const t = haltAfterMs === undefined ? undefined : setTimeout(() => ctl.abort(haltedError(vm, "the fake VMM stopped its guest: a write to its disk found no space left on the host's filesystem")), haltAfterMs);
      return { signal: ctl.signal, stop: () => (clearTimeout(t), signal.removeEventListener("abort", onAbort)) };
    },
  } as unknown as Engine;
}

async function sandboxWith(guest: RecordingGuest, o: { haltAfterMs?: number } = {}) {
  const fired: { hook: string; session: GuestSession }[] = [];
  const sessions = new SessionEngine({
    hooks: {
      runAll: async (hook: string, ctx: { session: GuestSession }) => {
        fired.push({ hook, session: ctx.session });
        return [];
      },
    } as unknown as SessionEngineDeps["hooks"],
    repo: store.sessions,
    host: fakeHost(),
    log: testLogger(),
    dial: async () => guest,
    vmAlive: async () => true,
    getVM: (id) => store.getVM(id),
    clock: { now: () => new Date(), sleep: (ms) => Bun.sleep(ms), timer: () => () => {} },
    newId: () => `sess${++n}`,
    stateRoot: "/state",
    randomToken: () => "tok",
  });
  const envd = createEnvd({ engine: haltingEngine(o.haltAfterMs), ssh: {} as SSHPool, host: fakeHost(), log: testLogger(), sessions }, [processService()], []);
  const sandbox: EnvdSandbox = { id: "debug_sandbox_id", vm, envVars: { FROM_SANDBOX: "s", BOTH: "sandbox" } };
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => envd.handle(req, sandbox) });
  servers.push(server);
  return { sbx: await Sandbox.create({ debug: true, sandboxUrl: `http://127.0.0.1:${server.port}` }), sessions, fired };
}

/**
 * What a rendered script's values are, as bash reads them: its prelude (the
 * quoted NAME=value lines, up to the single-line `last`) is run, then `print`
 * (shell) prints what it likes, NUL-separated.
 */
function bashReads(script: string, last: string, print: string): string[] {
  const at = script.search(new RegExp(`^${last}=`, "m"));
  const prelude = script.slice(0, script.indexOf("\n", at));
  const r = Bun.spawnSync(["bash", "-c", `${prelude}\n${print}`]);
  return r.stdout.toString().split("\0").slice(0, -1);
}

/** The runner a start script carries, and its values: command and args, env, cwd, user, cwd-home, timeout. */
function runnerOf(startScript: string) {
  const [runner] = bashReads(startScript, "LABEL", `printf '%s\\0' "$RUNNER"`);
  const [cmd, env, cwd, user, home, timeout, optional] = ["CMD", "RUN_ENV", "RUN_CWD", "RUN_USER", "RUN_CWD_HOME", "TIMEOUT", "RUN_USER_OPTIONAL"].map((name) =>
    bashReads(runner!, "PTY_ROWS", name === "CMD" || name === "RUN_ENV" ? `printf '%s\\0' "\${${name}[@]}"` : `printf '%s\\0' "$${name}"`),
  );
  return { cmd: cmd!, env: env!, cwd: cwd![0], user: user![0], home: home![0], timeout: timeout![0], optional: optional![0] };
}

describe("envd process service (recording guest)", () => {
  test("Start is one exec: the bootstrap reads the script from stdin; output, exit code and the row follow", async () => {
    const guest = guestThatRuns("hello\n", "warn\n", 5);
    const { sbx, sessions, fired } = await sandboxWith(guest);
    const err = (await sbx.commands.run(`echo ${HOSTILE}`, { envs: { HOSTILE, BOTH: "request" }, cwd: "/w d/'x'" }).catch((e: unknown) => e)) as CommandExitError;
    expect(err).toBeInstanceOf(CommandExitError);
    expect(err.exitCode).toBe(5);
    expect(err.stdout).toBe("hello\n");
    expect(err.stderr).toBe("warn\n");
    expect(guest.execs).toHaveLength(1);
    const { command, stdin } = guest.execs[0]!;
    expect(command).toBe(bootstrapCommand(Buffer.byteLength(stdin)));
    expect(guest.scripts).toEqual([]); // no preflight round trips
    // what the guest is asked, as bash reads it back
    expect(bashReads(stdin, "LABEL", `printf '%s\\0' "$MARK"`)).toEqual([MARK]);
    const r = runnerOf(stdin);
    expect(r.cmd).toEqual(["/bin/bash", "-l", "-c", `echo ${HOSTILE}`]);
    expect(r.env).toContain(`HOSTILE=${HOSTILE}`);
    expect(r.env).toContain("FROM_SANDBOX=s");
    // the request's envs win over the sandbox's
    expect(r.env.filter((e) => e.startsWith("BOTH="))).toEqual(["BOTH=request"]);
    expect([r.cwd, r.user, r.home]).toEqual(["/w d/'x'", "user", "1"]);
    // the SDK's default 60 s deadline, as it remains when the call arrives
    expect(Number(r.timeout)).toBeGreaterThan(55);
    expect(Number(r.timeout)).toBeLessThanOrEqual(60);
    // recorded running, then exited, then forgotten (the guest removes its dir itself: CLEANUP)
    expect(fired.map((f) => [f.hook, f.session.status, f.session.guestPid, f.session.exitCode])).toEqual([
      ["session:start", "running", 4242, null],
      ["session:stop", "exited", 4242, 5],
    ]);
    expect(fired[0]!.session.name).toStartWith("e2b-");
    expect(sessions.list("vm-1").some((x) => x.id === fired[0]!.session.id)).toBe(false);
    expect(bashReads(stdin, "CLEANUP", `printf '%s\\0' "$CLEANUP"`)).toEqual(["1"]);
  });

  test("a sandbox its VMM halts mid-command (a full host disk): the command's stream ends within the watch with the halt's words, not at its deadline", async () => {
    // a process that runs (and prints) until its follower goes, as a frozen guest's would never end
    const guest = new RecordingGuest(async (_script, o) => {
      o.onStderr?.(enc(`${MARK} pid 4343 999\n`));
      o.onStdout?.(enc("working\n"));
      const stdin = o.stdin as AsyncIterable<Uint8Array>;
      for await (const _ of stdin) void _;
      return 255;
    });
    const { sbx } = await sandboxWith(guest, { haltAfterMs: 300 });
    const started = Date.now();
    const out: string[] = [];
    const err = (await sbx.commands.run("sleep 100", { timeoutMs: 20_000, onStdout: (d) => void out.push(d) }).catch((e: unknown) => e)) as Error;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(out).toEqual(["working\n"]);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain("vm sbx is halted: the fake VMM stopped its guest: a write to its disk found no space left on the host's filesystem; free space there, then `banger vm resume sbx`");
  });

  test("the user comes from Authorization: Basic; root runs as the login (no switch); none named is `user`, or root where the guest lacks it; timeoutMs is the guest timeout", async () => {
    const guest = guestThatRuns("", "", 0);
    const { sbx } = await sandboxWith(guest);
    await sbx.commands.run("true", { user: "nobody", timeoutMs: 1500 });
    await sbx.commands.run("true", { user: "root", timeoutMs: 0 });
    await sbx.commands.run("true");
    await sbx.commands.run("true", { user: "it's;$(touch /tmp/pwned)" });
    const runners = guest.execs.map((e) => runnerOf(e.stdin));
    expect(runners.map((r) => [r.user, r.optional])).toEqual([["nobody", ""], ["", ""], ["user", "1"], ["it's;$(touch /tmp/pwned)", ""]]);
    expect(Number(runners[0]!.timeout)).toBeGreaterThan(1);
    expect(Number(runners[0]!.timeout)).toBeLessThanOrEqual(1.5);
    expect(runners[1]!.timeout).toBe("");
  });

  test("a user no account can have (a newline, a NUL) is the SDK's AuthenticationError before anything reaches the guest", async () => {
    const guest = guestThatRuns("", "", 0);
    const { sbx, sessions } = await sandboxWith(guest);
    const before = sessions.list("vm-1").length;
    for (const user of ["a\nb", "x\u0000"]) {
      const err = await sbx.commands.run("true", { user }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AuthenticationError);
      expect(String(err)).toContain(`invalid username: ${JSON.stringify(user)}`);
    }
    expect(guest.execs).toEqual([]);
    expect(sessions.list("vm-1")).toHaveLength(before);
  });

  test("a refused start (no such user) is the SDK's AuthenticationError in envd's words, recorded failed", async () => {
    const guest = new RecordingGuest((_s, o) => {
      o.onStderr?.(enc(`${MARK} failed no such user in the guest: ghost\n`));
      return 1;
    });
    const { sbx, sessions } = await sandboxWith(guest);
    const err = await sbx.commands.run("true", { user: "ghost" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(String(err)).toContain("error looking up user 'ghost': unknown user");
    const row = sessions.list("vm-1").at(-1)!;
    expect(row.status).toBe("failed");
    expect(row.launchStage).toBe("launch");
  });

  test("kill, closeStdin and resize ask the guest for that session's dir; an unknown pid asks nothing and is false", async () => {
    let end!: (code: number) => void;
    const guest = new RecordingGuest(
      (_s, o) => {
        o.onStderr?.(enc(`${MARK} pid 777 1\n`));
        // runs until the test ends it
        return new Promise<number>((r) => (end = r));
      },
      (script) => ({ stdout: script.includes("SIG=") ? "sent\n" : script.includes("COLS=") ? "resized\n" : "closed\n" }),
    );
    const { sbx, sessions } = await sandboxWith(guest);
    const h = await sbx.commands.run("cat", { background: true, stdin: true });
    const row = sessions.list("vm-1").find((x) => x.guestPid === 777)!;
    expect(row.status).toBe("running");
    expect(await sbx.commands.kill(777)).toBe(true);
    await sbx.commands.closeStdin(777);
    await sbx.pty.resize(777, { cols: 120, rows: 33 });
    expect(guest.scripts.map((s) => /^(SIG|COLS)=(.*)$/m.exec(s)?.[0] ?? "close")).toEqual(["SIG='KILL'", "close", "COLS='120'"]);
    for (const s of guest.scripts) expect(s).toContain(`DIR='/state/${row.id}'`);
    const before = guest.scripts.length;
    expect(await sbx.commands.kill(778)).toBe(false);
    expect(guest.scripts.length).toBe(before);
    end(137);
    expect(((await h.wait().catch((e: unknown) => e)) as CommandExitError).exitCode).toBe(-1);
  });

  test("end events: exit codes as is; a death by SIGKILL/SIGTERM as Go's envd tells it", () => {
    const base = store.sessions.list()[0]!;
    const end = (exitCode: number | null) => endEvent({ ...base, exitCode, status: exitCode === null ? "failed" : "exited", launchMessage: "gone" }).event.value as { exitCode: number; exited: boolean; status: string; error?: string };
    expect(end(0)).toMatchObject({ exitCode: 0, exited: true, status: "exit status 0" });
    expect(end(3)).toMatchObject({ exitCode: 3, exited: true, status: "exit status 3" });
    expect(end(137)).toMatchObject({ exitCode: -1, exited: false, status: "signal: killed" });
    expect(end(143)).toMatchObject({ exitCode: -1, exited: false, status: "signal: terminated" });
    expect(end(null)).toMatchObject({ exitCode: -1, exited: false, error: "gone" });
  });
});

describe("start-follow script, run by a real bash (this host as the guest)", () => {
  test("hostile cmd, args, env and cwd arrive as given; control line first; exit status is the command's", async () => {
    const root = mkdtempSync(join(tmpdir(), "banger-sf-"));
    const cwd = join(root, "d'ir; $(x)\nz");
    mkdirSync(cwd);
    const stateDir = join(root, "state");
    try {
      const script = StartFollowScript(
        { guestStateDir: stateDir, command: "bash", args: ["-c", 'printf "%s|" "$1" "$E" "$PWD"; echo oops >&2; exit 9', "arg0", HOSTILE], cwd, stdinMode: "closed" },
        { env: [`E=${HOSTILE}`], timeoutMs: 20_000 },
        MARK,
        `{"tag":${JSON.stringify(HOSTILE)}}`,
      );
      // stdin stays open while following (its end means "stop following"), as an SSH channel's does
      const p = Bun.spawn(["bash", "-c", bootstrapCommand(Buffer.byteLength(script))], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
      p.stdin.write(enc(script));
      await p.stdin.flush();
      const [out, err, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      await p.stdin.end();
      const r = { stdout: out, exitCode };
      expect(err).toMatch(new RegExp(`^${MARK} pid \\d+ \\d+\\n`));
      expect(err.slice(err.indexOf("\n") + 1)).toBe("oops\n");
      expect(r.stdout.toString()).toBe(`${HOSTILE}|${HOSTILE}|${cwd}|`);
      expect(r.exitCode).toBe(9);
      expect(Bun.file(join(stateDir, "label")).size).toBeGreaterThan(0);
      expect(Bun.spawnSync(["stat", "-c", "%a", join(stateDir, "label"), join(stateDir, "run.sh")]).stdout.toString()).toBe("600\n600\n");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("start-follow follows with bash's own reads and starts no setsid/tail (this host as the guest)", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "banger-sf2-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  /** Run start-follow for bash -c BODY; the follower's stdin stays open until `stop()`. */
  const start = (name: string, body: string, o: { stdinMode?: "pipe" | "closed"; cleanup?: boolean } = {}) => {
    const stateDir = join(root, name);
    const script = StartFollowScript({ guestStateDir: stateDir, command: "bash", args: ["-c", body], cwd: "", stdinMode: o.stdinMode ?? "closed" }, { timeoutMs: 60_000 }, MARK, "", o.cleanup);
    const p = Bun.spawn(["bash", "-c", bootstrapCommand(Buffer.byteLength(script))], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    p.stdin.write(enc(script));
    void p.stdin.flush();
    const out = new Response(p.stdout).arrayBuffer();
    const err = new Response(p.stderr).arrayBuffer();
    return { p, stateDir, out, err, stop: () => void p.stdin.end() };
  };
  const pidOf = async (stateDir: string) => {
    for (let i = 0; i < 500 && !existsSync(join(stateDir, "pid")); i++) await Bun.sleep(10);
    return Number(readFileSync(join(stateDir, "pid"), "utf8").split(" ")[0]);
  };

  test("binary output (NULs, no final newline, more than a 64 KiB chunk) arrives byte for byte on the right stream; the dir goes after", async () => {
    const bytes = new Uint8Array(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i >> 9)) & 0xff;
    bytes.set([0, 0, 10, 0], 1000);
    const file = join(root, "blob");
    writeFileSync(file, bytes);
    const r = start("bin", `cat '${file}'; printf 'e\\0rr\\0' >&2; exit 4`, { cleanup: true });
    const [out, err, code] = await Promise.all([r.out, r.err, r.p.exited]);
    r.stop();
    expect(code).toBe(4);
    expect(Buffer.from(out).equals(Buffer.from(bytes))).toBe(true);
    const e = Buffer.from(err);
    expect(e.subarray(e.indexOf(10) + 1)).toEqual(Buffer.from("e\0rr\0"));
    for (let i = 0; i < 200 && existsSync(r.stateDir); i++) await Bun.sleep(10);
    expect(existsSync(r.stateDir)).toBe(false);
  });

  test("the command holds no fd of the follower's (its wake pipe) or the runner's: only stdin, stdout and stderr", async () => {
    const r = start("fds", 'cd "/proc/$$/fd" && echo *');
    const [out, code] = await Promise.all([r.out, r.p.exited]);
    r.stop();
    expect(code).toBe(0);
    // 3 is the glob's own open dir; bash puts fds it names ({var}, as the wake pipe) at 10 and up
    expect(Buffer.from(out).toString().trim().split(" ").map(Number).filter((fd) => fd > 3)).toEqual([]);
  });

  test("the follower going away (its stdin ends) leaves the process running in its own process group; it records its exit", async () => {
    const r = start("detach", "sleep 0.6; echo done");
    const pid = await pidOf(r.stateDir);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    expect(Number(fields[2])).toBe(pid); // pgrp: it leads its own group, so stop can signal all of it
    r.stop();
    expect(await r.p.exited).not.toBe(0);
    for (let i = 0; i < 300 && !existsSync(join(r.stateDir, "exit_code")); i++) await Bun.sleep(10);
    expect(readFileSync(join(r.stateDir, "exit_code"), "utf8")).toBe("0\n");
    expect(readFileSync(join(r.stateDir, "stdout.log"), "utf8")).toBe("done\n");
  });

  test("close stdin finds the runner (a fork of the follower's bash) by pid and start time: cat reads EOF and the follow ends 0", async () => {
    const r = start("pipe", "cat; echo eof", { stdinMode: "pipe" });
    await pidOf(r.stateDir);
    const [rpid, rstart] = readFileSync(join(r.stateDir, "runner.pid"), "utf8").trim().split(" ");
    expect(Number(rpid)).toBeGreaterThan(0);
    expect(Number(rstart)).toBeGreaterThan(0);
    const c = Bun.spawnSync(["bash", "-c", CloseStdinScript(r.stateDir)]);
    expect(c.stdout.toString()).toBe("closed\n");
    const [out, code] = await Promise.all([r.out, r.p.exited]);
    r.stop();
    expect([Buffer.from(out).toString(), code]).toEqual(["eof\n", 0]);
    // a runner.pid whose start time is not the process's is some other process: left alone
    writeFileSync(join(r.stateDir, "runner.pid"), `${process.pid} 1\n`);
    expect(Bun.spawnSync(["bash", "-c", CloseStdinScript(r.stateDir)]).stdout.toString()).toBe("gone\n");
  });
});

describe("wait_child (timeout.sh): a trapped signal never becomes the exit status", () => {
  // the session runner traps USR1 (close stdin); a bare `wait` would return 138 when it fires
  const run = (body: string) => {
    const r = Bun.spawnSync(["bash", "-c", `${TIMEOUT_SH}\ntrap 'TRAPPED=1' USR1\n${body}`]);
    return r.stdout.toString().trim();
  };
  test("the signal arrives while the child runs: its own status", () => {
    expect(run(`( sleep 0.3; exit 5 ) & c=$!; ( sleep 0.1; kill -USR1 $$ ) & wait_child "$c"; echo "$STATUS"`)).toBe("5");
  });
  test("close stdin as the runner does it: the trap closes the FIFO writer, cat ends at once (0), not 138", () => {
    const d = mkdtempSync(join(tmpdir(), "banger-wait-child-"));
    try {
      const body = `mkfifo '${d}/p'; exec 3<>'${d}/p'; trap 'exec 3>&-; TRAPPED=1' USR1
cat < '${d}/p' 3>&- > /dev/null & c=$!
( sleep 0.2; kill -USR1 $$ ) 3>&- &
wait_child "$c"; echo "$STATUS"`;
      for (let i = 0; i < 5; i++) expect(run(body.replaceAll(`${d}/p`, `${d}/p${i}`))).toBe("0");
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("the child already ended (reaped by bash) when the signal lands: still its status", () => {
    expect(run(`( exit 6 ) & c=$!; sleep 0.2; kill -USR1 $$; wait_child "$c"; echo "$STATUS"`)).toBe("6");
  });
  test("a child killed by a signal keeps 128+n; no trap, one wait", () => {
    expect(run(`sleep 5 & c=$!; kill -KILL $c; wait_child "$c"; echo "$STATUS"`)).toBe("137");
    expect(run(`( exit 3 ) & c=$!; wait_child "$c"; echo "$STATUS"`)).toBe("3");
  });
});
