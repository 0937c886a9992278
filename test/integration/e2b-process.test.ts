import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthenticationError, CommandExitError, Sandbox, TimeoutError } from "e2b";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { Process } from "../../src/daemon/e2b/gen/process/process_pb.ts";
import { fakeHost, testLogger } from "../helpers/fakes.ts";
import { guestLogin, startSSHD, type TestSSHD, localGuestVM } from "../helpers/sshd.ts";
import { IS_ROOT } from "../helpers/skip.ts";
import { killSessionGroups } from "../helpers/fake-guest.ts";
import type { VMRecord } from "../../src/shared/model.ts";
import type { Clock } from "../../src/host/types.ts";
import { createSSHDialer } from "../../src/host/ssh.ts";
import { SessionEngine } from "../../src/sessions/engine.ts";
import { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { Store } from "../../src/store/store.ts";
import type { Engine } from "../../src/core/engine.ts";
import { createEnvd, type EnvdSandbox } from "../../src/daemon/e2b/envd/index.ts";
import { processService } from "../../src/daemon/e2b/envd/process.ts";

// The e2b SDK from npm, in debug mode (no control plane), against envd's
// process service backed by guest sessions on a real sshd (this host plays
// the guest; session state under a temp dir). A "daemon" here is a session
// engine with its own SSH pool and an envd behind a Bun.serve: restarting
// one is building a new one over the same store and guest state.
let sshd: TestSSHD;
let store: Store;
let vm: VMRecord;
const dir = mkdtempSync(join(tmpdir(), "banger-e2b-proc-"));
const stateRoot = join(dir, "guest state");
const work = join(dir, "work 'dir'; $(x)");

const realClock: Clock = {
  now: () => new Date(),
  sleep: (ms) => Bun.sleep(ms),
  timer(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

interface Daemon {
  url: string;
  sessions: SessionEngine;
  pool: SSHPool;
  stop(): void;
}
const daemons: Daemon[] = [];

function startDaemon(): Daemon {
  const dialer = createSSHDialer();
  const pool = new SSHPool((v) => dialer.dial({ host: v.runtime.sshHost, port: v.runtime.sshPort, user: sshd.user, privateKey: sshd.clientKey, hostKey: sshd.hostPublicKey }));
  // real time: keepalives and session follows wait for real
  const host = { ...fakeHost(), clock: realClock };
  const sessions = new SessionEngine({
    repo: store.sessions,
    host,
    log: testLogger(),
    dial: (v) => pool.get(v),
    vmAlive: async (v) => v.runtime.state === "running",
    getVM: (idOrName) => store.getVM(idOrName),
    clock: realClock,
    newId: () => randomBytes(8).toString("hex"),
    stateRoot,
  });
  // this guest has no user "user": calls that name none run as root here
  const envd = createEnvd({ engine: { watchHalt: (_vm: unknown, signal: AbortSignal) => ({ signal, stop: () => {} }) } as unknown as Engine, ssh: pool, host, log: testLogger(), sessions }, [processService()], []);
  const sandbox: EnvdSandbox = { id: "debug_sandbox_id", vm, envVars: { SANDBOX_VAR: "from the sandbox", OVERRIDDEN: "sandbox" } };
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: (req) => envd.handle(req, sandbox) });
  const d: Daemon = {
    url: `http://127.0.0.1:${server.port}`,
    sessions,
    pool,
    stop() {
      void server.stop(true);
      pool.closeAll();
    },
  };
  daemons.push(d);
  return d;
}

const sandboxOn = (d: Daemon) => Sandbox.create({ debug: true, sandboxUrl: d.url });

let daemon: Daemon;
let sbx: Sandbox;

beforeAll(async () => {
  if (!IS_ROOT) return;
  sshd = await startSSHD();
  mkdirSync(work, { recursive: true });
  store = new Store(join(dir, "banger.db"));
  vm = localGuestVM(sshd);
  store.upsertVM(vm);
  daemon = startDaemon();
  sbx = await sandboxOn(daemon);
});

afterAll(async () => {
  for (const d of daemons) d.stop();
  killSessionGroups(stateRoot);
  store?.close();
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

async function until(what: string, f: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

guestLogin.describe("e2b SDK commands and pty against envd on guest sessions", () => {
  test("commands.run: stdout, stderr and exit code; a failure is a CommandExitError with both", async () => {
    const r = await sbx.commands.run("echo out; echo err >&2; printf 'no newline'");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("out\nno newline");
    expect(r.stderr).toBe("err\n");

    const err = await sbx.commands.run("echo partial; echo bad >&2; exit 3").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandExitError);
    const ce = err as CommandExitError;
    expect(ce.exitCode).toBe(3);
    expect(ce.stdout).toBe("partial\n");
    expect(ce.stderr).toBe("bad\n");

    const missing = await sbx.commands.run("no-such-command-here").catch((e: unknown) => e);
    expect((missing as CommandExitError).exitCode).toBe(127);

    // streamed as it comes, to the callbacks
    const seen: string[] = [];
    await sbx.commands.run("echo a; sleep 0.3; echo b", { onStdout: (d) => void seen.push(d) });
    expect(seen.join("")).toBe("a\nb\n");
  });

  test("a process that ended while followed leaves no session behind (row or guest state dir)", async () => {
    const rows = () => store.sessions.list().length;
    const dirs = () => readdirSync(stateRoot).length;
    const [r0, before] = [rows(), new Set(readdirSync(stateRoot))];
    await sbx.commands.run("echo gone");
    await sbx.commands.run("exit 4").catch(() => {});
    const left = () => readdirSync(stateRoot).filter((d) => !before.has(d));
    await until("the guest to remove the state dirs", () => left().length === 0, 5000).catch((e: unknown) => {
      throw new Error(`${String(e)}: left ${left().map((d) => `${d}: ${readdirSync(join(stateRoot, d)).join(",")}`).join("; ")}`);
    });
    expect(rows()).toBe(r0);
  });

  test("stdin without a timeout (timeoutMs 0): closeStdin still ends the input", async () => {
    const h = await sbx.commands.run("wc -c", { background: true, stdin: true, timeoutMs: 0 });
    await h.sendStdin("12345");
    await h.closeStdin();
    expect((await h.wait()).stdout.trim()).toBe("5");
  });

  test("tags: Start with a tag, List shows it, Connect by tag (a raw Connect client: the SDK has no tag option)", async () => {
    const rpc = createClient(Process, createConnectTransport({ baseUrl: daemon.url, useBinaryFormat: false }));
    const abort = new AbortController();
    const started = rpc.start({ process: { cmd: "/bin/bash", args: ["-c", "read -r l; echo \"got $l\""], envs: { T: "1" } }, tag: "my tag; 'x'", stdin: true }, { signal: abort.signal });
    const it = started[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.event?.event.case).toBe("start");
    const pid = (first.value!.event!.event.value as { pid: number }).pid;
    const listed = (await rpc.list({})).processes.find((p) => p.pid === pid);
    expect(listed?.tag).toBe("my tag; 'x'");
    expect(listed?.config?.envs).toEqual({ T: "1" });
    abort.abort(); // the process runs on
    const stream = rpc.connect({ process: { selector: { case: "tag", value: "my tag; 'x'" } } });
    let out = "";
    let end: unknown = null;
    let sent = false;
    for await (const r of stream) {
      const e = r.event?.event;
      if (e?.case === "start") {
        expect(e.value.pid).toBe(pid);
        await rpc.sendInput({ process: { selector: { case: "tag", value: "my tag; 'x'" } }, input: { input: { case: "stdin", value: new TextEncoder().encode("hi\n") } } });
        sent = true;
      } else if (e?.case === "data" && e.value.output.case === "stdout") out += new TextDecoder().decode(e.value.output.value);
      else if (e?.case === "end") end = e.value;
    }
    expect(sent).toBe(true);
    expect(out).toBe("got hi\n");
    expect(end).toMatchObject({ exitCode: 0, exited: true });
    const missing = await rpc.connect({ process: { selector: { case: "tag", value: "no such tag" } } })[Symbol.asyncIterator]().next().catch((e: unknown) => e);
    expect(String(missing)).toContain("not_found");
  });

  test("envs, cwd and user reach the process; hostile values arrive as given", async () => {
    const hostile = "it's; $(echo no) `x` \"q\"\nsecond line";
    const r = await sbx.commands.run('printf "%s|%s|%s|%s|%s" "$HOSTILE" "$PWD" "$(id -un)" "$SANDBOX_VAR" "$OVERRIDDEN"', {
      envs: { HOSTILE: hostile, OVERRIDDEN: "request" },
      cwd: work,
    });
    // no user named, and this guest has no `user` account: root, as envd's default is for a template that names none
    expect(r.stdout).toBe(`${hostile}|${work}|root|from the sandbox|request`);

    const nobody = await sbx.commands.run("id -un; pwd", { user: "nobody" });
    // nobody's home (/nonexistent) does not exist: it starts in /
    expect(nobody.stdout).toBe("nobody\n/\n");
    const root = await sbx.commands.run("id -un", { user: "root" });
    expect(root.stdout).toBe("root\n");

    // a named user the guest lacks is envd's error, the SDK's AuthenticationError; a hostile name is only a name
    for (const user of ["no-such-user-x", "it's;$(touch /tmp/banger-e2b-pwned)"]) {
      const badUser = await sbx.commands.run("true", { user }).catch((e: unknown) => e);
      expect(badUser).toBeInstanceOf(AuthenticationError);
      expect(String(badUser)).toContain(`error looking up user '${user}': unknown user`);
    }
    expect(existsSync("/tmp/banger-e2b-pwned")).toBe(false);
    const badCwd = await sbx.commands.run("true", { cwd: join(dir, "nope") }).catch((e: unknown) => e);
    expect(String(badCwd)).toContain("no such directory in the guest");
  });

  test("stdin: sendStdin then closeStdin gives the process its input and EOF", async () => {
    const h = await sbx.commands.run("cat; echo done", { background: true, stdin: true });
    await h.sendStdin("hello ");
    await h.sendStdin("world's $(x)\n");
    await h.closeStdin();
    const r = await h.wait();
    expect(r.stdout).toBe("hello world's $(x)\ndone\n");
    expect(r.exitCode).toBe(0);
  });

  test("background: list, wait, kill (SIGKILL ends it; an unknown pid is false)", async () => {
    const h = await sbx.commands.run("sleep 30", { background: true });
    expect(h.pid).toBeGreaterThan(0);
    expect(alive(h.pid)).toBe(true);
    const listed = await sbx.commands.list();
    const mine = listed.find((p) => p.pid === h.pid);
    expect(mine?.cmd).toBe("/bin/bash");
    expect(mine?.args).toEqual(["-l", "-c", "sleep 30"]);
    expect(await h.kill()).toBe(true);
    const err = await h.wait().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandExitError);
    expect((err as CommandExitError).exitCode).toBe(-1);
    expect((err as CommandExitError).error).toBeUndefined();
    expect(alive(h.pid)).toBe(false);
    expect((await sbx.commands.list()).some((p) => p.pid === h.pid)).toBe(false);
    expect(await sbx.commands.kill(h.pid)).toBe(false);

    const quick = await sbx.commands.run("echo quick", { background: true });
    expect((await quick.wait()).stdout).toBe("quick\n");
  });

  test("a background process outlives its daemon: connect(pid) on a new one streams it from now on, to its end", async () => {
    writeFileSync(join(dir, "keep-going"), "");
    const h = await sbx.commands.run('i=0; while [ -e "$F" ]; do i=$((i+1)); echo "tick $i"; sleep 0.2; done; echo bye; exit 7', {
      background: true,
      envs: { F: join(dir, "keep-going") },
      timeoutMs: 0,
    });
    await until("a tick", () => h.stdout.includes("tick 1"));
    await h.disconnect();
    // "kill -9 the daemon": its server and connections go; the store and guest state stay
    daemon.stop();
    const d2 = startDaemon();
    const sbx2 = await sandboxOn(d2);
    expect((await sbx2.commands.list()).map((p) => p.pid)).toContain(h.pid);
    const seen: string[] = [];
    const again = await sbx2.commands.connect(h.pid, { onStdout: (d) => void seen.push(d) });
    await until("ticks after reconnect", () => seen.join("").includes("tick"));
    rmSync(join(dir, "keep-going"));
    const err = (await again.wait().catch((e: unknown) => e)) as CommandExitError;
    expect(err).toBeInstanceOf(CommandExitError);
    expect(err.exitCode).toBe(7);
    expect(seen.join("")).toEndWith("bye\n");
    // from now on: not from the first tick
    expect(seen.join("")).not.toContain("tick 1\n");
    daemon = d2;
    sbx = sbx2;
  });

  test("timeoutMs: the SDK's TimeoutError, and the process is killed in the guest", async () => {
    const h = await sbx.commands.run("sleep 30", { background: true, timeoutMs: 1500 });
    const t0 = Date.now();
    const err = await h.wait().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(Date.now() - t0).toBeLessThan(10_000);
    await until("the timed-out process to die", () => !alive(h.pid), 5000);

    const fg = await sbx.commands.run("sleep 30", { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(fg).toBeInstanceOf(TimeoutError);
  });

  test("a pty outlives its daemon too: pty.connect on a new one, input and output", async () => {
    let out = "";
    const dec = new TextDecoder();
    const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => void (out += dec.decode(d)) });
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode("echo before-$((6*7))\n"));
    await until("output before the restart", () => out.includes("before-42"));
    await h.disconnect();
    daemon.stop();
    daemon = startDaemon();
    sbx = await sandboxOn(daemon);
    let after = "";
    const again = await sbx.pty.connect(h.pid, { onData: (d) => void (after += dec.decode(d)) });
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode("echo after-$((6*7)); exit 3\n"));
    await until("output after the restart", () => after.includes("after-42"));
    const err = (await again.wait().catch((e: unknown) => e)) as CommandExitError;
    expect(err.exitCode).toBe(3);
    expect(after).not.toContain("before-42");
  });

  test("pty: create, input, resize, kill", async () => {
    let out = "";
    const dec = new TextDecoder();
    const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => void (out += dec.decode(d)) });
    expect(h.pid).toBeGreaterThan(0);
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode("tty; stty size\n"));
    await until("stty size 24 80", () => out.includes("24 80"));
    expect(out).toContain("/dev/pts/");
    await sbx.pty.resize(h.pid, { cols: 100, rows: 40 });
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode("stty size; echo $TERM\n"));
    await until("stty size 40 100", () => out.includes("40 100") && out.includes("xterm-256color"));
    expect(await sbx.pty.kill(h.pid)).toBe(true);
    await h.wait().catch(() => {});
    await until("the pty process to die", () => !alive(h.pid), 5000);
  });

  test("latency: commands.run('true') over envd vs an ssh exec on the same sshd (median of 20 each)", async () => {
    const conn = await daemon.pool.get(vm);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const runs = { ssh: [] as number[], sshLogin: [] as number[], envd: [] as number[] };
    for (let i = 0; i < 20; i++) {
      let t = performance.now();
      expect(await conn.exec("true")).toBe(0);
      runs.ssh.push(performance.now() - t);
      // what commands.run runs: a login bash
      t = performance.now();
      expect(await conn.exec("/bin/bash -l -c true")).toBe(0);
      runs.sshLogin.push(performance.now() - t);
      t = performance.now();
      expect((await sbx.commands.run("true")).exitCode).toBe(0);
      runs.envd.push(performance.now() - t);
    }
    const [ssh, sshLogin, envd] = [median(runs.ssh), median(runs.sshLogin), median(runs.envd)];
    console.log(
      `commands.run('true') median ${envd.toFixed(1)} ms; ssh exec 'true' ${ssh.toFixed(1)} ms (added ${(envd - ssh).toFixed(1)} ms); ` +
        `ssh exec '/bin/bash -l -c true' ${sshLogin.toFixed(1)} ms (added ${(envd - sshLogin).toFixed(1)} ms)`,
    );
    // a start-and-follow is one SSH channel: well under a second here
    expect(envd).toBeLessThan(1000);
  });
});
