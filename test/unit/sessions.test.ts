import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { fakeHost, testLogger } from "../helpers/fakes.ts";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import type { GuestSession, SessionStatus, SessionStdinMode, VMRecord } from "../../src/shared/model.ts";
import type { Clock, ExecResult, ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import { SessionEngine } from "../../src/sessions/engine.ts";
import { readableCommand, renderScript, shellQuote } from "../../src/shared/quote.ts";
import * as sess from "../../src/sessions/scripts.ts";
import { createSessionRepo } from "../../src/store/sessions.ts";
import { Store } from "../../src/store/store.ts";
import { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { HookEngine } from "../../src/core/hooks.ts";

// --- fakes that record ---

type ScriptReply = Partial<ExecResult> | undefined;

class RecordingGuestSSH implements GuestSSH {
  uploadedFiles = new Map<string, Uint8Array>();
  uploads: { path: string; mode?: number }[] = [];
  ranScripts: string[] = [];
  execs: string[] = [];
  events: string[] = [];
  closed = false;
  constructor(
    private readonly _reply: (script: string) => ScriptReply | Promise<ScriptReply> = () => undefined,
    private readonly _uploadDelayMs = 0,
  ) {}
  /** stdin of each exec, in order (a send's payload travels this way). */
  execInputs: Uint8Array[] = [];
  async exec(command: string, opts?: ExecStreamOptions): Promise<number> {
    this.execs.push(command);
    const input = opts?.stdin;
    const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input instanceof Uint8Array ? input.slice() : new Uint8Array();
    this.execInputs.push(bytes);
    if (command.includes("UPLOAD=")) {
      this.events.push("exec:send");
      if (this._uploadDelayMs) await Bun.sleep(this._uploadDelayMs);
      const r = (await this._reply(command)) ?? {};
      if (r.stderr) opts?.onStderr?.(new TextEncoder().encode(r.stderr));
      return r.exitCode ?? 0;
    }
    return 0;
  }
  /** The sends: each exec that carried an upload, with its payload. */
  get sends(): { script: string; payload: string }[] {
    return this.execs.flatMap((c, i) => (c.includes("UPLOAD=") ? [{ script: c, payload: new TextDecoder().decode(this.execInputs[i]) }] : []));
  }
  async runScript(script: string): Promise<ExecResult> {
    this.ranScripts.push(script);
    this.events.push(`script:${script.includes("cat ") ? "send" : "other"}`);
    const r = (await this._reply(script)) ?? {};
    return { exitCode: r.exitCode ?? 0, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  }
  async upload(path: string, data: Uint8Array | string, mode?: number): Promise<void> {
    this.events.push(`upload:${path}`);
    if (this._uploadDelayMs) await Bun.sleep(this._uploadDelayMs);
    this.uploadedFiles.set(path, typeof data === "string" ? new TextEncoder().encode(data) : data.slice());
    this.uploads.push({ path, mode });
  }
  close(): void {
    this.closed = true;
  }
}

const fixedClock: Clock = {
  now: () => new Date("2026-04-19T14:18:13.000Z"),
  sleep: async () => {},
  timer: () => () => {},
};

let store: Store;
let ids = 0;

function testVM(name: string, state: VMRecord["runtime"]["state"]): VMRecord {
  const now = new Date().toISOString();
  return {
    id: `${name}-id`,
    name,
    spec: { image: "image-send", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: "qemu", storage: "copy" },
    runtime: {
      state,
      guestIP: "172.16.0.88",
      apiSockPath: "",
      vsockPath: "",
      vsockCID: 0,
      logPath: "",
      metricsPath: "",
      dnsName: "",
      vmDir: "",
      systemOverlay: "",
      workDiskPath: "",
      lastError: "",
      sshHost: "127.0.0.1",
      sshPort: 0,
    },
    createdAt: now,
    updatedAt: now,
  };
}

function testGuestSession(vmId: string, stdinMode: SessionStdinMode, status: SessionStatus): GuestSession {
  const now = new Date().toISOString();
  const id = `${vmId}-sess-id`;
  return {
    id,
    vmId,
    name: `${vmId}-sess`,
    backend: "ssh",
    command: "pi",
    args: ["--mode", "rpc"],
    cwd: "/root/repo",
    stdinMode,
    status,
    guestStateDir: sess.StateDir(id),
    stdoutLogPath: sess.sessionPaths(sess.StateDir(id)).stdout,
    stderrLogPath: sess.sessionPaths(sess.StateDir(id)).stderr,
    attachable: stdinMode === "pipe" && status === "running",
    reattachable: stdinMode === "pipe" && status === "running",
    launchStage: "",
    launchMessage: "",
    guestPid: 4242,
    exitCode: null,
    startedAt: now,
    endedAt: "",
    createdAt: now,
    updatedAt: now,
  };
}

function newEngine(fake: RecordingGuestSSH, opts: { alive?: boolean; hooks?: HookEngine } = {}) {
  const repo = store.sessions;
  let dialCount = 0;
  // reuse is the pool's job, as in the daemon: one dial per VM while the connection lives
  const pool = new SSHPool(async () => {
    dialCount++;
    return fake;
  });
  const engine = new SessionEngine({
    repo,
    host: fakeHost(),
    log: testLogger(),
    dial: (vm) => pool.get(vm),
    // The fake's notion of liveness: the recorded state, unless a test says the process is gone.
    vmAlive: async (vm) => (opts.alive ?? true) && vm.runtime.state === "running",
    getVM: (idOrName) => store.getVM(idOrName),
    clock: fixedClock,
    newId: () => `sess-${++ids}`,
    hooks: opts.hooks,
  });
  return { engine, repo, dials: () => dialCount };
}

function setup(name: string, vmState: VMRecord["runtime"]["state"], stdinMode: SessionStdinMode, status: SessionStatus) {
  const vm = testVM(name, vmState);
  store.upsertVM(vm);
  const session = testGuestSession(vm.id, stdinMode, status);
  store.sessions.upsert(session);
  return { vm, session };
}

beforeEach(() => {
  store = new Store(":memory:");
});

// --- the seed's send cases ---

describe("send (seed cases)", () => {
  test("happy path: one round trip uploads to /tmp/banger-send-, cats into the pipe, rm -f's the upload", async () => {
    const { vm, session } = setup("sendbox", "running", "pipe", "running");
    const fake = new RecordingGuestSSH();
    const { engine, dials } = newEngine(fake);
    const payload = new TextEncoder().encode(`{"type":"abort"}` + "\n");
    const result = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload });
    expect(result.bytesWritten).toBe(payload.length);
    expect(result.session.id).toBe(session.id);
    expect(dials()).toBe(1);
    expect(fake.sends.length).toBe(1);
    const { script, payload: sent } = fake.sends[0]!;
    expect(sent).toBe(new TextDecoder().decode(payload));
    expect(script).toMatch(/UPLOAD='\/tmp\/banger-send-[0-9a-f]+'/);
    // a small text payload takes the builtin path: upload, write into the pipe, rm -f, watchdog timeout
    const pipe = sess.sessionPaths(session.guestStateDir).pipe;
    expect(script).toBe(sess.FastSendScript(script.match(/UPLOAD='([^']+)'/)![1]!, pipe, sess.SEND_TIMEOUT_SECONDS, payload.length));
    expect(script).toContain('printf \'%s\' "$DATA" > "$UPLOAD"');
    expect(script).toContain(`PIPE='${pipe}'\n`);
    expect(script).toContain(`EXPECTED='${payload.length}'\n`);
    expect(script).toContain('rm -f "$UPLOAD"');
    expect(script).toContain(`TIMEOUT='${sess.SEND_TIMEOUT_SECONDS}'\n`);
    expect(script).toContain(`read -r -t "$TIMEOUT";`);
    expect(script).not.toContain("\\n");
    expect(fake.ranScripts).toEqual([]);
  });

  test("payloads with NUL bytes or over 16 KiB take the cat/timeout/dd script, byte for byte", async () => {
    const { vm, session } = setup("sendbox-bin", "running", "pipe", "running");
    const fake = new RecordingGuestSSH();
    const { engine } = newEngine(fake);
    const withNul = new Uint8Array([65, 0, 66, 10]);
    const big = new Uint8Array(16384 + 1).fill(120);
    expect(sess.fastSendable(big.subarray(1))).toBe(true);
    expect(sess.fastSendable(big)).toBe(false);
    for (const payload of [withNul, big]) {
      const r = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload });
      expect(r.bytesWritten).toBe(payload.length);
    }
    expect(fake.sends.length).toBe(2);
    for (const [i, { script }] of fake.sends.entries()) {
      expect(script).toContain("umask 077\ncat > \"$UPLOAD\"");
      expect(script).toContain(`TIMEOUT='${sess.SEND_TIMEOUT_SECONDS}'\n`);
      expect(script).toContain(`timeout "$TIMEOUT" dd `);
      expect(script).toContain('rm -f "$UPLOAD"');
      expect(fake.execInputs.filter((_, j) => fake.execs[j]!.includes("UPLOAD="))[i]).toEqual(i === 0 ? withNul : big);
    }
  });

  test("empty payload: BytesWritten 0 and no SSH dial", async () => {
    const { vm, session } = setup("sendbox-empty", "running", "pipe", "running");
    const fake = new RecordingGuestSSH();
    const { engine, dials } = newEngine(fake);
    const result = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: new Uint8Array() });
    expect(result.bytesWritten).toBe(0);
    expect(dials()).toBe(0);
    expect(fake.ranScripts).toEqual([]);
    expect(fake.execs).toEqual([]);
  });

  test("closed stdin: 'stdin pipe' error", async () => {
    const { vm, session } = setup("sendbox-closed", "running", "closed", "running");
    const { engine, dials } = newEngine(new RecordingGuestSSH(), { alive: false });
    const err = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: new TextEncoder().encode("hello\n") }).catch((e) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect(String(err.message)).toContain("stdin pipe");
    expect(dials()).toBe(0);
  });

  test("failed session: 'not running' error", async () => {
    const { vm, session } = setup("sendbox-failed", "running", "pipe", "failed");
    const { engine, dials } = newEngine(new RecordingGuestSSH(), { alive: false });
    const err = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: new TextEncoder().encode("hello\n") }).catch((e) => e);
    expect(String(err.message)).toContain("not running");
    expect(err.code).toBe("E_STATE");
    expect(dials()).toBe(0);
  });

  test("stopped vm: 'not running' error", async () => {
    const { vm, session } = setup("sendbox-stopped", "stopped", "pipe", "running");
    const { engine, dials } = newEngine(new RecordingGuestSSH());
    const err = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: new TextEncoder().encode("hello\n") }).catch((e) => e);
    expect(String(err.message)).toContain("not running");
    expect(dials()).toBe(0);
  });

  test("unknown vm and session: stable codes", async () => {
    const { vm } = setup("sendbox-codes", "running", "pipe", "running");
    const { engine } = newEngine(new RecordingGuestSSH());
    const p = new TextEncoder().encode("x");
    expect((await engine.send({ vmIdOrName: "nope", sessionIdOrName: "x", payload: p }).catch((e) => e)).code).toBe("E_VM_NOT_FOUND");
    expect((await engine.send({ vmIdOrName: vm.name, sessionIdOrName: "nope", payload: p }).catch((e) => e)).code).toBe("E_SESSION_NOT_FOUND");
  });
});

