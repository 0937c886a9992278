import { BangerError, runScriptOver, uploadOver } from "../../src/plugin-api.ts";
import type { ExecStreamOptions, FifoEnd, GuestSignal, GuestSSH, Host } from "../../src/plugin-api.ts";

/**
 * The host side of the exec agent (plugins/image/exec-agent.pl: a resident
 * perl in the guest on the virtio-serial port banger.exec, which QEMU puts on
 * a pipe chardev: FIFOs `${pipe}.in`, `${pipe}.out`). It runs commands as the
 * guest's SSH server would (root's shell -c, dropbear's environment, a
 * session of their own), several at once, with their stdout and stderr apart
 * and binary-clean: what `vm exec` needs, without the SSH handshake and
 * dropbear's session start (~0.25 s + ~0.2 s of guest CPU in a fresh clone
 * under TCG). Used for the plain commands of every VM whose guest runs it
 * (see AgentFirstSSH).
 *
 * Frames, both ways: `T ID N\n` and N bytes. Ours also end with `.ID\n` and
 * are at most PIPE_BUF long, so each is one atomic FIFO write: a daemon that
 * dies never leaves half a frame for the guest to run. Ours: s (start a
 * command; a (append) frames before it carry a long one), i (stdin; empty:
 * EOF), k (signal), p (ping), c (read the clock), I (a restored guest's
 * identity); `sync` lines get the guest past anything garbled. Theirs: o / e
 * (stdout / stderr), x (exit status), r (could not start), p (pong), c (the
 * clock). The first ping asks the agent's version: c and I need 2, h and g
 * (hold and go: flow control of a command's output) 3.
 */

/** What the guest's init prints on its console once it started the exec agent (before BANGER-READY). */
export const EXEC_AGENT_MARKER = "BANGER-EXEC-AGENT";

/** A frame of ours, header and trailer included, is one write of at most this (PIPE_BUF: atomic on a FIFO). */
const _MAX_FRAME = 4096;
/** The most payload the guest takes in one frame of ours (it drops a longer one as garbled: exec-agent.pl). */
const _MAX_PAYLOAD = 4000;
/** How often the FIFOs are looked at while something is asked or runs, and how that slows when nothing comes. */
const _POLL_MS = 2;
const _POLL_QUIET_MS = 20;
const _QUIET_AFTER_MS = 2000;
/** How often, meanwhile, the VM's process is looked at: a VMM that died answers nothing. */
const _ALIVE_EVERY_MS = 200;
/** A ping not answered in this long gets filler first: the guest may sit in the middle of a frame of ours. */
const _RESYNC_AFTER_MS = 1000;
/**
 * A command may say nothing for long; the agent answers a ping whatever runs. So after this long without a
 * byte, `sync` and a ping (a guest that dropped a garbled frame of ours hears again after `sync`); no pong
 * within _PONG_WITHIN_MS breaks the agent: its commands fail rather than wait for ever.
 */
const _PROBE_AFTER_MS = 5000;
const _PONG_WITHIN_MS = 30_000;
/**
 * While commands of ours run, a beat (a ping with payload `b`) this often, output or not: an agent that has heard
 * beats and then nothing for a minute takes us for gone (a daemon killed) and kills the commands we left, which
 * nobody would read or end. One that never heard a beat (an older host) never judges.
 */
const _BEAT_EVERY_MS = 10_000;
/** Linux's (x86_64's and aarch64's) SIGSTOP and SIGCONT: an older agent's flow control (see _flowOf). */
const _SIGSTOP = 19;
const _SIGCONT = 18;
/** Linux's numbers (the guest's) for what onRunning may send. */
const _SIGNALS: Record<GuestSignal, number> = { HUP: 1, INT: 2, TERM: 15 };
/** A header line of theirs is short; anything longer is not one. */
const _MAX_HEADER = 64;

interface _Run {
  /** A request's (c, I): its answer, whatever frame it is. */
  onAnswer?: (type: string, payload: Uint8Array) => void;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
  /** A command's: its exit status. */
  resolve?(code: number): void;
  reject(e: Error): void;
  /** Given up on (aborted): its frames are read and dropped until its exit. */
  abandoned: boolean;
}

/** The agent did not answer a ping: it is not running (a guest image without perl, say). */
export class ExecAgentSilent extends BangerError {
  constructor() {
    super("E_TIMEOUT", "the guest's exec agent did not answer");
  }
}

