// The exec agent's host side (plugins/guest/exec-agent.ts) against a scripted guest on the fake FS's FIFOs that
// parses our frames as plugins/image/exec-agent.pl does, and AgentFirstSSH choosing the agent or SSH.
import { describe, expect, test } from "bun:test";
import { AgentFirstSSH, ExecAgent, ExecAgentSilent, HostKeyNotPerConnection } from "../../plugins/guest/exec-agent.ts";
import type { ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import { fakeHost, type FakeFS } from "../helpers/fakes.ts";
import { fakeExecGuest, type Reply, type Started } from "../helpers/fake-exec-guest.ts";

const PIPE = "/state/vms/c1/exec";
const enc = (t: string) => new TextEncoder().encode(t);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** fakeExecGuest at PIPE. */
function fakeGuest(fs: FakeFS, onStart: (s: Started, reply: Reply) => void, o: Parameters<typeof fakeExecGuest>[3] = {}) {
  return fakeExecGuest(fs, PIPE, onStart, o);
}

/** A guest whose one command runs until the test ends it: `end(code)` sends its exit frame; `running` until then. */
function oneCommandGuest(host: ReturnType<typeof fakeHost>, onStart: (s: Started, reply: Reply) => void = () => {}) {
  const cmd = { running: false, end: (_code: string) => {} };
  const seen = fakeGuest(host.fs, (s, reply) => {
    cmd.running = true;
    cmd.end = (code) => {
      cmd.running = false;
      reply("x", s.id, code);
    };
    onStart(s, reply);
  });
  return { seen, cmd };
}

async function attached(fs: FakeFS, host: ReturnType<typeof fakeHost>, alive: () => Promise<boolean> = async () => true) {
  return ExecAgent.attach(host, PIPE, { deadline: host.clock.ms + 10_000, alive });
}

function collect() {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  return { out, err, io: { onStdout: (c: Uint8Array) => void out.push(c), onStderr: (c: Uint8Array) => void err.push(c) }, text: () => ({ out: dec(Buffer.concat(out)), err: dec(Buffer.concat(err)) }) };
}

describe("ExecAgent", () => {
  test("attach: what was left in the FIFO is dropped, `sync` and a ping go first, and frames are read from after its pong (half a frame before it is skipped)", async () => {
    const host = fakeHost();
    const seen = fakeGuest(host.fs, (s, reply) => reply("x", s.id, "0"));
    const out = host.fs.fifos.get(`${PIPE}.out`)!;
    out.push(enc("o old 5\nstale"));
    const realOnWrite = host.fs.onFifoWrite!;
    host.fs.onFifoWrite = (path, data) => {
      // half a frame of an earlier host's arrives before the pong
      if (seen.writes.length === 0) out.push(enc("o 1 999\npartial"));
      realOnWrite(path, data);
    };
    const agent = await attached(host.fs, host);
    // the ping asks the agent's version
    expect(dec(seen.writes[0]!)).toMatch(/^sync\np ([0-9a-f]{16}) 1\nv\.\1\n$/);
    expect(agent.version).toBe(2);
    // read as frames from the pong on: the next command's status is not taken for that half frame's payload
    expect(await agent.exec("true")).toBe(0);
    expect(agent.broken).toBeNull();
    agent.close();
  });

  test("attach: a pong whose header and payload come in separate reads still gives the version; an agent of version 1 (an empty pong) gets no clock or identity request sent", async () => {
    const host = fakeHost();
    const seen = fakeGuest(host.fs, () => {}, { answerPings: false });
    const out = host.fs.fifos.get(`${PIPE}.out`)!;
    // the pong's header at the attach's first wait, its payload at the next
    const sleep = host.clock.sleep.bind(host.clock);
    let waits = 0;
    host.clock.sleep = (ms: number) => {
      const id = /^sync\np ([0-9a-f]{16}) /.exec(dec(seen.writes[0]!))![1]!;
      if (++waits === 1) out.push(enc(`p ${id} 1\n`));
      if (waits === 2) out.push(enc("2"));
      return sleep(ms);
    };
    const attaching = attached(host.fs, host);
    expect((await attaching).version).toBe(2);

    const old = fakeHost();
    const oldSeen = fakeGuest(old.fs, () => {}, { version: 1 });
    const agent = await attached(old.fs, old);
    expect(agent.version).toBe(1);
    await expect(agent.clockUs()).rejects.toThrow("the guest exec agent (version 1) has no c request");
    await expect(agent.identity({ hostname: "x" })).rejects.toThrow("the guest exec agent (version 1) has no I request");
    expect(oldSeen.frames.map((f) => f[0])).toEqual(["p"]);
    agent.close();
  });

  test("clockUs: the guest's SECONDS.NANOSECONDS as µs; identity: each field a line, values in hex but the clock's, a long one split into a frames; x 0 resolves", async () => {
    const host = fakeHost();
    const seen = fakeGuest(host.fs, () => {}, { clock: () => "1765000000.123456789" });
    const agent = await attached(host.fs, host);
    expect(await agent.clockUs()).toBe(1765000000123456);
    const key = new Uint8Array([0, 10, 255, 39, 36]);
    await agent.identity({ clockOffsetNs: -1500000000n, entropy: new Uint8Array([1, 2]), hostname: "c1", authorizedKey: "ssh-ed25519 " + "A".repeat(5000), hostKey: key });
    expect(seen.identities).toHaveLength(1);
    const f = seen.identities[0]!;
    expect(Object.keys(f)).toEqual(["clock_offset_ns", "entropy", "hostname", "authorized_key", "host_key"]);
    expect(f.clock_offset_ns).toBe("-1500000000");
    expect(dec(f.hostname as Uint8Array)).toBe("c1");
    expect(dec(f.authorized_key as Uint8Array)).toBe("ssh-ed25519 " + "A".repeat(5000));
    expect([...(f.host_key as Uint8Array)]).toEqual([...key]);
    // 10 KB of hex: `a` frames, then I, none over 4096 bytes
    expect(seen.frames.filter((x) => x.startsWith("a ")).length).toBeGreaterThanOrEqual(2);
    expect(seen.writes.every((w) => w.length <= 4096)).toBe(true);
    agent.close();
  });

  test("identity: the guest's refusal is the error, word for word; a dropbear that loads its key at start is HostKeyNotPerConnection", async () => {
    const host = fakeHost();
    let why = "setting the clock: clock_settime: Invalid argument";
    fakeGuest(host.fs, () => {}, { identity: () => why });
    const agent = await attached(host.fs, host);
    await expect(agent.identity({ clockOffsetNs: 1n })).rejects.toThrow(/^setting the clock: clock_settime: Invalid argument$/);
    why = "dropbear loads its host key once (no -R): not replaced here";
    const e = await agent.identity({ hostKey: new Uint8Array([1]) }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HostKeyNotPerConnection);
    // the agent serves on
    why = "";
    await agent.identity({ hostname: "ok" });
    agent.close();
  });

  test("exec: the command line goes as sent (hostile values too), stdout and stderr come back apart and binary-clean, then the exit status", async () => {
    const host = fakeHost();
    const command = "printf '%s' \"it's; $(x) `id`\"\nnext line\\";
    const binary = new Uint8Array([0, 1, 2, 10, 111, 32, 49, 32, 57, 10, 255]); // "o 1 9\n" inside: data, not a frame
    const starts: Started[] = [];
    fakeGuest(host.fs, (s, reply) => {
      starts.push(s);
      reply("o", s.id, binary);
      reply("e", s.id, "warn\n");
      reply("o", s.id, "more");
      reply("x", s.id, "3");
    });
    const agent = await attached(host.fs, host);
    const c = collect();
    expect(await agent.exec(command, c.io)).toBe(3);
    expect(starts.map((s) => s.command)).toEqual([command]);
    expect(starts[0]!.stdin.length).toBe(0);
    expect([...new Uint8Array(Buffer.concat(c.out))]).toEqual([...binary, ...enc("more")]);
    expect(c.text().err).toBe("warn\n");
    agent.close();
  });

  test("a command line longer than a frame goes in `a` frames then `s`; stdin given whole goes in `i` frames, then EOF; every write is one frame of at most 4096 bytes", async () => {
    const host = fakeHost();
    const command = "echo " + "x".repeat(10_000);
    const stdin = new Uint8Array(9000).map((_, i) => i % 251);
    const starts: Started[] = [];
    const seen = fakeGuest(host.fs, (s, reply) => {
      starts.push(s);
      reply("x", s.id, "0");
    });
    const agent = await attached(host.fs, host);
    expect(await agent.exec(command, { stdin })).toBe(0);
    expect(starts[0]!.command).toBe(command);
    expect([...starts[0]!.stdin]).toEqual([...stdin]);
    const types = seen.frames.filter((f) => !f.startsWith("p ")).map((f) => f[0]);
    expect(types).toEqual(["a", "a", "s", "i", "i", "i", "i"]);
    expect(seen.frames.filter((f) => !f.startsWith("p ")).at(-1)).toMatch(/^i \S+ 0$/);
    for (const w of seen.writes) expect(w.length).toBeLessThanOrEqual(4096);
    agent.close();
  });

  test("two commands at once: each gets its own output and status, whatever the order their frames come in", async () => {
    const host = fakeHost();
    const starts: Started[] = [];
    let replyTo: Reply | null = null;
    fakeGuest(host.fs, (s, reply) => {
      starts.push(s);
      replyTo = reply;
    });
    const agent = await attached(host.fs, host);
    const a = collect();
    const b = collect();
    const pa = agent.exec("A", a.io);
    const pb = agent.exec("B", b.io);
    expect(starts.map((s) => s.command)).toEqual(["A", "B"]);
    const [ia, ib] = [starts[0]!.id, starts[1]!.id];
    expect(ia).not.toBe(ib);
    replyTo!("o", ib, "b1");
    replyTo!("o", ia, "a1");
    replyTo!("x", ib, "2");
    replyTo!("e", ia, "a-err");
    replyTo!("x", ia, "0");
    expect(await Promise.all([pa, pb])).toEqual([0, 2]);
    expect(a.text()).toEqual({ out: "a1", err: "a-err" });
    expect(b.text()).toEqual({ out: "b1", err: "" });
    agent.close();
  });

  test("an abort sends SIGKILL to the command and rejects; its later frames are dropped and the agent serves the next command", async () => {
    const host = fakeHost();
    const starts: Started[] = [];
    let replyTo: Reply | null = null;
    const seen = fakeGuest(host.fs, (s, reply) => {
      starts.push(s);
      replyTo = reply;
    });
    const agent = await attached(host.fs, host);
    const ac = new AbortController();
    const c = collect();
    const p = agent.exec("sleep 100", { ...c.io, signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toThrow("aborted");
    expect(seen.kills).toEqual([`${starts[0]!.id} 9`]);
    replyTo!("o", starts[0]!.id, "late");
    replyTo!("x", starts[0]!.id, "137");
    const next = agent.exec("true");
    replyTo!("x", starts[1]!.id, "0");
    expect(await next).toBe(0);
    expect(c.out).toEqual([]);
    agent.close();
  });

  test("`r`: the guest could not start it, the reason in the error; a stream that is not frames breaks the agent for good", async () => {
    const host = fakeHost();
    let n = 0;
    fakeGuest(host.fs, (s, reply) => {
      if (n++ === 0) reply("r", s.id, "fork: Resource temporarily unavailable\n");
      else host.fs.fifos.get(`${PIPE}.out`)!.push(enc("garbage that is no header\n"));
    });
    const agent = await attached(host.fs, host);
    await expect(agent.exec("true")).rejects.toThrow("the guest exec agent could not start the command: fork: Resource temporarily unavailable");
    await expect(agent.exec("true")).rejects.toThrow(/stream broke: a malformed header "garbage that is no header"/);
    expect(agent.broken).not.toBeNull();
    await expect(agent.exec("true")).rejects.toThrow(/stream broke/);
    agent.close();
  });

  test("an agent that never answers: filler and another ping after a second (ending any half frame it reads), then ExecAgentSilent at the deadline", async () => {
    const host = fakeHost();
    const seen = fakeGuest(host.fs, () => {}, { answerPings: false });
    const started = host.clock.ms;
    const e = await ExecAgent.attach(host, PIPE, { deadline: host.clock.ms + 3000, alive: async () => true }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ExecAgentSilent);
    expect(host.clock.ms - started).toBeGreaterThanOrEqual(3000);
    const filler = seen.writes.find((w) => w.length > 4096 || (w.length > 100 && w.every((b) => b === 10)));
    expect(filler).toBeDefined();
    expect(seen.frames.filter((f) => f.startsWith("p "))).toHaveLength(2);
  });

  test("a command silent for a minute: the agent answers the pings sent meanwhile (after `sync`), and the command's status comes at the end", async () => {
    const host = fakeHost();
    const { seen, cmd } = oneCommandGuest(host);
    const agent = await attached(host.fs, host);
    host.clock.timer(60_000, () => cmd.end("0"));
    expect(await agent.exec("sleep 60")).toBe(0);
    // liveness probes (empty pings) apart from the handshake's and the beats (one-byte payloads: `v`, `b`);
    // a beat's pong is a sign of life too, so a probe goes only in the 5 s after one with nothing else heard
    const pings = seen.frames.filter((f) => /^p \S+ 0$/.test(f)).length;
    expect(pings).toBeGreaterThanOrEqual(5);
    expect(seen.writes.filter((w) => new TextDecoder().decode(w).startsWith("sync\np ")).length).toBe(pings + 1);
    const beats = seen.frames.filter((f) => /^p \S+ 1$/.test(f)).length - 1;
    expect(beats).toBeGreaterThanOrEqual(6);
    expect(beats).toBeLessThanOrEqual(7);
    agent.close();
  });

  test("beats: while a command runs a ping with payload `b` goes out at once and every 10 s, output or not; none while nothing runs", async () => {
    const host = fakeHost();
    const { seen, cmd } = oneCommandGuest(host, (s, reply) => {
      // output all along: the liveness probe never goes, the beat still does
      const chatter = () => {
        if (!cmd.running) return;
        reply("o", s.id, "x");
        host.clock.timer(1000, chatter);
      };
      chatter();
    });
    const agent = await attached(host.fs, host);
    const beatsNow = () => seen.frames.filter((f) => /^p \S+ 1$/.test(f)).length;
    const before = beatsNow();
    host.clock.timer(35_000, () => cmd.end("0"));
    expect(await agent.exec("yes")).toBe(0);
    expect(beatsNow() - before).toBe(4); // at 0, 10, 20 and 30 s
    expect(seen.frames.filter((f) => /^p \S+ 0$/.test(f)).length).toBe(0); // no liveness probe: output came all along
    await host.clock.sleep(60_000);
    expect(beatsNow() - before).toBe(4);
    agent.close();
  });

  test("an agent that stops answering pings while a command runs: the command fails within 35 s (a TCG guest under load answers within that), and the agent is broken (later commands go over SSH)", async () => {
    const host = fakeHost();
    let answer = true;
    fakeExecGuest(host.fs, PIPE, () => {
      answer = false;
    });
    const realOnWrite = host.fs.onFifoWrite!;
    host.fs.onFifoWrite = (path, data) => {
      // a deaf agent: after the command's start it hears nothing
      if (answer) realOnWrite(path, data);
    };
    const agent = await attached(host.fs, host);
    const started = host.clock.ms;
    await expect(agent.exec("true")).rejects.toThrow("the guest exec agent's stream broke: no answer to a ping in 30 s");
    expect(host.clock.ms - started).toBeLessThan(36_000);
    expect(agent.broken).not.toBeNull();
    agent.close();
  });

  test("the VM's process dies during a command: it fails within a few hundred ms", async () => {
    const host = fakeHost();
    fakeGuest(host.fs, () => {});
    let alive = true;
    const agent = await attached(host.fs, host, async () => alive);
    host.clock.timer(1000, () => void (alive = false));
    const started = host.clock.ms;
    await expect(agent.exec("sleep 100")).rejects.toThrow("the VM's process exited while a command ran over its exec agent");
    expect(host.clock.ms - started).toBeLessThan(1500);
    agent.close();
  });
});

/** A GuestSSH that records what it was asked. */
function recordingSSH(log: string[]): GuestSSH {
  let closed = false;
  return {
    async exec(command: string, opts: ExecStreamOptions = {}) {
      log.push(`ssh exec ${command}${opts.pty ? " (pty)" : ""}`);
      return 0;
    },
    async runScript(script: string) {
      log.push(`ssh script ${script}`);
      return { exitCode: 0, stdout: "", stderr: "" };
    },
    async upload(path: string) {
      log.push(`ssh upload ${path}`);
    },
    close() {
      closed = true;
      log.push("ssh close");
    },
    get closed() {
      return closed;
    },
  };
}

describe("AgentFirstSSH", () => {
  test("a plain command (stdin none or given whole, with flow control or not), a script and an upload go over the agent with no SSH dialled; a terminal or a stdin stream go over SSH, dialled once at the first need", async () => {
    const host = fakeHost();
    const agentRan: { command: string; stdin: string }[] = [];
    fakeGuest(host.fs, (s, reply) => {
      agentRan.push({ command: s.command, stdin: dec(s.stdin) });
      reply("x", s.id, "0");
    });
    const log: string[] = [];
    let dials = 0;
    const conn = new AgentFirstSSH(await attached(host.fs, host), async () => {
      dials++;
      return recordingSSH(log);
    });
    const stream = () => (async function* () { yield enc("x"); yield enc("y"); })();
    expect(await conn.exec("one")).toBe(0);
    expect(await conn.exec("two", { stdin: "input" })).toBe(0);
    expect((await conn.runScript("echo hi")).exitCode).toBe(0);
    await conn.upload("/tmp/f it's", "data", 0o600);
    expect(agentRan).toEqual([
      { command: "one", stdin: "" },
      { command: "two", stdin: "input" },
      { command: "bash -s", stdin: "echo hi" },
      { command: "umask 077 && cat > '/tmp/f it'\\''s' && chmod 600 '/tmp/f it'\\''s'", stdin: "data" },
    ]);
    expect(dials).toBe(0);
    await conn.exec("top", { pty: { cols: 80, rows: 24 } });
    await conn.exec("cat", { stdin: stream() });
    await conn.exec("paced", { flow: () => {} });
    expect(await conn.exec("three")).toBe(0);
    expect(dials).toBe(1);
    expect(log).toEqual(["ssh exec top (pty)", "ssh exec cat"]);
    expect(agentRan.slice(-2).map((r) => r.command)).toEqual(["paced", "three"]);
    conn.close();
    expect(conn.closed).toBe(true);
    await Promise.resolve();
    expect(log.at(-1)).toBe("ssh close");
    await expect(conn.exec("after")).rejects.toThrow("closed");

  });

  test("once the agent's stream broke, commands go over SSH", async () => {
    const host = fakeHost();
    fakeGuest(host.fs, () => host.fs.fifos.get(`${PIPE}.out`)!.push(enc("not a frame\n")));
    const log: string[] = [];
    const conn = new AgentFirstSSH(await attached(host.fs, host), async () => recordingSSH(log));
    await expect(conn.exec("one")).rejects.toThrow(/stream broke/);
    expect(await conn.exec("two")).toBe(0);
    expect(log).toEqual(["ssh exec two"]);
    conn.close();
  });
});