describe("send details", () => {
  test("sends to one session are serialized in call order; connection reused", async () => {
    const { vm, session } = setup("serial", "running", "pipe", "running");
    const fake = new RecordingGuestSSH(undefined, 5);
    let n = 0;
    const { engine, dials } = newEngine(fake);
    const enc = (s: string) => new TextEncoder().encode(s);
    await Promise.all(["a\n", "b\n", "c\n"].map((p) => engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: enc(p) }).then(() => n++)));
    expect(n).toBe(3);
    // one round trip each, in call order
    expect(fake.events).toEqual(["exec:send", "exec:send", "exec:send"]);
    expect(fake.sends.map((x) => x.payload)).toEqual(["a\n", "b\n", "c\n"]);
    expect(dials()).toBe(1);
  });

  test("a send that times out says so (E_TIMEOUT), a failing one does not block the next", async () => {
    const { vm, session } = setup("timeout", "running", "pipe", "running");
    let first = true;
    const fake = new RecordingGuestSSH((script) => {
      if (script.includes("UPLOAD=")) {
        if (first) {
          first = false;
          return { exitCode: sess.SEND_TIMEOUT_EXIT, stderr: "timed out" };
        }
        return {};
      }
      // status script during the failure analysis: still running
      return { stdout: "running 4242 99\n" };
    });
    const { engine } = newEngine(fake);
    const enc = new TextEncoder().encode("x\n");
    const [a, b] = await Promise.allSettled([
      engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: enc }),
      engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: enc }),
    ]);
    expect(a.status).toBe("rejected");
    expect((a as PromiseRejectedResult).reason.code).toBe("E_TIMEOUT");
    expect((a as PromiseRejectedResult).reason.message).toContain("not reading its stdin");
    expect(b.status).toBe("fulfilled");
  });

  test("a send failing because the process ended reports 'not running' and records the exit", async () => {
    const { vm, session } = setup("ended", "running", "pipe", "running");
    const fake = new RecordingGuestSSH((script) => (script.includes("UPLOAD=") ? { exitCode: 124 } : { stdout: "exited 3 1700000000\n" }));
    const { engine, repo } = newEngine(fake);
    const err = await engine.send({ vmIdOrName: vm.name, sessionIdOrName: session.name, payload: new TextEncoder().encode("x") }).catch((e) => e);
    expect(err.message).toContain("not running");
    const after = repo.get(session.id)!;
    expect(after.status).toBe("exited");
    expect(after.exitCode).toBe(3);
    expect(after.endedAt).toBe(new Date(1700000000 * 1000).toISOString());
  });
});

