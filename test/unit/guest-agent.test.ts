// The guest agent's host side (plugins/guest/agent.ts) against a scripted guest on the fake FS's FIFOs, and
// waitForGuest / the guest plugin choosing it for a restore whose snapshot's guest runs it.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import guestPlugin, { AGENT_FILE, AGENT_SILENT_MS, EXEC_AGENT_FILE, EXEC_AGENT_RECONNECT_SILENT_MS, EXEC_AGENT_SILENT_MS, READY_MARKER, inBash, waitForGuest } from "../../plugins/guest/index.ts";
import { AGENT_MARKER, agentRun } from "../../plugins/guest/agent.ts";
import { AgentFirstSSH, EXEC_AGENT_MARKER } from "../../plugins/guest/exec-agent.ts";
import { fakeExecGuest, type Started } from "../helpers/fake-exec-guest.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { setupPlugins } from "../../src/core/loader.ts";
import { Providers } from "../../src/core/providers.ts";
import { vmPaths } from "../../src/shared/paths.ts";
import type { ExecStreamOptions, GuestSSH, SSHTarget } from "../../src/host/types.ts";
import type { VMMDriver } from "../../src/vmm/driver.ts";
import type { GuestConnector } from "../../src/core/plugin.ts";
import { fakeHost, recordingOp, sampleImage, sampleVM, testLogger, type FakeFS } from "../helpers/fakes.ts";

/**
 * A guest agent on the fake FS's FIFOs at `pipe`, as init.sh's: it takes `run NONCE LEN` + script, then hands
 * `answer` the script and each later line the host writes; what answer returns is written back. `exit` ends the
 * exchange with that code (and stderr line).
 */
function fakeAgent(fs: FakeFS, pipe: string, answer: (ev: { script: string; line?: string }) => { out?: string; exit?: number; err?: string } | void) {
  fs.fifos.set(`${pipe}.in`, []);
  fs.fifos.set(`${pipe}.out`, []);
  const seen: { scripts: string[]; lines: string[] } = { scripts: [], lines: [] };
  let buf = Buffer.alloc(0);
  let run: { nonce: string; script: string } | null = null;
  const reply = (r: { out?: string; exit?: number; err?: string } | void) => {
    if (!r) return;
    const out = fs.fifos.get(`${pipe}.out`)!;
    if (r.out) out.push(new TextEncoder().encode(r.out));
    if (r.exit !== undefined) {
      out.push(new TextEncoder().encode(`banger-agent ${run!.nonce} exit ${r.exit} ${r.err ?? ""}\n`));
      run = null;
    }
  };
  const before = fs.onFifoWrite;
  fs.onFifoWrite = (path, data) => {
    if (path !== `${pipe}.in` && before) return before(path, data);
    expect(path).toBe(`${pipe}.in`);
    buf = Buffer.concat([buf, data]);
    for (;;) {
      if (!run) {
        const nl = buf.indexOf("\n");
        if (nl < 0) return;
        const m = /^run ([0-9a-f]{16}) (\d+)$/.exec(buf.subarray(0, nl).toString());
        if (!m) throw new Error(`bad header ${buf.subarray(0, nl).toString()}`);
        if (buf.length < nl + 1 + Number(m[2])) return;
        const script = buf.subarray(nl + 1, nl + 1 + Number(m[2])).toString();
        buf = buf.subarray(nl + 1 + Number(m[2]));
        run = { nonce: m[1]!, script };
        seen.scripts.push(script);
        reply(answer({ script }));
        continue;
      }
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.subarray(0, nl).toString();
      buf = buf.subarray(nl + 1);
      seen.lines.push(line);
      reply(answer({ script: run.script, line }));
    }
  };
  return seen;
}

type Answer = (ev: { script: string; line?: string }) => { out?: string; exit?: number; err?: string } | void;

/** set-clock.sh's side of the clock exchange: "ready", its clock per ping, the offset read, then `exit`. */
function clockGuest(exit = 0, err?: string): Answer {
  return ({ line }) => {
    if (line === undefined) return { out: "ready\n" };
    if (line === "t") return { out: "1000.000000\n" };
    return { exit, err };
  };
}