/** What a restored guest is told (exec-agent.pl's identity(): each optional, applied in this order). */
export interface GuestIdentity {
  /** CLOCK_REALTIME moves by this. */
  clockOffsetNs?: bigint;
  /** Host randomness mixed into the guest's RNG, which then reseeds from it. */
  entropy?: Uint8Array;
  hostname?: string;
  /** root's authorized_keys line. */
  authorizedKey?: string;
  /** dropbear's host key file. */
  hostKey?: Uint8Array;
}

/** The guest would not take a host key: its dropbear loaded one at start (no -R). Nothing was applied. */
export class HostKeyNotPerConnection extends BangerError {
  constructor(why: string) {
    super("E_STATE", why);
  }
}

export class ExecAgent {
  /** The agent's protocol version, from its first pong: 2 answers clockUs() and identity(). */
  version = 1;
  private readonly runs = new Map<string, _Run>();
  private buf: Uint8Array = new Uint8Array(0);
  private pumping = false;
  private brokenBy: Error | null = null;
  private closed = false;
  private nextId = 0;
  private lastData = 0;
  private lookedAlive = 0;
  private lastBeat = Number.NEGATIVE_INFINITY;
  /** The liveness ping in flight, if any. */
  private probe: { id: string; at: number } | null = null;
  /** Frames waiting for room in the FIFO, in order. */
  private readonly queue: Uint8Array[] = [];

  private constructor(
    private readonly host: Host,
    private readonly into: FifoEnd,
    private readonly out: FifoEnd,
    private readonly alive: () => Promise<boolean>,
  ) {}

  /**
   * Open the agent at `pipe` and make sure it answers: whatever was left in
   * its FIFO is dropped, the first frame of ours comes after `sync`, and
   * reading starts after its answer to our ping, found by a random id in the
   * raw bytes (what came before it may be half a frame of an earlier host's).
   * ExecAgentSilent when no answer came by `deadline` (the host's clock).
   */
  static async attach(host: Host, pipe: string, o: { deadline: number; alive: () => Promise<boolean>; signal?: AbortSignal }): Promise<ExecAgent> {
    const out = await host.fs.openFifo(`${pipe}.out`, "read");
    let into: FifoEnd;
    try {
      into = await host.fs.openFifo(`${pipe}.in`, "write");
    } catch (e) {
      out.close();
      throw e;
    }
    const agent = new ExecAgent(host, into, out, o.alive);
    try {
      await agent._handshake(o.deadline, o.signal);
    } catch (e) {
      agent.close();
      throw e;
    }
    return agent;
  }

  /** Set when the stream could no longer be read as frames: nothing more goes over this agent. */
  get broken(): Error | null {
    return this.brokenBy;
  }

  private now(): number {
    return this.host.clock.now().getTime();
  }

  private async _handshake(deadline: number, signal?: AbortSignal): Promise<void> {
    this.out.read();
    const id = _randomId();
    // its pong's header up to the length: an agent of version 1 answers `v` with an empty one
    const pong = new TextEncoder().encode(`p ${id} `);
    const ask = _concat(new TextEncoder().encode("sync\n"), _frame("p", id, new TextEncoder().encode("v")));
    let raw: Uint8Array = new Uint8Array(0);
    let resynced = false;
    const sentAt = this.now();
    this._send(ask);
    for (;;) {
      if (signal?.aborted) throw new BangerError("E_STATE", "guest exec agent attach cancelled");
      if (this.now() >= deadline) throw new ExecAgentSilent();
      this._flush();
      const got = this.out.read();
      if (got.length) {
        raw = _concat(raw, got);
        const at = _indexOf(raw, pong);
        if (at >= 0) {
          // the rest of its header and its payload may come in later reads
          raw = raw.subarray(at);
          const m = /^(\d{1,4})\n/.exec(new TextDecoder().decode(raw.subarray(pong.length, pong.length + 6)));
          const end = m ? pong.length + m[0].length + Number(m[1]) : -1;
          if (m && raw.length >= end) {
            this.version = Number(new TextDecoder().decode(raw.subarray(pong.length + m[0].length, end))) || 1;
            this.buf = raw.subarray(end);
            this.lastData = this.now();
            return;
          }
        } else if (raw.length > pong.length) raw = raw.subarray(raw.length - pong.length); // only a tail that could still start the pong is worth keeping
      }
      if (!resynced && this.now() - sentAt >= _RESYNC_AFTER_MS) {
        resynced = true;
        // ends any frame of an earlier host's the guest is still reading (at most _MAX_FRAME long) with garbage
        // it will refuse; the next sync line gets it reading frames again
        this._send(new Uint8Array(_MAX_FRAME + 104).fill(10));
        this._send(ask);
      }
      if (this.now() - this.lookedAlive >= _ALIVE_EVERY_MS) {
        this.lookedAlive = this.now();
        if (!(await this.alive())) throw new BangerError("E_STATE", "the VM's process exited while its exec agent was asked");
      }
      await this.host.clock.sleep(_POLL_MS);
    }
  }