// --- start ---

describe("start", () => {
  const guest = (existing: Set<string>, commands: Set<string>) => (script: string): ScriptReply => {
    expect(script).not.toContain("\\n");
    if (script.includes(`echo "missing cwd: $DIR"`)) {
      const m = /^DIR='([^']*)'\n/.exec(script);
      return m && existing.has(m[1]!) ? {} : { exitCode: 1, stderr: `missing cwd: ${m?.[1]}\n` };
    }
    if (script.includes("check_command() {")) {
      const list = /^COMMANDS=\((.*)\)$/m.exec(script)?.[1] ?? "";
      const missing = [...list.matchAll(/'([^']*)'/g)].map((m) => m[1]!).filter((c) => !commands.has(c));
      return missing.length ? { exitCode: 1, stderr: missing.map((c) => `missing command: ${c}\n`).join("") } : {};
    }
    if (script.includes("nohup bash ")) return { stdout: "4242 123456\n" };
    return {};
  };

  test("happy path: preflight cwd, commands, launch; running with pid, attachable", async () => {
    const vm = testVM("pi-devbox", "running");
    store.upsertVM(vm);
    const fake = new RecordingGuestSSH(guest(new Set(["/root/repo"]), new Set(["pi", "git"])));
    const { engine, repo } = newEngine(fake);
    const s = await engine.start({ vmIdOrName: vm.name, name: "testpi", command: "pi", args: ["--mode", "rpc", "--no-session"], cwd: "/root/repo", stdinMode: "pipe", requiredCommands: ["git"] });
    expect(s.status).toBe("running");
    expect(s.launchStage).toBe("");
    expect(s.launchMessage).toBe("");
    expect(s.guestPid).toBe(4242);
    expect(s.attachable).toBe(true);
    expect(s.reattachable).toBe(true);
    expect(s.startedAt).toBe("2026-04-19T14:18:13.000Z");
    expect(s.guestStateDir).toBe(sess.StateDir(s.id));
    expect(repo.get(s.id)).toEqual(s);
    expect(fake.ranScripts.length).toBe(3);
    expect(fake.ranScripts[0]).toContain("DIR='/root/repo'\n");
    expect(fake.ranScripts[1]).toContain("COMMANDS=('pi' 'git')\n");
    const launch = fake.ranScripts[2]!;
    expect(launch).toContain("nohup bash ");
    expect(launch).toContain("STDIN_MODE='pipe'\n");
    expect(launch).toContain("'--no-session'");
  });

  test("closed stdin: no FIFO, not attachable", async () => {
    const vm = testVM("closedbox", "running");
    store.upsertVM(vm);
    const fake = new RecordingGuestSSH(guest(new Set(), new Set(["sleep"])));
    const { engine } = newEngine(fake);
    const s = await engine.start({ vmIdOrName: vm.name, command: "sleep", args: ["100"], stdinMode: "closed" });
    expect(s.attachable).toBe(false);
    expect(fake.ranScripts.length).toBe(2); // no cwd given: no cwd preflight
    expect(fake.ranScripts[1]).toContain("STDIN_MODE='closed'\n");
    expect(s.name).toMatch(/^session-/);
  });

  test("missing cwd: fails at stage cwd, recorded, no launch", async () => {
    const vm = testVM("cwdbox", "running");
    store.upsertVM(vm);
    const fake = new RecordingGuestSSH(guest(new Set(), new Set(["pi"])));
    const { engine, repo } = newEngine(fake);
    const err = await engine.start({ vmIdOrName: vm.name, name: "s1", command: "pi", cwd: "/root/repo" }).catch((e) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.message).toContain(`stage "cwd"`);
    expect(err.message).toContain("missing cwd: /root/repo");
    const s = repo.find(vm.id, "s1")!;
    expect(s.status).toBe("failed");
    expect(s.launchStage).toBe("cwd");
    expect(s.launchMessage).toBe("missing cwd: /root/repo");
    expect(fake.ranScripts.some((x) => x.includes("nohup bash "))).toBe(false);
  });

  test("missing command: fails at stage command naming every missing one", async () => {
    const vm = testVM("cmdbox", "running");
    store.upsertVM(vm);
    const fake = new RecordingGuestSSH(guest(new Set(["/root/repo"]), new Set(["git"])));
    const { engine, repo } = newEngine(fake);
    const err = await engine.start({ vmIdOrName: vm.name, name: "s1", command: "pi", cwd: "/root/repo", requiredCommands: ["git", "jq"] }).catch((e) => e);
    expect(err.message).toContain(`stage "command"`);
    const s = repo.find(vm.id, "s1")!;
    expect(s.status).toBe("failed");
    expect(s.launchStage).toBe("command");
    expect(s.launchMessage).toBe("missing command: pi; missing command: jq");
  });

  test("a start that failed before its command ran gives its name to the retry; an ended one keeps it, saying how to free it", async () => {
    const vm = testVM("retrybox", "running");
    store.upsertVM(vm);
    const fake = new RecordingGuestSSH(guest(new Set(), new Set(["pi", "x"])));
    const { engine, repo } = newEngine(fake);
    await engine.start({ vmIdOrName: vm.name, name: "web", command: "pi", cwd: "/nope" }).catch(() => {});
    const failed = repo.find(vm.id, "web")!;
    expect(failed.status).toBe("failed");
    const again = await engine.start({ vmIdOrName: vm.name, name: "web", command: "pi" });
    expect(again.status).toBe("running");
    expect(again.id).not.toBe(failed.id);
    expect(repo.get(failed.id)).toBeNull();
    const taken = await engine.start({ vmIdOrName: vm.name, name: "web", command: "x" }).catch((e) => e);
    expect(taken.code).toBe("E_NAME_TAKEN");
    expect(taken.message).toBe("vm retrybox already has a session named web (running): stop it and `banger session rm retrybox web`, or pick another name");
    repo.upsert({ ...again, status: "exited", exitCode: 0, startedAt: again.startedAt });
    const ended = await engine.start({ vmIdOrName: vm.name, name: "web", command: "x" }).catch((e) => e);
    expect(ended.message).toBe("vm retrybox already has a session named web (exited): `banger session rm retrybox web` frees the name");
  });

  test("validation: empty command, bad name, taken name, vm not running", async () => {
    const vm = testVM("valbox", "running");
    store.upsertVM(vm);
    const stopped = testVM("valbox-stopped", "stopped");
    store.upsertVM(stopped);
    const { engine, dials } = newEngine(new RecordingGuestSSH(guest(new Set(), new Set(["x"]))));
    expect((await engine.start({ vmIdOrName: vm.name, command: "" }).catch((e) => e)).code).toBe("E_BAD_REQUEST");
    expect((await engine.start({ vmIdOrName: vm.name, name: "bad name", command: "x" }).catch((e) => e)).code).toBe("E_BAD_NAME");
    await engine.start({ vmIdOrName: vm.name, name: "dup", command: "x" });
    expect((await engine.start({ vmIdOrName: vm.name, name: "dup", command: "x" }).catch((e) => e)).code).toBe("E_NAME_TAKEN");
    const e = await engine.start({ vmIdOrName: stopped.name, command: "x" }).catch((e) => e);
    expect(e.message).toContain("not running");
    expect(dials()).toBe(1);
  });
});