const PIPE = "/state/vms/c1/agent";

describe("agentRun", () => {
  test("one exchange: the script's length-framed, its stdout lines back, its exit code and last stderr line; what an earlier exchange left unread is dropped; another nonce's line is output, not the end", async () => {
    const host = fakeHost();
    const seen = fakeAgent(host.fs, PIPE, ({ script }) => ({ out: `got ${script.length} bytes\nbanger-agent 0000000000000000 exit 9 forged\n`, exit: 5, err: "why it failed" }));
    host.fs.fifos.get(`${PIPE}.out`)!.push(new TextEncoder().encode("stale line from before\n"));
    const out: string[] = [];
    const err: string[] = [];
    const script = "echo 'it''s'; $(x)\nnäme\n";
    const code = await agentRun(host, PIPE, script, { deadline: host.clock.ms + 1000, onStdout: (c) => void out.push(new TextDecoder().decode(c)), onStderr: (c) => void err.push(new TextDecoder().decode(c)) });
    expect(code).toBe(5);
    expect(seen.scripts).toEqual([script]);
    expect(out.join("")).toBe(`got ${script.length} bytes\nbanger-agent 0000000000000000 exit 9 forged\n`);
    expect(err).toEqual(["why it failed\n"]);
    expect(host.fs.ops.filter((o) => o.startsWith("openFifo"))).toEqual([`openFifo ${PIPE}.out read`, `openFifo ${PIPE}.in write`]);
  });

  test("a guest that never answers: E_TIMEOUT at the deadline (the host's clock)", async () => {
    const host = fakeHost();
    fakeAgent(host.fs, PIPE, () => {});
    const e = await agentRun(host, PIPE, "true", { deadline: host.clock.ms + 500 }).catch((x: Error) => x);
    expect((e as { code?: string }).code).toBe("E_TIMEOUT");
    expect((e as Error).message).toBe("the guest agent did not answer in time");
  });

  test("a VM process that dies meanwhile fails the exchange within a few hundred ms, not at the deadline", async () => {
    const host = fakeHost();
    fakeAgent(host.fs, PIPE, () => {});
    let alive = true;
    host.clock.timer(1000, () => void (alive = false));
    const started = host.clock.ms;
    const e = await agentRun(host, PIPE, "true", { deadline: host.clock.ms + 60_000, alive: async () => alive }).catch((x: Error) => x);
    expect((e as Error).message).toBe("the VM's process exited while its guest agent was asked");
    expect(host.clock.ms - started).toBeLessThan(1500);
  });

  test("no FIFOs (a VMM without the port): the open fails, nothing is written", async () => {
    const host = fakeHost();
    const e = await agentRun(host, PIPE, "true", { deadline: host.clock.ms + 500 }).catch((x: Error) => x);
    expect(String(e)).toContain("ENOENT");
  });
});

const SNAP = "/state/snapshots/parent@s1";

function setup(answer: Answer = clockGuest()) {
  const host = fakeHost();
  const vm = sampleVM({ name: "c1", sshPort: 2222 });
  const keys = vmPaths(vm.runtime.vmDir);
  host.fs.files.set(keys.clientKey, "OWN-PRIVATE");
  host.fs.files.set(`${keys.clientKey}.pub`, "ssh-ed25519 AAAAownpub banger\n");
  host.fs.files.set(keys.hostKey, "own-host-key-bytes");
  host.fs.files.set(keys.hostPubKey, "ssh-ed25519 AAAAownhost\n");
  host.fs.files.set(join(SNAP, "keys", "id_ed25519"), "PARENT-PRIVATE");
  host.fs.files.set(join(SNAP, "keys", "host_ed25519.pub"), "ssh-ed25519 AAAAparenthost\n");
  host.fs.files.set(vm.runtime.logPath, `...\n${AGENT_MARKER}\n${READY_MARKER}\n`);
  host.procs.add(4242, 1);
  const pipe = keys.agentPipe;
  const seen = fakeAgent(host.fs, pipe, answer);
  const dials: { target: SSHTarget; execs: string[]; conn: GuestSSH }[] = [];
  host.ssh = {
    async dial(target: SSHTarget): Promise<GuestSSH> {
      let closed = false;
      const d = { target, execs: [] as string[], conn: null as unknown as GuestSSH };
      d.conn = {
        async exec(command: string, _o?: ExecStreamOptions) {
          d.execs.push(command);
          return 0;
        },
        runScript: async () => ({ exitCode: 0, stdout: "", stderr: "" }),
        upload: async () => {},
        close: () => void (closed = true),
        get closed() {
          return closed;
        },
      };
      dials.push(d);
      return d.conn;
    },
  } as never;
  return { host, vm, pipe, seen, dials };
}