  /**
   * Run a command line as the guest's SSH server would run it; resolves with
   * its exit status (128 + the signal's number when one killed it). stdin:
   * all of it now (then EOF), or none (EOF at once). An abort signals the
   * command with SIGKILL and rejects.
   */
  exec(command: string, io: Pick<ExecStreamOptions, "onStdout" | "onStderr" | "signal" | "onRunning" | "flow"> & { stdin?: Uint8Array | string } = {}): Promise<number> {
    const kill = (id: string, n: number) => this._send(_frame("k", id, new TextEncoder().encode(String(n))));
    const live = (id: string) => this.runs.get(id)?.abandoned === false;
    return this._run<number>(io.signal, {
      handlers: (resolve) => ({ onStdout: io.onStdout, onStderr: io.onStderr, resolve }),
      onAbort: (id) => kill(id, 9),
      send: (id) => {
        this._sendLong("s", id, new TextEncoder().encode(command));
        const room = _room(id);
        const stdin = typeof io.stdin === "string" ? new TextEncoder().encode(io.stdin) : io.stdin;
        for (let i = 0; stdin && i < stdin.length; i += room) this._send(_frame("i", id, stdin.subarray(i, i + room)));
        this._send(_frame("i", id, new Uint8Array(0)));
        // once it ended (or was given up on) its id means nothing to the guest: no signal goes out then
        io.onRunning?.({ signal: (name) => void (live(id) && kill(id, _SIGNALS[name])) });
        if (io.flow) io.flow(this._flowOf(id, live, kill));
      },
    });
  }

  /**
   * Pause and resume of a command's output (ExecStreamOptions.flow: the reader is behind). Version 3 stops
   * reading its pipes (h / g), so its writes block as they would on a slow pipe; an older agent has no such
   * frame, so its process group is stopped and continued (SIGSTOP / SIGCONT) instead. Either way what is
   * already on its way still comes: a chunk or two per pipe.
   */
  private _flowOf(id: string, live: (id: string) => boolean, kill: (id: string, n: number) => void): { pause(): void; resume(): void } {
    let held = false;
    const set = (hold: boolean) => {
      if (held === hold || !live(id)) return;
      held = hold;
      if (this.version >= 3) this._send(_frame(hold ? "h" : "g", id, new Uint8Array(0)));
      else kill(id, hold ? _SIGSTOP : _SIGCONT);
    };
    return { pause: () => set(true), resume: () => set(false) };
  }

  /** The guest's CLOCK_REALTIME in µs since the epoch, read as it handles our frame (version 2). */
  async clockUs(signal?: AbortSignal): Promise<number> {
    const { type, text } = await this._ask("c", new Uint8Array(0), signal);
    const m = type === "c" ? /^(\d{1,12})\.(\d{9})$/.exec(text) : null;
    if (!m) throw new BangerError("E_STATE", `the guest exec agent answered a clock read with ${type} ${JSON.stringify(text.slice(0, 64))}`);
    return Number(m[1]) * 1e6 + Math.floor(Number(m[2]) / 1000);
  }