describe("refresh / stop", () => {
  test("refresh: exited with code and end time; failed when gone; failed when the vm stopped", async () => {
    const { session } = setup("refreshbox", "running", "pipe", "running");
    let reply = "running 4242 99\n";
    const fake = new RecordingGuestSSH(() => ({ stdout: reply }));
    const { engine, repo } = newEngine(fake);
    expect((await engine.refresh(session)).status).toBe("running");
    reply = "exited 0 1700000000\n";
    const s = await engine.refresh(session);
    expect(s.status).toBe("exited");
    expect(s.exitCode).toBe(0);
    expect(s.attachable).toBe(false);
    expect(fake.ranScripts.every((x) => x.startsWith(`DIR='${session.guestStateDir}'\n`))).toBe(true);
    // Ended sessions are not asked again.
    const before = fake.ranScripts.length;
    await engine.refresh(s);
    expect(fake.ranScripts.length).toBe(before);

    const other = testGuestSession("refreshbox-id", "pipe", "running");
    other.id = "other";
    other.name = "other";
    repo.upsert(other);
    reply = "gone\n";
    expect((await engine.refresh(other)).status).toBe("failed");

    // A stopped VM: no dial, the session is failed.
    const { session: onStopped } = setup("refresh-stopped", "stopped", "pipe", "running");
    const n = fake.ranScripts.length;
    const f = await engine.refresh(onStopped);
    expect(f.status).toBe("failed");
    expect(f.launchMessage).toBe("vm is not running");
    expect(fake.ranScripts.length).toBe(n);
  });

  test("listFresh: the running sessions of a running VM (and one an earlier daemon left starting) are asked after in one script, their lines in order; no guest when none runs", async () => {
    const { vm, session: a } = setup("listbox", "running", "pipe", "running");
    const more = (id: string, status: SessionStatus) => {
      const s = { ...testGuestSession(vm.id, "pipe", status), id, name: id, guestStateDir: sess.StateDir(id) };
      store.sessions.upsert(s);
      return s;
    };
    const b = more("b", "running");
    more("done", "exited");
    // left starting by an earlier daemon (killed in its start; no start of this engine's makes it): asked after too
    const left = more("starting", "starting");
    // the guest's answer, a line per dir in the script's order: a runs on, b exited 7, the leftover never started
    const answer: Record<string, string> = { [a.guestStateDir]: "running 4242 99\n", [b.guestStateDir]: "exited 7 1700000000\n", [left.guestStateDir]: "missing\n" };
    const order = (script: string) => Object.keys(answer).sort((x, y) => script.indexOf(`'${x}'`) - script.indexOf(`'${y}'`));
    const fake = new RecordingGuestSSH((script) => ({ stdout: order(script).map((d) => answer[d]).join("") }));
    const { engine, dials } = newEngine(fake);
    const listed = await engine.listFresh(vm.name);
    expect(fake.ranScripts.length).toBe(1);
    expect(fake.ranScripts[0]).toBe(sess.StatusesScript(order(fake.ranScripts[0]!)));
    const by = Object.fromEntries(listed.map((s) => [s.name, [s.status, s.exitCode]]));
    expect(by).toEqual({ [a.name]: ["running", null], b: ["exited", 7], done: ["exited", null], starting: ["failed", null] });
    expect(listed.find((s) => s.name === "starting")?.launchMessage).toBe("session never started in the guest");
    expect(dials()).toBe(1);

    // nothing runs any more: the list is the store's, no guest round trip
    const fake2 = new RecordingGuestSSH(() => ({ stdout: "exited 0 1700000000\n" }));
    const e2 = newEngine(fake2);
    await e2.engine.listFresh(vm.name); // a's end
    expect(fake2.ranScripts.length).toBe(1);
    expect((await e2.engine.listFresh(vm.name)).find((s) => s.id === a.id)?.status).toBe("exited");
    expect(fake2.ranScripts.length).toBe(1);
  });

  test("listFresh: a stopped VM is not dialled; a guest that cannot answer leaves the recorded rows", async () => {
    const { vm: stopped } = setup("list-stopped", "stopped", "pipe", "running");
    const fake = new RecordingGuestSSH(() => ({ stdout: "exited 0 1\n" }));
    const { engine, dials } = newEngine(fake);
    expect((await engine.listFresh(stopped.name)).map((s) => s.status)).toEqual(["running"]);
    expect(dials()).toBe(0);
    const { vm } = setup("list-broken", "running", "pipe", "running");
    for (const reply of [{ exitCode: 1, stderr: "bash: boom" }, { stdout: "" }, { stdout: "what\n" }]) {
      const e = newEngine(new RecordingGuestSSH(() => reply)).engine;
      expect((await e.listFresh(vm.name)).map((s) => s.status)).toEqual(["running"]);
    }
  });

  test("stop: stop script with the grace in tenths; status stopped, exit recorded", async () => {
    const { session } = setup("stopbox", "running", "pipe", "running");
    const fake = new RecordingGuestSSH(() => ({ stdout: "exited 143 1700000000\n" }));
    const { engine } = newEngine(fake);
    const s = await engine.stop(session, 1500);
    expect(s.status).toBe("stopped");
    expect(s.exitCode).toBe(143);
    expect(fake.ranScripts[0]).toContain("kill -TERM");
    expect(fake.ranScripts[0]).toContain("TENTHS='15'\n");
    const k = new RecordingGuestSSH(() => ({ stdout: "exited 137 1700000000\n" }));
    const { session: s2 } = setup("killbox", "running", "pipe", "running");
    const e2 = newEngine(k).engine;
    expect((await e2.kill(s2)).exitCode).toBe(137);
  });

  test("remove: refuses a running session without force; removes the guest dir and the record", async () => {
    const { vm, session } = setup("rmbox", "running", "pipe", "exited");
    const fake = new RecordingGuestSSH();
    const { engine, repo } = newEngine(fake);
    await engine.remove(session);
    expect(repo.get(session.id)).toBeNull();
    expect(fake.ranScripts[0]).toBe(sess.RemoveScript(session.guestStateDir));
    expect(fake.ranScripts[0]).toStartWith(`DIR='${sess.StateDir(session.id)}'\n`);
    const running = testGuestSession(vm.id, "pipe", "running");
    running.id = "r2";
    running.name = "r2";
    repo.upsert(running);
    expect((await engine.remove(running).catch((e) => e)).code).toBe("E_STATE");
  });
});

