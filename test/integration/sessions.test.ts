import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fakeHost, testLogger } from "../helpers/fakes.ts";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GuestSession, VMRecord } from "../../src/shared/model.ts";
import { createSSHDialer } from "../../src/host/ssh.ts";
import type { Clock } from "../../src/host/types.ts";
import { SessionEngine, type SessionEngineDeps } from "../../src/sessions/engine.ts";
import { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { createSessionRepo } from "../../src/store/sessions.ts";
import { Store } from "../../src/store/store.ts";
import { guestLogin, startSSHD, type TestSSHD, localGuestVM } from "../helpers/sshd.ts";

/** Upload names of this run (randomToken): the guest here is the host, whose /tmp other runs share. */
const TOKEN_PREFIX = `t${process.pid}x`;

// This host is the "guest": a real sshd on 127.0.0.1, session state under a temp dir.
let sshd: TestSSHD;
let store: Store;
let vm: VMRecord;
const dir = mkdtempSync(join(tmpdir(), "banger-sessions-it-"));
const stateRoot = join(dir, "guest state");
const work = join(dir, "work dir");
const engines: SessionEngine[] = [];
let dials = 0;

const realClock: Clock = {
  now: () => new Date(),
  sleep: (ms) => Bun.sleep(ms),
  timer(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** Each engine gets its own connection pool, as each daemon has one. */
const pools = new Map<SessionEngine, SSHPool>();
function newEngine(over: Partial<SessionEngineDeps> = {}): SessionEngine {
  const dialer = createSSHDialer();
  const pool = new SSHPool((v) => {
    dials++;
    return dialer.dial({ host: v.runtime.sshHost, port: v.runtime.sshPort, user: sshd.user, privateKey: sshd.clientKey, hostKey: sshd.hostPublicKey });
  });
  const e = new SessionEngine({
    repo: store.sessions,
    host: fakeHost(),
    log: testLogger(),
    dial: (v) => pool.get(v),
    vmAlive: async (v) => v.runtime.state === "running",
    getVM: (idOrName) => store.getVM(idOrName),
    clock: realClock,
    newId: () => randomBytes(8).toString("hex"),
    stateRoot,
    // this run's upload names: another run on the host (its /tmp is this guest's) has its own
    randomToken: () => `${TOKEN_PREFIX}${randomBytes(6).toString("hex")}`,
    ...over,
  });
  engines.push(e);
  pools.set(e, pool);
  return e;
}

beforeAll(async () => {
  sshd = await startSSHD();
  mkdirSync(work, { recursive: true });
  store = new Store(join(dir, "banger.db"));
  vm = localGuestVM(sshd);
  store.upsertVM(vm);
});

afterAll(async () => {
  // Stop whatever a failed test left running, then the sshd.
  const e = newEngine();
  for (const s of store.sessions.list({ status: ["running", "starting"] })) await e.kill(s).catch(() => {});
  for (const x of engines) pools.get(x)?.closeAll();
  store.close();
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ECHO_AGENT = `while IFS= read -r l; do printf '%s\\n' "$l"; done`;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Read stdout with explicit offsets until `lines` complete lines arrived. */
async function readLines(e: SessionEngine, s: GuestSession, from: number, lines: number, timeoutMs = 10_000) {
  let offset = from;
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (text.split("\n").length - 1 < lines) {
    if (Date.now() > deadline) throw new Error(`timed out with ${JSON.stringify(text)}`);
    const r = await e.logs(s, { offset });
    expect(r.offset).toBe(offset);
    offset = r.nextOffset;
    text += dec(r.data);
    if (r.data.length === 0) await Bun.sleep(10);
  }
  return { text, offset };
}

guestLogin.describe("sessions over a real sshd", () => {
  test("start, send 100 JSON lines, read every reply back in order via offsets", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "echo", command: "bash", args: ["-c", ECHO_AGENT], cwd: work, stdinMode: "pipe", requiredCommands: ["cat"] });
    expect(s.status).toBe("running");
    expect(s.guestPid).toBeGreaterThan(0);
    expect(s.attachable).toBe(true);
    expect(existsSync(join(stateRoot, s.id, "stdin.pipe"))).toBe(true);
    // The process is alive in its own session, reading the FIFO.
    expect(readFileSync(`/proc/${s.guestPid}/cmdline`, "utf8")).toContain("bash");

    const want: string[] = [];
    for (let i = 0; i < 100; i++) {
      const line = JSON.stringify({ id: i, type: "prompt", text: `it's "${i}"; $(echo no)` });
      want.push(line);
      const r = await e.send({ vmIdOrName: "local", sessionIdOrName: "echo", payload: enc(line + "\n") });
      expect(r.bytesWritten).toBe(Buffer.byteLength(line) + 1);
    }
    const { text, offset } = await readLines(e, s, 0, 100);
    expect(text).toBe(want.map((l) => l + "\n").join(""));
    // Reading past the end is empty and keeps the offset.
    const past = await e.logs(s, { offset });
    expect(past.data.length).toBe(0);
    expect(past.nextOffset).toBe(offset);
    // No uploads left behind.
    expect([...new Bun.Glob(`banger-send-${TOKEN_PREFIX}*`).scanSync("/tmp")]).toEqual([]);
    const stopped = await e.stop(s, 1000);
    expect(stopped.status).toBe("stopped");
    expect(stopped.exitCode).toBe(143);
  });

  test("concurrent sends to one session are serialized: every line intact", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "echo-conc", command: "bash", args: ["-c", ECHO_AGENT], stdinMode: "pipe" });
    const lines = Array.from({ length: 20 }, (_, i) => `${i}:${"x".repeat(6000)}`);
    await Promise.all(lines.map((l) => e.send({ vmIdOrName: "local", sessionIdOrName: s.name, payload: enc(l + "\n") })));
    const { text } = await readLines(e, s, 0, 20);
    expect(text).toBe(lines.map((l) => l + "\n").join(""));
    await e.kill(s);
  });

  test("preflight failures name their stage and are recorded", async () => {
    const e = newEngine();
    const cwdErr = await e.start({ vmIdOrName: "local", name: "nocwd", command: "bash", cwd: join(dir, "missing it's") }).catch((x) => x);
    expect(cwdErr.message).toContain(`stage "cwd"`);
    const r1 = e.get("local", "nocwd");
    expect(r1.status).toBe("failed");
    expect(r1.launchStage).toBe("cwd");
    expect(r1.launchMessage).toBe(`missing cwd: ${join(dir, "missing it's")}`);

    const cmdErr = await e.start({ vmIdOrName: "local", name: "nocmd", command: "definitely-not-a-command", requiredCommands: ["git", "nope-$(x)"] }).catch((x) => x);
    expect(cmdErr.message).toContain(`stage "command"`);
    const r2 = e.get("local", "nocmd");
    expect(r2.launchStage).toBe("command");
    expect(r2.launchMessage).toBe("missing command: definitely-not-a-command; missing command: nope-$(x)");
    expect(existsSync(join(stateRoot, r2.id))).toBe(false);
  });

  test("exit code is recorded; follow ends when the session does; closed stdin errors", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "counter", command: "bash", args: ["-c", "for i in 1 2 3; do echo $i; echo err$i >&2; sleep 0.1; done; exit 7"], stdinMode: "closed" });
    expect(s.attachable).toBe(false);
    let out = "";
    for await (const c of e.follow(s, { offset: 0 })) out += dec(c.data);
    expect(out).toBe("1\n2\n3\n");
    const done = e.get("local", "counter");
    expect(done.status).toBe("exited");
    expect(done.exitCode).toBe(7);
    expect(done.endedAt).not.toBe("");
    expect(dec((await e.logs(done, { stream: "stderr" })).data)).toBe("err1\nerr2\nerr3\n");
    const sendErr = await e.send({ vmIdOrName: "local", sessionIdOrName: "counter", payload: enc("x\n") }).catch((x) => x);
    expect(sendErr.message).toContain("not running");

    const closed = await e.start({ vmIdOrName: "local", name: "closed", command: "sleep", args: ["30"], stdinMode: "closed" });
    const err = await e.send({ vmIdOrName: "local", sessionIdOrName: "closed", payload: enc("x\n") }).catch((x) => x);
    expect(err.message).toContain("stdin pipe");
    await e.kill(closed);
  });

  test("stop: TERM first, KILL after the grace when TERM is ignored", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "stubborn", command: "bash", args: ["-c", "trap '' TERM; while :; do sleep 0.05; done"], stdinMode: "pipe" });
    const t0 = performance.now();
    const st = await e.stop(s, 300);
    expect(st.status).toBe("stopped");
    expect(st.exitCode).toBe(137);
    expect(performance.now() - t0).toBeGreaterThan(250);
    // The whole process group is gone.
    expect(existsSync(`/proc/${s.guestPid}`)).toBe(false);
    await e.remove(st);
    expect(existsSync(join(stateRoot, s.id))).toBe(false);
    expect(() => e.get("local", "stubborn")).toThrow(/no session/);
  });

  test("a send to a session that stopped reading times out with a clear error", async () => {
    const e = newEngine({ sendTimeoutSeconds: 1 });
    const s = await e.start({ vmIdOrName: "local", name: "deaf", command: "sleep", args: ["60"], stdinMode: "pipe" });
    // More than the 64 KiB pipe buffer: the writer must block.
    const err = await e.send({ vmIdOrName: "local", sessionIdOrName: "deaf", payload: new Uint8Array(200_000).fill(120) }).catch((x) => x);
    expect(err.code).toBe("E_TIMEOUT");
    expect(err.message).toContain("not reading its stdin");
    await e.kill(s);
  });

  test("attach input streams into the FIFO; follow tails live output", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "attach", command: "bash", args: ["-c", ECHO_AGENT], stdinMode: "pipe" });
    const ac = new AbortController();
    const got: string[] = [];
    const following = (async () => {
      let text = "";
      for await (const c of e.follow(s, { offset: 0, signal: ac.signal })) {
        text += dec(c.data);
        if (text.split("\n").length > 3) break;
      }
      got.push(text);
    })();
    async function* input() {
      for (const l of ["a\n", "b\n", "c\n"]) {
        yield enc(l);
        await Bun.sleep(20);
      }
    }
    expect(await e.attachInput(s, input())).toBe(6);
    await following;
    expect(got[0]).toBe("a\nb\nc\n");
    // The FIFO writer is still held: the agent did not see EOF when attach input ended.
    expect((await e.refresh(s)).status).toBe("running");
    await e.kill(s);
  });

  test("reattach after a daemon restart (fresh engine, fresh store handle): nothing lost, nothing repeated", async () => {
    const e1 = newEngine();
    const s = await e1.start({ vmIdOrName: "local", name: "reattach", command: "bash", args: ["-c", ECHO_AGENT], stdinMode: "pipe" });
    const got: string[] = [];
    let offset = 0;
    for (let i = 0; i < 50; i++) await e1.send({ vmIdOrName: "local", sessionIdOrName: "reattach", payload: enc(`m${i}\n`) });
    // Follow with e1, and drop it halfway through a stream of output.
    for await (const c of e1.follow(s, { offset })) {
      got.push(dec(c.data));
      offset = c.nextOffset;
      if (got.join("").split("\n").length > 20) break;
    }
    pools.get(e1)!.closeAll(); // the daemon "dies": its connections go with it

    // A new daemon: new Store on the same file, new engine, reconcile.
    const store2 = new Store(join(dir, "banger.db"));
    const e2 = newEngine({ repo: store2.sessions, getVM: (x) => store2.getVM(x) });
    const reconciled = await e2.reconcile();
    expect(reconciled.find((x) => x.id === s.id)?.status).toBe("running");
    for (let i = 50; i < 100; i++) await e2.send({ vmIdOrName: "local", sessionIdOrName: "reattach", payload: enc(`m${i}\n`) });
    const again = e2.get("local", "reattach");
    for await (const c of e2.follow(again, { offset })) {
      got.push(dec(c.data));
      offset = c.nextOffset;
      if (got.join("").split("\n").length > 100) break;
    }
    expect(got.join("")).toBe(Array.from({ length: 100 }, (_, i) => `m${i}\n`).join(""));
    await e2.kill(again);
    store2.close();
  });

  test("refresh notices a session whose process vanished with its runner", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "vanish", command: "sleep", args: ["60"], stdinMode: "pipe" });
    // kill -9 the runner (the pid's parent) and the process: no exit code gets written.
    const ppid = readFileSync(`/proc/${s.guestPid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]!;
    process.kill(Number(ppid), "SIGKILL");
    process.kill(s.guestPid, "SIGKILL");
    await Bun.sleep(50);
    const r = await e.refresh(s);
    expect(r.status).toBe("failed");
    expect(r.exitCode).toBeNull();
    const err = await e.send({ vmIdOrName: "local", sessionIdOrName: "vanish", payload: enc("x\n") }).catch((x) => x);
    expect(err.message).toContain("not running");
  });

  test("measure: send→reply round trip over one connection", async () => {
    const e = newEngine();
    const s = await e.start({ vmIdOrName: "local", name: "bench", command: "bash", args: ["-c", ECHO_AGENT], stdinMode: "pipe" });
    const ac = new AbortController();
    const it = e.follow(s, { offset: 0, signal: ac.signal })[Symbol.asyncIterator]();
    const times: number[] = [];
    let buf = "";
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      await e.send({ vmIdOrName: "local", sessionIdOrName: "bench", payload: enc(`{"id":${i}}\n`) });
      while (!buf.includes(`{"id":${i}}\n`)) {
        const n = await it.next();
        if (n.done) throw new Error("follow ended");
        buf += dec(n.value.data);
      }
      times.push(performance.now() - t0);
    }
    ac.abort();
    await it.return?.(undefined);
    times.sort((a, b) => a - b);
    const p = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(1);
    console.log(`send→reply round trip over real sshd: p50 ${p(0.5)} ms, p99 ${p(0.99)} ms (n=${times.length})`);
    await e.kill(s);
  });
});