  /**
   * Tell a restored guest what it carries over from its snapshot (version 2): see GuestIdentity. Rejects with
   * the step that failed, or HostKeyNotPerConnection (nothing applied) when its dropbear would not read a new host key.
   */
  async identity(who: GuestIdentity, signal?: AbortSignal): Promise<void> {
    const hex = (b: Uint8Array | string) => Buffer.from(b).toString("hex");
    const lines: string[] = [];
    if (who.clockOffsetNs !== undefined) lines.push(`clock_offset_ns ${who.clockOffsetNs}`);
    if (who.entropy) lines.push(`entropy ${hex(who.entropy)}`);
    if (who.hostname !== undefined) lines.push(`hostname ${hex(who.hostname)}`);
    if (who.authorizedKey !== undefined) lines.push(`authorized_key ${hex(who.authorizedKey)}`);
    if (who.hostKey) lines.push(`host_key ${hex(who.hostKey)}`);
    const { type, text } = await this._ask("I", new TextEncoder().encode(lines.join("\n")), signal);
    if (type === "x" && text === "0") return;
    if (type === "r" && text.startsWith("dropbear loads its host key once")) throw new HostKeyNotPerConnection(text);
    throw new BangerError("E_STATE", type === "r" ? text : `the guest exec agent answered an identity with ${type} ${JSON.stringify(text.slice(0, 64))}`);
  }

  /** One request and its answer (any frame with its id). */
  private _ask(type: string, payload: Uint8Array, signal?: AbortSignal): Promise<{ type: string; text: string }> {
    if (this.version < 2) return Promise.reject(new BangerError("E_INTERNAL", `the guest exec agent (version ${this.version}) has no ${type} request`));
    return this._run(signal, {
      handlers: (resolve) => ({ onAnswer: (t, p) => resolve({ type: t, text: new TextDecoder().decode(p) }) }),
      send: (id) => this._sendLong(type, id, payload),
    });
  }