describe("session hooks fire from the engine", () => {
  /** A hook engine recording "session:stop <name> <status>" per firing. */
  function recorder() {
    const hooks = new HookEngine();
    const fired: string[] = [];
    hooks.hook("rec", "session:start", ({ session }) => void fired.push(`start ${session.name} ${session.status}`));
    hooks.hook("rec", "session:stop", ({ session }) => void fired.push(`stop ${session.name} ${session.status}`));
    return { hooks, fired };
  }

  test("session:start once a launch succeeded; never for a start that failed", async () => {
    const vm = testVM("hookstart", "running");
    store.upsertVM(vm);
    let launchOk = true;
    const fake = new RecordingGuestSSH((script) => (script.includes("nohup bash ") ? (launchOk ? { stdout: "4242 1\n" } : { exitCode: 1, stderr: "no fifo" }) : {}));
    const { hooks, fired } = recorder();
    const { engine } = newEngine(fake, { hooks });
    await engine.start({ vmIdOrName: vm.name, name: "good", command: "sleep" });
    launchOk = false;
    await engine.start({ vmIdOrName: vm.name, name: "bad", command: "sleep" }).catch(() => {});
    expect(fired).toEqual(["start good running"]);
  });

  for (const how of ["stop", "kill", "rm --force", "natural exit", "vm gone"] as const) {
    test(`session:stop fires exactly once on ${how}, also when the end is seen again (another call, a restarted daemon)`, async () => {
      const { vm, session } = setup(`hook-${how.replace(/\W/g, "")}`, "running", "pipe", "running");
      const fake = new RecordingGuestSSH(() => ({ stdout: how === "natural exit" ? "exited 0 1700000000\n" : "exited 143 1700000000\n" }));
      const { hooks, fired } = recorder();
      const { engine } = newEngine(fake, { hooks });
      if (how === "stop") await engine.stop(session);
      else if (how === "kill") await engine.kill(session);
      else if (how === "rm --force") await engine.remove(session, { force: true });
      else if (how === "natural exit") await engine.refresh(session);
      else store.upsertVM({ ...vm, runtime: { ...vm.runtime, state: "stopped" } });
      if (how === "vm gone") await engine.refresh(session);
      // the same end seen again: by this engine, and by a fresh one (a daemon restart reconciling)
      await engine.refresh(session);
      await engine.stop(session);
      await newEngine(fake, { hooks }).engine.reconcile();
      expect(fired.length).toBe(1);
      expect(fired[0]).toStartWith(`stop ${session.name} `);
    });
  }

  test("two callers noticing the same end at once fire it once", async () => {
    const { session } = setup("hook-race", "running", "pipe", "running");
    const fake = new RecordingGuestSSH(async () => (await Bun.sleep(5), { stdout: "exited 0 1700000000\n" }));
    const { hooks, fired } = recorder();
    const { engine } = newEngine(fake, { hooks });
    await Promise.all([engine.refresh(session), engine.refresh(session), engine.stop(session)]);
    expect(fired.length).toBe(1);
  });

  test("a failing session:stop handler is logged, not thrown", async () => {
    const { session } = setup("hook-fails", "running", "pipe", "running");
    const hooks = new HookEngine();
    hooks.hook("bad", "session:stop", () => {
      throw new Error("webhook down");
    });
    const log = testLogger();
    const fake = new RecordingGuestSSH(() => ({ stdout: "exited 0 1700000000\n" }));
    const engine = new SessionEngine({ repo: store.sessions, host: fakeHost(), log, dial: async () => fake, vmAlive: async () => true, getVM: (x) => store.getVM(x), clock: fixedClock, newId: () => "x", hooks });
    expect((await engine.stop(session)).status).toBe("stopped");
    expect(log.of("warn")).toEqual(["bad:session:stop: webhook down"]);
  });
});