const opts = (over: Record<string, unknown> = {}) => ({ timeoutMs: 60_000, progress: () => {}, signal: new AbortController().signal, restored: true, ...over });

describe("waitForGuest over the agent", () => {
  test("a clone: clock and identity over the agent in one script, then ONE dial, with the clone's own keys, nothing run on it", async () => {
    const { host, vm, pipe, seen, dials } = setup();
    const debug: string[] = [];
    const conn = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, debug: (m: string) => void debug.push(m) }));
    expect(seen.scripts.length).toBe(1);
    for (const part of ["EPOCHREALTIME", "RNDRESEEDCRNG", "/proc/sys/kernel/hostname", "/etc/dropbear/dropbear_ed25519_host_key", "ssh-ed25519 AAAAownpub banger", "NAME='c1'"]) expect(seen.scripts[0]).toContain(part);
    expect(seen.lines.slice(0, 3)).toEqual(["t", "t", "t"]);
    expect(seen.lines[3]).toMatch(/^-?\d+$/);
    expect(dials.map((d) => [d.target.privateKey, d.target.hostKey, d.target.port, d.execs.length])).toEqual([["OWN-PRIVATE", "ssh-ed25519 AAAAownhost", 2222, 0]]);
    expect(conn).toBe(dials[0]!.conn);
    expect(debug[0]).toMatch(/^c1: guest answering: agent: clock \+ identity \d+ ms, dial \d+ ms; \d+ ms in all$/);
  });

  test("a rollback: the clock alone over the agent (no identity), then one dial with its own keys", async () => {
    const { host, vm, pipe, seen, dials } = setup();
    await waitForGuest(host, vm, 4242, opts({ agentPipe: pipe }));
    expect(seen.scripts[0]).toContain("EPOCHREALTIME");
    expect(seen.scripts[0]).not.toContain("RNDRESEEDCRNG");
    expect(dials.map((d) => d.target.privateKey)).toEqual(["OWN-PRIVATE"]);
  });

  test("an agent that says nothing for AGENT_SILENT_MS (not reading the port): the clock and identity go over SSH, with a line in the log", async () => {
    const { host, vm, pipe, seen, dials } = setup(() => {});
    const logged: string[] = [];
    const started = host.clock.ms;
    await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, log: (m: string) => void logged.push(m) }));
    expect(host.clock.ms - started).toBeGreaterThanOrEqual(AGENT_SILENT_MS);
    expect(seen.scripts.length).toBe(1);
    expect(logged[0]).toBe("c1: the guest agent did not answer within 30 s; going over SSH");
    // the SSH path: the parent's keys, the identity in one exec
    expect(dials.map((d) => d.target.privateKey)).toEqual(["PARENT-PRIVATE"]);
    expect(dials[0]!.execs[0]).toContain("RNDRESEEDCRNG");
  });

  test("a failed identity is one line with the guest's reason, and no dial", async () => {
    const { host, vm, pipe, dials } = setup(clockGuest(3, "the clone's dropbear exited (see /var/log/banger/dropbear.log)"));
    const e = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe })).catch((x: Error) => x);
    expect((e as Error).message).toBe("giving clone c1 its own identity failed (exit 3): the clone's dropbear exited (see /var/log/banger/dropbear.log)");
    expect(dials.length).toBe(0);
  });

  test("a tap clone: its network script over the agent after the identity, then its provider's afterIdentity, then the dial at its own address", async () => {
    const order: string[] = [];
    const { host, vm, pipe, seen, dials } = setup((ev) => {
      if (ev.script.includes("MOVE-ME")) {
        order.push("net script");
        return { exit: 0 };
      }
      return clockGuest()(ev);
    });
    await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, cloneNet: { guestScript: "echo MOVE-ME", afterIdentity: async () => void order.push("afterIdentity"), dialVia: { host: "fe80::1%bt", port: 22 } } }));
    expect(seen.scripts.length).toBe(2);
    expect(order).toEqual(["net script", "afterIdentity"]);
    // no link-local dial for the identity: the one dial is the clone's own, at its own address
    expect(dials.map((d) => [d.target.privateKey, d.target.host])).toEqual([["OWN-PRIVATE", vm.runtime.sshHost]]);
  });
});