  /**
   * A run of ours under a new id (a command, a request) until the guest ends it (`handlers` get the promise's
   * resolve), the agent fails it, or `signal` aborts it (`onAbort` tells the guest, when it must know); `send`
   * writes its frames.
   */
  private _run<T>(signal: AbortSignal | undefined, o: { handlers: (resolve: (v: T) => void) => Pick<_Run, "onAnswer" | "onStdout" | "onStderr" | "resolve">; onAbort?: (id: string) => void; send: (id: string) => void }): Promise<T> {
    if (this.brokenBy) return Promise.reject(this.brokenBy);
    if (this.closed) return Promise.reject(new BangerError("E_STATE", "the guest exec agent connection is closed"));
    if (signal?.aborted) return Promise.reject(_abortError(signal));
    const id = (this.nextId++).toString(36) + _randomId().slice(0, 8);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        const r = this.runs.get(id);
        if (!r || r.abandoned) return;
        r.abandoned = true;
        o.onAbort?.(id);
        reject(_abortError(signal!));
      };
      const done = () => signal?.removeEventListener("abort", onAbort);
      this.runs.set(id, {
        ...o.handlers((v) => {
          done();
          resolve(v);
        }),
        reject: (e) => {
          done();
          reject(e);
        },
        abandoned: false,
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      // polled quickly from now (an answer is due), and no liveness ping for a while
      this.lastData = this.now();
      o.send(id);
      this._pump();
    });
  }

  /** A frame of `type`, its payload split over a (append) frames before it when longer than one frame takes. */
  private _sendLong(type: string, id: string, payload: Uint8Array): void {
    const room = _room(id);
    let off = 0;
    for (; payload.length - off > room; off += room) this._send(_frame("a", id, payload.subarray(off, off + room)));
    this._send(_frame(type, id, payload.subarray(off)));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this._fail(new BangerError("E_STATE", "the guest exec agent connection was closed"));
    this.into.close();
    this.out.close();
  }

  private _send(frame: Uint8Array): void {
    this.queue.push(frame);
    this._flush();
  }

  /** Write what fits now, whole frames only (a FIFO takes a write of at most PIPE_BUF whole or not at all). */
  private _flush(): void {
    while (this.queue.length && !this.closed) {
      const f = this.queue[0]!;
      const n = this.into.write(f);
      if (n === 0) return;
      if (n !== f.length) {
        // more than PIPE_BUF (only the filler is), written in parts: the rest next time
        this.queue[0] = f.subarray(n);
        continue;
      }
      this.queue.shift();
    }
  }

  /** Read and dispatch frames while anything is asked or runs; polls, more slowly once nothing has come for a while. */
  private _pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    this._pumpLoop().catch((e: unknown) => {
      this.pumping = false;
      this._fail(e instanceof Error ? e : new Error(String(e)));
    });
  }

  private async _pumpLoop(): Promise<void> {
    for (;;) {
      // decided in the same turn as the last look: a command started after it finds no pump and starts one
      if (this.runs.size === 0 || this.closed) {
        this.pumping = false;
        return;
      }
      if (this.now() - this.lastBeat >= _BEAT_EVERY_MS && this._commandRuns()) {
        this.lastBeat = this.now();
        this._send(_frame("p", _randomId(), new TextEncoder().encode("b")));
      }
      this._flush();
      const got = this.out.read();
      if (got.length) {
        this.lastData = this.now();
        this.buf = _concat(this.buf, got);
        this._dispatch();
        continue;
      }
      if (this.now() - this.lookedAlive >= _ALIVE_EVERY_MS) {
        this.lookedAlive = this.now();
        if (!(await this.alive())) {
          this.pumping = false;
          return this._fail(new BangerError("E_STATE", "the VM's process exited while a command ran over its exec agent"));
        }
      }
      if (this.probe && this.now() - this.probe.at >= _PONG_WITHIN_MS) {
        this.pumping = false;
        return this._break(`no answer to a ping in ${_PONG_WITHIN_MS / 1000} s`);
      }
      if (!this.probe && this.now() - this.lastData >= _PROBE_AFTER_MS) {
        this.probe = { id: _randomId(), at: this.now() };
        this._send(_concat(new TextEncoder().encode("sync\n"), _frame("p", this.probe.id, new Uint8Array(0))));
      }
      await this.host.clock.sleep(this.now() - this.lastData < _QUIET_AFTER_MS ? _POLL_MS : _POLL_QUIET_MS);
    }
  }

  /** A command of ours runs (not only a request: a clock read, an identity), which the agent would kill without beats. */
  private _commandRuns(): boolean {
    for (const r of this.runs.values()) if (r.resolve) return true;
    return false;
  }

  /** Handle every whole frame in the buffer; a stream that is not frames breaks the agent. */
  private _dispatch(): void {
    for (;;) {
      const nl = this.buf.indexOf(10);
      if (nl < 0) {
        if (this.buf.length > _MAX_HEADER) return this._break(`a header line longer than ${_MAX_HEADER} bytes`);
        return;
      }
      const header = new TextDecoder().decode(this.buf.subarray(0, nl));
      const m = /^([oexrpc]) ([0-9a-z]{1,32}) (\d{1,7})$/.exec(header);
      if (!m) return this._break(`a malformed header ${JSON.stringify(header.slice(0, _MAX_HEADER))}`);
      const n = Number(m[3]);
      if (this.buf.length < nl + 1 + n) return;
      const payload = this.buf.slice(nl + 1, nl + 1 + n);
      this.buf = this.buf.subarray(nl + 1 + n);
      this._frameIn(m[1]!, m[2]!, payload);
    }
  }

  private _frameIn(type: string, id: string, payload: Uint8Array): void {
    // a pong: the liveness probe's ends it (the handshake's was found before the first frame)
    if (type === "p") {
      if (id === this.probe?.id) this.probe = null;
      return;
    }
    const r = this.runs.get(id);
    // another host's command (a snapshot's parent's, or one from before a daemon restart): not ours to show
    if (!r) return;
    if (r.onAnswer) {
      this.runs.delete(id);
      if (!r.abandoned) r.onAnswer(type, payload);
      return;
    }
    if (type === "o") return void (r.abandoned || r.onStdout?.(payload));
    if (type === "e") return void (r.abandoned || r.onStderr?.(payload));
    this.runs.delete(id);
    if (r.abandoned) return;
    const text = new TextDecoder().decode(payload);
    if (type === "x") {
      const code = Number(text);
      if (!/^\d{1,3}$/.test(text)) return r.reject(new BangerError("E_STATE", `the guest exec agent sent exit status ${JSON.stringify(text)}`));
      return r.resolve?.(code);
    }
    r.reject(new BangerError("E_STATE", `the guest exec agent could not start the command: ${text.trim()}`));
  }

  private _break(why: string): void {
    this.brokenBy = new BangerError("E_STATE", `the guest exec agent's stream broke: ${why}`);
    this._fail(this.brokenBy);
  }

  private _fail(e: Error): void {
    const runs = [...this.runs.values()];
    this.runs.clear();
    for (const r of runs) if (!r.abandoned) r.reject(e);
  }
}