describe("SQLite session repo", () => {
  test("round trip, find by id or name, list filters, unique name per vm", () => {
    const vm = testVM("repobox", "running");
    store.upsertVM(vm);
    const repo = store.sessions;
    const s = testGuestSession(vm.id, "pipe", "running");
    s.args = ["a b", "it's", "$(x)"];
    s.exitCode = 0;
    repo.upsert(s);
    expect(repo.get(s.id)).toEqual(s);
    expect(repo.find(vm.id, s.name)).toEqual(s);
    expect(repo.find(vm.id, s.id)).toEqual(s);
    expect(repo.find("other", s.id)).toBeNull();
    expect(repo.list({ vmId: vm.id }).length).toBe(1);
    expect(repo.list({ status: ["exited"] }).length).toBe(0);
    const dup = { ...s, id: "other-id" };
    expect(() => repo.upsert(dup)).toThrow(BangerError);
    repo.upsert({ ...s, status: "exited" });
    expect(repo.get(s.id)!.status).toBe("exited");
    repo.delete(s.id);
    expect(repo.get(s.id)).toBeNull();
    store.deleteVM(vm.id);
  });
});

// --- scripts: real newlines, and hostile values run through a real bash ---

const HOSTILE = [`it's`, `a;b`, `$(touch PWNED)`, "`touch PWNED`", "line1\nline2", "sp ace", `"dq"`, `\\back`, `*`, "-n"];
const tmpRoot = mkdtempSync(join(tmpdir(), "banger-sessions-unit-"));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