/**
 * The guest plugin loaded over setup()'s host, its console log saying `log`; its image of `source` (sampleImage's
 * by default), and the connections it hands the pool kept in `adopted`.
 */
async function loaded(log: string, o: { source?: string; adopted?: GuestSSH[]; connectors?: GuestConnector[]; logged?: string[] } = {}) {
  const s = setup();
  s.host.fs.files.set(s.vm.runtime.logPath, log);
  const hooks = new HookEngine();
  const image = o.source ? ({ ...sampleImage(), source: o.source } as ReturnType<typeof sampleImage>) : sampleImage();
  await setupPlugins([{ plugin: guestPlugin, source: "builtin" }], {
    hooks,
    host: s.host,
    paths: { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" },
    log: o.logged ? { ...testLogger(), info: (m: string) => void o.logged!.push(m) } : testLogger(),
    store: { listVMs: () => [s.vm], getImage: () => image },
    drivers: new Map<string, VMMDriver>(),
    providers: new Providers(),
    adoptSSH: (_vm: unknown, c: GuestSSH) => void o.adopted?.push(c),
    addGuestConnector: (c: GuestConnector) => void o.connectors?.push(c),
  });
  return { ...s, hooks };
}

/** vm:start:after for loaded()'s VM: a boot, or a restore of `snapshot`. */
function start(s: Awaited<ReturnType<typeof loaded>>, o: { restored?: boolean; snapshot?: unknown; progress?: (m: string) => void }) {
  const op = recordingOp({ vm: s.vm });
  return s.hooks.run("vm:start:after", { vm: s.vm, handles: { pid: 4242 } as never, progress: o.progress ?? (() => {}), signal: op.signal, op, restored: o.restored, snapshot: o.snapshot as never });
}

describe("the guest plugin and AGENT_FILE", () => {
  test("a boot whose console said the agent marker records it; its snapshot carries it; a clone of that snapshot uses the agent and records it too", async () => {
    const s = await loaded(`x\n${AGENT_MARKER}\n${READY_MARKER}\n`);
    const mark = join(s.vm.runtime.vmDir, AGENT_FILE);
    await start(s, {});
    expect(s.host.fs.files.has(mark)).toBe(true);
    await s.hooks.run("vm:snapshot:before", { vm: s.vm, dir: SNAP } as never);
    expect(s.host.fs.files.has(join(SNAP, AGENT_FILE))).toBe(true);
    s.host.fs.files.delete(mark);
    await start(s, { restored: true, snapshot: { vmId: "parent", dir: SNAP } });
    expect(s.seen.scripts.length).toBe(1);
    expect(s.host.fs.files.has(mark)).toBe(true);
  });

  test("a boot without the marker (an image older than the agent) records none; a restore of a snapshot without it goes over SSH and clears the VM's", async () => {
    const s = await loaded(`x\n${READY_MARKER}\n`);
    const mark = join(s.vm.runtime.vmDir, AGENT_FILE);
    s.host.fs.files.set(mark, "");
    await start(s, {});
    expect(s.host.fs.files.has(mark)).toBe(false);
    await s.hooks.run("vm:snapshot:before", { vm: s.vm, dir: SNAP } as never);
    expect(s.host.fs.files.has(join(SNAP, AGENT_FILE))).toBe(false);
    await start(s, { restored: true, snapshot: { vmId: s.vm.id, dir: SNAP } });
    expect(s.seen.scripts.length).toBe(0);
    // the clock went over SSH: an exec on the one dial
    expect(s.dials.at(-1)!.execs[0]).toContain("EPOCHREALTIME");
  });
});

describe("waitForGuest and the exec agent", () => {
  /** setup() with an exec agent of `version` at the VM's execPipe, running commands as `ran` records (echo: "hi"). */
  function withExec(o: Parameters<typeof fakeExecGuest>[3] = {}, answer?: Answer) {
    const s = setup(answer);
    const ran: Started[] = [];
    const execPipe = vmPaths(s.vm.runtime.vmDir).execPipe;
    const exec = fakeExecGuest(
      s.host.fs,
      execPipe,
      (x, reply) => {
        ran.push(x);
        if (x.command.startsWith("echo hi")) reply("o", x.id, "hi\n");
        reply("x", x.id, "0");
      },
      o,
    );
    return { ...s, execPipe, exec, ran };
  }

  test("a clone whose exec agent speaks version 2 or later: its ping, three clock reads and one identity frame over it (nothing over the guest agent, no program in the guest); its commands over it; no SSH dial until something needs it", async () => {
    const { host, vm, pipe, seen, dials, execPipe, exec, ran } = withExec({ clock: () => "1000.000000000" });
    const debug: string[] = [];
    const logged: string[] = [];
    const conn = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, execPipe, debug: (m: string) => void debug.push(m), log: (m: string) => void logged.push(m) }));
    expect(seen.scripts).toHaveLength(0);
    expect(exec.frames.map((f) => f[0])).toEqual(["p", "c", "c", "c", "I"]);
    const f = exec.identities[0]!;
    expect(Object.keys(f)).toEqual(["clock_offset_ns", "entropy", "hostname", "authorized_key", "host_key"]);
    // the guest said 1000 s since the epoch; the host's clock is far on: the offset moves it there
    expect(BigInt(f.clock_offset_ns as string)).toBe(BigInt(host.clock.ms - 1_000_000) * 1_000_000n);
    expect((f.entropy as Uint8Array).length).toBe(64);
    expect(new TextDecoder().decode(f.hostname as Uint8Array)).toBe("c1");
    expect(new TextDecoder().decode(f.authorized_key as Uint8Array)).toBe("ssh-ed25519 AAAAownpub banger");
    expect(new TextDecoder().decode(f.host_key as Uint8Array)).toBe("own-host-key-bytes");
    expect(logged[0]).toMatch(/^c1: restored guest's clock moved \d+\.\d{3} s to the host's \(round trip \d+ ms\)$/);
    expect(conn).toBeInstanceOf(AgentFirstSSH);
    expect(debug[0]).toMatch(/^c1: guest answering: exec agent \d+ ms, clock \+ identity \d+ ms; \d+ ms in all$/);
    const out: string[] = [];
    expect(await conn.exec("echo hi", { onStdout: (c) => void out.push(new TextDecoder().decode(c)) })).toBe(0);
    expect(ran.map((r) => r.command)).toEqual(["echo hi"]);
    expect(out.join("")).toBe("hi\n");
    expect(dials).toHaveLength(0);
    // SSH when something needs it: the clone's own keys, at its own address, as the daemon's pool dials it (sshTargetFor)
    await conn.exec("top", { pty: { cols: 80, rows: 24 } });
    expect(dials.map((d) => [d.target.privateKey, d.target.hostKey, d.target.host, d.target.port])).toEqual([["OWN-PRIVATE", "ssh-ed25519 AAAAownhost", vm.runtime.sshHost || "127.0.0.1", 2222]]);
    conn.close();
  });

  test("a rollback over version 2: the clock and fresh randomness (two restores of one snapshot must not repeat its RNG), no hostname or keys", async () => {
    const { host, vm, pipe, seen, dials, execPipe, exec } = withExec();
    const conn = await waitForGuest(host, vm, 4242, opts({ agentPipe: pipe, execPipe }));
    await waitForGuest(host, vm, 4242, opts({ agentPipe: pipe, execPipe }));
    expect(seen.scripts).toHaveLength(0);
    expect(exec.identities.map((f) => Object.keys(f))).toEqual([
      ["clock_offset_ns", "entropy"],
      ["clock_offset_ns", "entropy"],
    ]);
    expect(Buffer.from(exec.identities[0]!.entropy as Uint8Array).equals(Buffer.from(exec.identities[1]!.entropy as Uint8Array))).toBe(false);
    expect(conn).toBeInstanceOf(AgentFirstSSH);
    expect(dials).toHaveLength(0);
  });

  test("a tap clone over version 2: its network script over the exec agent in bash after the identity, then afterIdentity; no dial", async () => {
    const order: string[] = [];
    const { host, vm, pipe, dials, execPipe, exec, ran } = withExec({ identity: () => void order.push("identity") });
    await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, execPipe, cloneNet: { guestScript: "echo MOVE-ME", afterIdentity: async () => void order.push("afterIdentity"), dialVia: { host: "fe80::1%bt", port: 22 } } }));
    expect(ran.map((r) => r.command)).toEqual([inBash("echo MOVE-ME")]);
    // (the command's beat, a one-byte ping after the handshake's, aside)
    expect(exec.frames.filter((f, i) => !(i > 0 && /^p \S+ 1$/.test(f))).map((f) => f[0])).toEqual(["p", "c", "c", "c", "I", "s", "i"]);
    expect(order).toEqual(["identity", "afterIdentity"]);
    expect(dials).toHaveLength(0);
  });

  test("an identity the guest refuses is one line with its reason, and nothing more is tried", async () => {
    const { host, vm, pipe, seen, dials, execPipe } = withExec({ identity: () => "/etc/hostname: Read-only file system" });
    const e = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, execPipe })).catch((x: Error) => x);
    expect((e as Error).message).toBe("giving clone c1 its own identity failed: /etc/hostname: Read-only file system");
    expect(seen.scripts).toHaveLength(0);
    expect(dials).toHaveLength(0);
  });

  test("a guest whose dropbear loaded its host key at start: nothing applied, a line in the log, the identity over the guest agent's script (which starts one that does not), and the exec agent, already answering, for the commands", async () => {
    const { host, vm, pipe, seen, dials, execPipe, exec } = withExec({ identity: () => "dropbear loads its host key once (no -R): not replaced here" });
    const logged: string[] = [];
    const conn = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, execPipe, log: (m: string) => void logged.push(m) }));
    expect(logged[0]).toBe("c1: dropbear loads its host key once (no -R): not replaced here; its identity goes over the guest agent");
    expect(seen.scripts).toHaveLength(1);
    expect(seen.scripts[0]).toContain("/etc/dropbear/dropbear_ed25519_host_key");
    expect(exec.frames.filter((f) => f.startsWith("p "))).toHaveLength(1);
    expect(conn).toBeInstanceOf(AgentFirstSSH);
    expect(dials).toHaveLength(0);
  });

  test("an exec agent of version 1 (an older image's): clock and identity over the guest agent as before, then its commands over the exec agent attached first (one ping)", async () => {
    const { host, vm, pipe, seen, dials, execPipe, exec } = withExec({ version: 1 });
    const debug: string[] = [];
    const conn = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, execPipe, debug: (m: string) => void debug.push(m) }));
    expect(seen.scripts).toHaveLength(1);
    expect(seen.scripts[0]).toContain("RNDRESEEDCRNG");
    expect(exec.frames).toHaveLength(1);
    expect(conn).toBeInstanceOf(AgentFirstSSH);
    expect(dials).toHaveLength(0);
    expect(debug[0]).toMatch(/^c1: guest answering: exec agent \d+ ms, agent: clock \+ identity \d+ ms; \d+ ms in all$/);
  });

  test("an exec agent that does not answer its ping: a line in the log, then the guest agent and the dial as before", async () => {
    const { host, vm, pipe, seen, dials, execPipe } = withExec({ answerPings: false });
    const logged: string[] = [];
    const conn = await waitForGuest(host, vm, 4242, opts({ cloneOf: SNAP, agentPipe: pipe, execPipe, log: (m: string) => void logged.push(m) }));
    expect(logged[0]).toBe(`c1: the guest's exec agent did not answer within ${EXEC_AGENT_SILENT_MS / 1000} s; its commands go over SSH`);
    expect(seen.scripts).toHaveLength(1);
    expect(conn).toBe(dials[0]!.conn);
  });
});