/**
 * A VM's connection for the daemon's SSH pool whose commands go over the exec
 * agent when they can (no terminal, stdin given whole and
 * small) and over SSH otherwise; a restored VM's SSH is dialled at the first
 * need, not before: it answers its first command without a handshake.
 */
export class AgentFirstSSH implements GuestSSH {
  private ssh: Promise<GuestSSH> | null;
  private _closed = false;

  /** `ssh`: a connection already made (a cold boot's); else SSH is dialled at the first need. */
  constructor(
    private readonly agent: ExecAgent,
    private readonly dial: () => Promise<GuestSSH>,
    ssh?: GuestSSH,
  ) {
    this.ssh = ssh ? Promise.resolve(ssh) : null;
  }

  get closed(): boolean {
    return this._closed;
  }

  /** The agent's protocol version (ExecAgent.version). */
  get agentVersion(): number {
    return this.agent.version;
  }

  /**
   * Whether these options can go over the agent: no terminal, stdin none or whole and at most
   * _AGENT_STDIN_MAX. A stream stays on SSH: the port carries host -> guest bytes at 3.7-6 MB/s under TCG (QEMU
   * hands the guest 4 KiB per interrupt), SSH at ~4.5 MB/s, and an agent never learns that a daemon that died
   * is gone (a stream waiting on one would wait in the guest for ever).
   */
  static fits(opts: ExecStreamOptions): boolean {
    if (opts.pty) return false;
    const s = opts.stdin;
    return s === undefined || (typeof s === "string" && s.length <= _AGENT_STDIN_MAX) || (s instanceof Uint8Array && s.length <= _AGENT_STDIN_MAX);
  }

  exec(command: string, opts: ExecStreamOptions = {}): Promise<number> {
    if (this._closed) return Promise.reject(new BangerError("E_STATE", "the connection to this VM is closed"));
    if (!this.agent.broken && AgentFirstSSH.fits(opts)) return this.agent.exec(command, opts as Parameters<ExecAgent["exec"]>[1]);
    return this._ssh().then((c) => c.exec(command, opts));
  }

  /** A script on stdin to `bash -s`, by exec: over the agent when it fits (it does up to _AGENT_STDIN_MAX). */
  runScript(script: string, opts?: { signal?: AbortSignal }): ReturnType<GuestSSH["runScript"]> {
    return runScriptOver(this, script, opts);
  }

  upload(path: string, data: Uint8Array | string, mode?: number): Promise<void> {
    return uploadOver(this, "the guest", path, data, mode);
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    this.agent.close();
    this.ssh?.then((c) => c.close()).catch(() => {});
  }

  /** The SSH connection, dialled now if there is none (or it dropped). */
  private async _ssh(): Promise<GuestSSH> {
    if (this._closed) throw new BangerError("E_STATE", "the connection to this VM is closed");
    const current = this.ssh;
    if (current) {
      const c = await current.catch(() => null);
      if (c && !c.closed) return c;
      if (this.ssh !== current) return this._ssh();
    }
    const p = this.dial();
    this.ssh = p;
    p.catch(() => {
      if (this.ssh === p) this.ssh = null;
    });
    return p;
  }
}

/** stdin given whole that the agent carries (in 4 KiB frames); more goes over SSH. */
const _AGENT_STDIN_MAX = 256 * 1024;

function _frame(type: string, id: string, payload: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(`${type} ${id} ${payload.length}\n`);
  const tail = new TextEncoder().encode(`.${id}\n`);
  const f = new Uint8Array(head.length + payload.length + tail.length);
  f.set(head, 0);
  f.set(payload, head.length);
  f.set(tail, head.length + payload.length);
  return f;
}

/** The most payload one frame of ours with this id carries: header and trailer counted, the longest length field. */
function _room(id: string): number {
  return Math.min(_MAX_PAYLOAD, _MAX_FRAME - (`s ${id} ${_MAX_FRAME}\n`.length + `.${id}\n`.length));
}

function _randomId(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex");
}

function _concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const c = new Uint8Array(a.length + b.length);
  c.set(a, 0);
  c.set(b, a.length);
  return c;
}

function _indexOf(hay: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength));
}

function _abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error("aborted");
  e.name = "AbortError";
  return e;
}