/** Run a script as `bash -c` with `input` on stdin, as an SSH exec does. */
function bashC(script: string, input: string) {
  const r = Bun.spawnSync(["bash", "-c", script], { stdin: new TextEncoder().encode(input), cwd: tmpRoot, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function bash(script: string, opts: { cwd?: string; stdin?: string } = {}) {
  const r = Bun.spawnSync(["bash", "-s"], { stdin: new TextEncoder().encode(script), cwd: opts.cwd ?? tmpRoot, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("scripts", () => {
  test("preflight and attach scripts use real newlines (seed)", () => {
    const cwdScript = sess.CWDPreflightScript("/root/repo");
    expect(cwdScript).not.toContain("\\n");
    expect(cwdScript).toContain("\n");
    const commandScript = sess.CommandPreflightScript(["git", "pi"]);
    expect(commandScript).not.toContain("\\n");
    expect(commandScript).toContain("\n");
    expect(sess.AttachInputCommandForPipe("/x/stdin.pipe")).not.toContain("\\n");
    expect(sess.AttachTailCommand("/tmp/stdout.log")).not.toContain("\\n");
    for (const s of [sess.LaunchScript(testGuestSession("v", "pipe", "running")), sess.StatusScript("/x"), sess.StopScript("/x", 100), sess.SendScript("/tmp/u", "/p")]) {
      expect(s).toContain("\n");
    }
  });

  test("shellQuote round-trips hostile strings through bash", () => {
    for (const v of [...HOSTILE, "", "'''", "a'b'c"]) {
      const r = bash(`printf '%s' ${shellQuote(v)}`);
      expect(r.stdout).toBe(v);
    }
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("cwd preflight with hostile dir names: passes when present, fails with its message when not", () => {
    for (const v of HOSTILE) {
      const dir = join(tmpRoot, "cwd", v.replace(/\//g, "_"));
      mkdirSync(dir, { recursive: true });
      expect(bash(sess.CWDPreflightScript(dir)).code).toBe(0);
      const missing = bash(sess.CWDPreflightScript(dir + "-missing"));
      expect(missing.code).toBe(1);
      expect(missing.stderr).toBe(`missing cwd: ${dir}-missing\n`);
    }
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("command preflight: finds real commands, names the missing hostile ones", () => {
    expect(bash(sess.CommandPreflightScript(["bash", "cat"])).code).toBe(0);
    const r = bash(sess.CommandPreflightScript(["bash", "no;such $(touch PWNED)", "it's"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("missing command: no;such $(touch PWNED)\nmissing command: it's\n");
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("launch/status/send/stop run for real with hostile args and a hostile state dir", async () => {
    const stateDir = join(tmpRoot, "state dir 'x' $(y)", "s1");
    const cwd = join(tmpRoot, "work;dir");
    mkdirSync(cwd, { recursive: true });
    // An echo agent: one reply line per input line, plus its hostile args.
    const session = {
      guestStateDir: stateDir,
      command: "bash",
      args: ["-c", `printf '%s|' "$@"; echo; pwd; while IFS= read -r l; do echo "got:$l"; done; exit 7`, "agent", ...HOSTILE],
      cwd,
      stdinMode: "pipe" as const,
    };
    const launched = bash(sess.LaunchScript(session));
    expect(launched.stderr).toBe("");
    expect(launched.code).toBe(0);
    const [pid] = launched.stdout.trim().split(" ");
    expect(Number(pid)).toBeGreaterThan(0);
    expect(bash(sess.StatusScript(stateDir)).stdout).toBe(`running ${launched.stdout.trim()}\n`);

    const paths = sess.sessionPaths(stateDir);
    const upload = join(tmpRoot, "upload it's");
    const sent = bashC(sess.SendScript(upload, paths.pipe), "hello\nworld\n");
    expect(sent.code).toBe(0);
    expect(existsSync(upload)).toBe(false);
    const want = `${HOSTILE.join("|")}|\n${cwd}\ngot:hello\ngot:world\n`;
    for (let i = 0; i < 100 && readFileSync(paths.stdout, "utf8") !== want; i++) await Bun.sleep(20);
    expect(readFileSync(paths.stdout, "utf8")).toBe(want);

    // Reading from an offset returns exactly the rest.
    const off = Buffer.byteLength(`${HOSTILE.join("|")}|\n${cwd}\n`);
    expect(bash(sess.LogReadCommand(paths.stdout, off, 1000)).stdout).toBe("got:hello\ngot:world\n");
    expect(bash(sess.LogReadCommand(paths.stdout, off, 4)).stdout).toBe("got:");

    const stopped = bash(sess.StopScript(stateDir, 2000));
    expect(stopped.stdout).toMatch(/^exited 143 \d+\n$/);
    expect(readFileSync(paths.exitCode, "utf8")).toBe("143\n");
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("closed stdin reads EOF at once; exit code is recorded atomically", async () => {
    const stateDir = join(tmpRoot, "closed", "s2");
    const session = { guestStateDir: stateDir, command: "bash", args: ["-c", "cat; echo eof; exit 5"], cwd: "", stdinMode: "closed" as const };
    expect(bash(sess.LaunchScript(session)).code).toBe(0);
    let status = "";
    for (let i = 0; i < 50; i++) {
      status = bash(sess.StatusScript(stateDir)).stdout;
      if (status.startsWith("exited")) break;
      await Bun.sleep(20);
    }
    expect(status).toMatch(/^exited 5 \d+\n$/);
    expect(readFileSync(join(stateDir, "stdout.log"), "utf8")).toBe("eof\n");
    expect(existsSync(join(stateDir, "stdin.pipe"))).toBe(false);
  });

  test("StatusesScript through real bash: a line per hostile state dir, in order; those gone are waited for together, not one after another", async () => {
    const dir = (v: string) => join(tmpRoot, "statuses", v.replace(/\//g, "_"));
    const launch = (d: string, script: string) => {
      const r = bash(sess.LaunchScript({ guestStateDir: d, command: "bash", args: ["-c", script], cwd: "", stdinMode: "closed" }));
      expect(r.code).toBe(0);
      return r.stdout.trim();
    };
    const running = dir(HOSTILE[0]!);
    const runs = launch(running, "sleep 30");
    const exited = dir(HOSTILE[2]!);
    launch(exited, "exit 7");
    // no process and no exit code (killed with its runner): a pid file whose process is not that one
    const gone = [dir(HOSTILE[4]!), dir(HOSTILE[8]!)];
    for (const d of gone) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, "pid"), `${process.pid} 1\n`);
    }
    for (let i = 0; i < 100 && !existsSync(join(exited, "exit_code")); i++) await Bun.sleep(20);
    const t0 = Date.now();
    const r = bash(sess.StatusesScript([gone[0]!, running, dir("never started"), exited, gone[1]!]));
    const took = Date.now() - t0;
    expect(r.stderr).toBe("");
    const lines = r.stdout.split("\n");
    expect(lines.length).toBe(6);
    expect([lines[0], lines[1], lines[2], lines[4], lines[5]]).toEqual(["gone", `running ${runs}`, "missing", "gone", ""]);
    expect(lines[3]).toMatch(/^exited 7 \d+$/);
    // status.sh's wait for a just-ended process's exit is 2 s: two gone ones asked one after another would take 4
    expect(took).toBeLessThan(3500);
    expect(bash(sess.StopScript(running, 0)).stdout).toMatch(/^exited 137 /);
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("FastSendScript through real bash: hostile bytes arrive exactly, the upload is removed", async () => {
    const dir = join(tmpRoot, "fast");
    mkdirSync(dir, { recursive: true });
    const pipe = join(dir, "stdin.pipe");
    Bun.spawnSync(["mkfifo", pipe]);
    const reader = Bun.spawn(["bash", "-c", `exec 3<>"$1"; head -c 200 <&3`, "r", pipe], { stdout: "pipe" });
    const upload = join(dir, "up it's");
    const payload = "it's $(touch PWNED) `x` \\n \r\x1b[0m \u00e9\ntwo\n\n";
    const r = bashC(sess.FastSendScript(upload, pipe, 2), payload);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(existsSync(upload)).toBe(false);
    const filler = "z".repeat(200 - Buffer.byteLength(payload));
    expect(bashC(sess.FastSendScript(upload, pipe, 2), filler).code).toBe(0);
    expect(await new Response(reader.stdout).text()).toBe(payload + filler);
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("FastSendScript times out on a pipe nobody reads, and on a full pipe", () => {
    const dir = join(tmpRoot, "fastdead");
    mkdirSync(dir, { recursive: true });
    const pipe = join(dir, "stdin.pipe");
    Bun.spawnSync(["mkfifo", pipe]);
    const upload = join(dir, "up");
    const t0 = performance.now();
    const r = bashC(sess.FastSendScript(upload, pipe, 1), "x\n");
    expect(r.code).toBe(sess.SEND_TIMEOUT_EXIT);
    expect(r.stderr).toContain("not reading its stdin");
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(existsSync(upload)).toBe(false);
    // a holder keeps the pipe open but nobody drains it: fill it, then a send must time out too
    // dd is the holder itself (exec): killing a bash around it left dd blocked on the full pipe for ever
    const holder = Bun.spawn(["bash", "-c", `exec 3<>"$1"; exec dd if=/dev/zero bs=1M count=1 >&3 2>/dev/null`, "h", pipe]);
    Bun.sleepSync(300);
    const full = bashC(sess.FastSendScript(upload, pipe, 1), "y\n");
    holder.kill();
    expect(full.code).toBe(sess.SEND_TIMEOUT_EXIT);
    expect(existsSync(upload)).toBe(false);
  });

  test("a send to a pipe nobody reads times out with a clear message", () => {
    const dir = join(tmpRoot, "deadpipe");
    mkdirSync(dir, { recursive: true });
    const pipe = join(dir, "stdin.pipe");
    Bun.spawnSync(["mkfifo", pipe]);
    const upload = join(dir, "up");
    const t0 = performance.now();
    const r = bashC(sess.SendScript(upload, pipe, 1), "x\n");
    expect(r.code).toBe(sess.SEND_TIMEOUT_EXIT);
    expect(r.stderr).toContain("not reading its stdin");
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(existsSync(upload)).toBe(false);
    const none = bashC(sess.SendScript(upload, join(dir, "nope")), "x\n");
    expect(none.code).toBe(sess.SEND_NO_PIPE_EXIT);
  });
  test("an upload cut short (daemon died mid-send) writes nothing into the pipe and leaves no upload file", () => {
    const dir = join(tmpRoot, "shortsend");
    mkdirSync(dir, { recursive: true });
    const pipe = join(dir, "stdin.pipe");
    Bun.spawnSync(["mkfifo", pipe]);
    // a reader that records whatever reaches the FIFO
    const out = join(dir, "got");
    const reader = Bun.spawn(["bash", "-c", `exec 3<>${JSON.stringify(pipe)}; timeout 2 cat <&3 > ${JSON.stringify(out)}`]);
    const upload = join(dir, "up");
    for (const script of [sess.FastSendScript(upload, pipe, 1, 10), sess.SendScript(upload, pipe, 1, 10)]) {
      const r = bashC(script, "half\n");
      expect(r.code).toBe(sess.SEND_SHORT_EXIT);
      expect(r.stderr).toContain("upload arrived short: 5 of 10 bytes");
      expect(existsSync(upload)).toBe(false);
    }
    const ok = bashC(sess.FastSendScript(upload, pipe, 1, 3), "ok\n");
    expect(ok.code).toBe(0);
    Bun.spawnSync(["sleep", "2.2"]);
    reader.kill();
    expect(readFileSync(out, "utf8")).toBe("ok\n");
  });

  test("renderScript: quoted NAME='value' lines before the body (after a #! line), lists as bash arrays, names checked", () => {
    const body = `printf '<%s>' "$A" "\${L[@]}" "$N"\n`;
    const r = renderScript(body, { A: HOSTILE.join(""), L: HOSTILE, N: 7 });
    expect(r).toStartWith(`A=${shellQuote(HOSTILE.join(""))}\nL=(`);
    expect(r).toEndWith(body);
    expect(bash(r).stdout).toBe([HOSTILE.join(""), ...HOSTILE, "7"].map((v) => `<${v}>`).join(""));
    expect(renderScript(`#!/bin/bash\necho "$A"\n`, { A: "x" })).toBe(`#!/bin/bash\nA='x'\necho "$A"\n`);
    expect(renderScript(["a=1\n", `echo "$A"\n`], { A: "x" })).toBe(`A='x'\na=1\necho "$A"\n`);
    // a name the body never uses, or one that is no shell name, is a bug caught before the guest runs anything
    expect(() => renderScript(`echo "$A"\n`, { B: "x" })).toThrow("not a shell name the script uses");
    expect(() => renderScript(`echo "$a-b"\n`, { "a-b": "x" })).toThrow(BangerError);
    expect(() => renderScript(`echo "$A"\n`, { A: Number.NaN })).toThrow(BangerError);
    expect(() => renderScript(`echo "$A"\n`, { A: "a\0b" })).toThrow(BangerError);
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });

  test("remove, attach input and attach tail with hostile paths through real bash", async () => {
    for (const v of HOSTILE) {
      const dir = join(tmpRoot, "rm", v.replace(/\//g, "_"), "s");
      mkdirSync(join(dir, "sub"), { recursive: true });
      writeFileSync(join(dir, "stdout.log"), "0123456789");
      // attach tail from offset 4: a pid that is gone ends it while stdin stays open; without a pid, stdin closing does
      const gone = Bun.spawn(["bash", "-c", sess.AttachTailCommand(join(dir, "stdout.log"), 4, 999999999)], { stdin: "pipe", stdout: "pipe" });
      expect(await new Response(gone.stdout).text()).toBe("456789");
      gone.stdin.end();
      const follow = Bun.spawn(["bash", "-c", sess.AttachTailCommand(join(dir, "stdout.log"), 4)], { stdin: "pipe", stdout: "pipe" });
      const reader = follow.stdout.getReader();
      let got = "";
      while (got.length < 6) got += new TextDecoder().decode((await reader.read()).value);
      expect(got).toBe("456789");
      follow.stdin.end();
      expect(await follow.exited).toBe(143); // the tail was killed once stdin closed
      const input = bashC(sess.AttachInputCommandForPipe(join(dir, "in")), "typed\n");
      expect(input.code).toBe(0);
      expect(readFileSync(join(dir, "in"), "utf8")).toBe("typed\n");
      expect(bash(sess.RemoveScript(dir)).code).toBe(0);
      expect(existsSync(dir)).toBe(false);
    }
    // an empty dir is refused by the script's guard, never `rm -rf -- ""`
    const empty = bash(sess.RemoveScript(""));
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toContain("DIR");
    expect(existsSync(join(tmpRoot, "PWNED"))).toBe(false);
  });
});

describe("readableCommand (session list and show)", () => {
  test("plain words as they are, others quoted; one line whatever the words hold, and bash reads back the same words", () => {
    const words = ["pi", "--mode", "rpc", "it's", "a b", "line1\nline2", "tab\there'q", "back\\slash\n", "", "$(touch x)", "\x1b[31m"];
    const line = readableCommand(words);
    expect(line).toBe(`pi --mode rpc 'it'\\''s' 'a b' $'line1\\nline2' $'tab\\there\\'q' $'back\\\\slash\\n' '' '$(touch x)' $'\\x1b[31m'`);
    expect(line).not.toContain("\n");
    const back = Bun.spawnSync(["bash", "-c", `for a in ${line}; do printf '%s\\0' "$a"; done`]).stdout.toString();
    expect(back.split("\0").slice(0, -1)).toEqual(words);
  });
});