describe("the guest plugin and EXEC_AGENT_FILE", () => {
  test("a boot whose console said both markers records both, and its commands go over the exec agent with the boot's SSH connection kept for the rest; its snapshot carries them; a clone of it answers over the exec agent with no dial", async () => {
    const adopted: GuestSSH[] = [];
    const s = await loaded(`x\n${AGENT_MARKER}\n${EXEC_AGENT_MARKER}\n${READY_MARKER}\n`, { adopted });
    const ran: string[] = [];
    fakeExecGuest(s.host.fs, vmPaths(s.vm.runtime.vmDir).execPipe, (x, reply) => {
      ran.push(x.command);
      reply("x", x.id, "0");
    });
    const mark = join(s.vm.runtime.vmDir, EXEC_AGENT_FILE);
    await start(s, {});
    expect(s.host.fs.files.has(mark)).toBe(true);
    const booted = adopted.at(-1)!;
    expect(booted).toBeInstanceOf(AgentFirstSSH);
    expect(s.dials).toHaveLength(1);
    expect(await booted.exec("echo over the agent")).toBe(0);
    expect(ran).toEqual(["echo over the agent"]);
    await booted.runScript("true");
    expect(s.dials).toHaveLength(1); // the boot's connection, not a second dial
    booted.close();
    await Promise.resolve();
    expect(s.dials[0]!.conn.closed).toBe(true);
    await s.hooks.run("vm:snapshot:before", { vm: s.vm, dir: SNAP } as never);
    expect(s.host.fs.files.has(join(SNAP, EXEC_AGENT_FILE))).toBe(true);
    s.host.fs.files.delete(mark);
    fakeExecGuest(s.host.fs, vmPaths(s.vm.runtime.vmDir).execPipe, () => {});
    const dialsBefore = s.dials.length;
    await start(s, { restored: true, snapshot: { vmId: "parent", dir: SNAP } });
    expect(s.host.fs.files.has(mark)).toBe(true);
    expect(adopted.at(-1)).toBeInstanceOf(AgentFirstSSH);
    expect(s.dials.length).toBe(dialsBefore);
    adopted.at(-1)!.close();
  });

  test("a boot of banger's own image without the exec agent's marker, or a restore of a snapshot without it, says on the progress line that the image needs a rebuild; an imported image's does not", async () => {
    for (const [source, hint] of [["built", true], ["derived", true], ["imported", false], ["oci", false]] as const) {
      const s = await loaded(`x\n${AGENT_MARKER}\n${READY_MARKER}\n`, { source });
      const said: string[] = [];
      const progress = (m: string) => void said.push(m);
      await start(s, { progress });
      expect(said.filter((m) => m.includes("built by an older banger"))).toHaveLength(hint ? 1 : 0);
      // a restore of a snapshot (a template, say) whose guest runs no exec agent: the same line
      said.length = 0;
      s.host.fs.files.set(join(SNAP, AGENT_FILE), "");
      await start(s, { progress, restored: true, snapshot: { vmId: "parent", dir: SNAP } });
      expect(said.filter((m) => m.includes("built by an older banger"))).toHaveLength(hint ? 1 : 0);
    }
  });

  test("an exec agent of version 1 (an image of recipe 6): a boot and a restore of banger's own image say the image's restores take the slower way and how to rebuild it; version 2 and an imported image say nothing", async () => {
    for (const [source, version, hint] of [["built", 1, true], ["built", 2, false], ["imported", 1, false]] as const) {
      const s = await loaded(`x\n${AGENT_MARKER}\n${EXEC_AGENT_MARKER}\n${READY_MARKER}\n`, { source });
      fakeExecGuest(s.host.fs, vmPaths(s.vm.runtime.vmDir).execPipe, (x, reply) => reply("x", x.id, "0"), { version });
      const said: string[] = [];
      const progress = (m: string) => void said.push(m);
      await start(s, { progress });
      const older = (m: string) => m.includes("built by an older banger") && m.includes("the slower way") && m.includes("banger image build --force");
      expect(said.filter(older)).toHaveLength(hint ? 1 : 0);
      await s.hooks.run("vm:snapshot:before", { vm: s.vm, dir: SNAP } as never);
      said.length = 0;
      fakeExecGuest(s.host.fs, vmPaths(s.vm.runtime.vmDir).execPipe, (x, reply) => reply("x", x.id, "0"), { version });
      await start(s, { progress, restored: true, snapshot: { vmId: "parent", dir: SNAP } });
      expect(said.filter(older)).toHaveLength(hint ? 1 : 0);
      // no line saying it has no exec agent at all
      expect(said.filter((m) => m.includes("over SSH only"))).toHaveLength(0);
    }
  });

  test("a console without the exec agent's marker (perl missing, an older image): no EXEC_AGENT_FILE, so a restore dials SSH", async () => {
    const s = await loaded(`x\n${AGENT_MARKER}\n${READY_MARKER}\n`);
    await start(s, {});
    expect(s.host.fs.files.has(join(s.vm.runtime.vmDir, EXEC_AGENT_FILE))).toBe(false);
    await s.hooks.run("vm:snapshot:before", { vm: s.vm, dir: SNAP } as never);
    expect(s.host.fs.files.has(join(SNAP, EXEC_AGENT_FILE))).toBe(false);
  });
});

describe("the guest plugin's connector: a daemon with no connection to a running VM (after a restart)", () => {
  test("a VM whose guest runs the exec agent gets a connection over it (no SSH dial until something needs it); one without the marker, or whose agent is silent for 3 s, gets null (the pool dials SSH), with a line in the log", async () => {
    const connectors: GuestConnector[] = [];
    const logged: string[] = [];
    const s = await loaded(`x\n${READY_MARKER}\n`, { connectors, logged });
    expect(connectors).toHaveLength(1);
    const connect = connectors[0]!;
    const ran: string[] = [];
    const exec = fakeExecGuest(s.host.fs, vmPaths(s.vm.runtime.vmDir).execPipe, (x, reply) => {
      ran.push(x.command);
      reply("x", x.id, "0");
    });
    // no marker: the guest never said it runs the agent
    expect(await connect(s.vm, { pid: 4242 } as never)).toBeNull();
    expect(exec.frames).toHaveLength(0);
    s.host.fs.files.set(join(s.vm.runtime.vmDir, EXEC_AGENT_FILE), "");
    const conn = await connect(s.vm, { pid: 4242 } as never);
    expect(conn).toBeInstanceOf(AgentFirstSSH);
    expect(await conn!.exec("echo again")).toBe(0);
    expect(ran).toEqual(["echo again"]);
    expect(s.dials).toHaveLength(0);
    conn!.close();
    // an agent that does not answer: null after EXEC_AGENT_RECONNECT_SILENT_MS
    fakeExecGuest(s.host.fs, vmPaths(s.vm.runtime.vmDir).execPipe, () => {}, { answerPings: false });
    const started = s.host.clock.ms;
    expect(await connect(s.vm, { pid: 4242 } as never)).toBeNull();
    expect(s.host.clock.ms - started).toBeGreaterThanOrEqual(EXEC_AGENT_RECONNECT_SILENT_MS);
    expect(s.host.clock.ms - started).toBeLessThan(EXEC_AGENT_SILENT_MS);
    expect(logged.at(-1)).toBe(`[guest] c1: the guest's exec agent did not answer within ${EXEC_AGENT_RECONNECT_SILENT_MS / 1000} s; its commands go over SSH`);
    // its port's FIFOs gone (a VMM that never had one): null too
    s.host.fs.fifos.delete(`${vmPaths(s.vm.runtime.vmDir).execPipe}.in`);
    s.host.fs.fifos.delete(`${vmPaths(s.vm.runtime.vmDir).execPipe}.out`);
    expect(await connect(s.vm, { pid: 4242 } as never)).toBeNull();
  });
});
