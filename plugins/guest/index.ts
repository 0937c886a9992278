import { join } from "node:path";
import { BangerError, configFrom, definePlugin, environ, fileTail, renderScript, shellQuote, sshTargetFor, vmPaths } from "../../src/plugin-api.ts";
import type { CloneNet, Env, FS, GuestSSH, Host, VMRecord } from "../../src/plugin-api.ts";
import SET_CLOCK_SH from "./scripts/set-clock.sh" with { type: "text" };
import CLOCK_BY_DATE_SH from "./scripts/clock-by-date.sh" with { type: "text" };
import CLONE_IDENTITY_SH from "./scripts/clone-identity.sh" with { type: "text" };
import { buildSeedInitrd, generateVMKeys } from "./seed.ts";
import { CLOCK_RESEED_ELF } from "./clock-reseed-elf.ts";
import { AGENT_MARKER, AgentSilent, agentRunner, type GuestRunner } from "./agent.ts";
import { AgentFirstSSH, EXEC_AGENT_MARKER, ExecAgent, ExecAgentSilent, HostKeyNotPerConnection } from "./exec-agent.ts";

/** Printed on the console by the guest's init once its SSH server listens. */
export const READY_MARKER = "BANGER-READY";
/** Printed (with a reason) by the guest's init when it cannot come up; it powers off after. */
export const FAILED_MARKER = "BANGER-BOOT-FAILED";
/**
 * In a VM's dir and in each of its snapshots' dirs: its guest runs the agent (its init said AGENT_MARKER at boot),
 * so a restore of it sets the clock and a clone's identity over the agent (agent.ts), not over SSH.
 */
export const AGENT_FILE = "guest-agent";
/**
 * Likewise for the exec agent (its init said EXEC_AGENT_MARKER): the VM's commands go over that (exec-agent.ts:
 * AgentFirstSSH), and a restore of it dials SSH only when something needs it.
 */
export const EXEC_AGENT_FILE = "guest-exec-agent";
/** How long a guest's exec agent may take to answer its first ping (a booted guest said it started it; a restored one's is the guest's first exchange, with it waking up). */
export const EXEC_AGENT_SILENT_MS = 10_000;
/**
 * The same for a guest that has long been running, met again by a daemon that holds no connection to it
 * (after a restart): it answers within milliseconds unless its host is swamped; silent this long, SSH it is.
 */
export const EXEC_AGENT_RECONNECT_SILENT_MS = 3_000;

export function bootTimeoutMs(env: Env = environ()): number {
  const s = Number(configFrom(env).bootTimeout ?? "");
  return Number.isFinite(s) && s > 0 ? s * 1000 : 180_000;
}

async function tail(fs: FS, path: string, lines = 25): Promise<string> {
  const text = await fileTail(fs, path);
  return text === null ? "(no serial output)" : text.split("\n").slice(-lines).join("\n");
}

/** A clone's own identity: its hostname, client key (root's authorized key), dropbear host key. */
async function _cloneIdentity(host: Host, vm: VMRecord): Promise<{ hostname: string; authorizedKey: string; hostKey: Uint8Array }> {
  const keys = vmPaths(vm.runtime.vmDir);
  const authorized = (await host.fs.readText(`${keys.clientKey}.pub`))?.trim();
  if (!authorized) throw new BangerError("E_STATE", `vm ${vm.name} has no client key`);
  return { hostname: vm.name, authorizedKey: authorized, hostKey: await host.fs.readBytes(keys.hostKey) };
}

/** Host randomness for a restored guest's RNG. */
function _entropy(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(64));
}

/** The values clone-identity.sh takes: a clone's own hostname, client key, host key and host randomness. */
export async function cloneIdentityValues(host: Host, vm: VMRecord): Promise<{ NAME: string; AUTHORIZED_KEY: string; HOST_KEY: string; ENTROPY: string; CLOCK_RESEED: string }> {
  const who = await _cloneIdentity(host, vm);
  return {
    NAME: who.hostname,
    AUTHORIZED_KEY: who.authorizedKey,
    // written by printf %b in the guest: binary through a shell word, no upload (one exec less)
    HOST_KEY: printfEscapes(who.hostKey),
    ENTROPY: Buffer.from(_entropy()).toString("hex"),
    CLOCK_RESEED: printfEscapes(CLOCK_RESEED_ELF),
  };
}

/** Bytes as `\xHH` escapes, which bash's `printf '%b'` writes back byte for byte (NUL included). */
export function printfEscapes(bytes: Uint8Array): string {
  return [...bytes].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
}

/** A clone's network provider's script (CloneNet.guestScript: its own address), on the connection (or agent) its identity came over. */
async function runCloneNetScript(vm: VMRecord, via: GuestSSH | GuestRunner, script: string): Promise<void> {
  let r: { exitCode: number; stderr: string };
  if (typeof via === "function") {
    const err: Uint8Array[] = [];
    const exitCode = await via(script, { onStderr: (c) => void err.push(c) });
    r = { exitCode, stderr: Buffer.concat(err).toString() };
  } else r = await via.runScript(script);
  if (r.exitCode !== 0) throw new BangerError("E_STATE", `moving clone ${vm.name} to its own network address failed (exit ${r.exitCode}): ${r.stderr.trim().split("\n").at(-1) ?? ""}`);
}

/** How many times a restored guest's clock is read: the quickest round trip's reading sets it. */
const CLOCK_READS = 3;

/** A pause shorter than this leaves the guest's clock as it is: the skew a restore's clock may keep (issue 15: 0.2 s). */
export const RESUME_CLOCK_SLACK_MS = 200;

/** One reading of the guest's clock: its round trip (ms), and the host's clock minus the guest's (µs) at its midpoint. */
interface ClockSample {
  rtt: number;
  offsetUs: number;
}

function _clockSample(sentAtMs: number, backMs: number, guestUs: number): ClockSample {
  return { rtt: backMs - sentAtMs, offsetUs: Math.round(((sentAtMs + backMs) / 2) * 1000) - guestUs };
}

/** The sample with the quicker round trip (its error is at most half of it); the first on a tie. */
function _quicker(best: ClockSample | null, s: ClockSample): ClockSample {
  return !best || s.rtt < best.rtt ? s : best;
}

/**
 * Set a restored guest's clock to the host's (its own stood still while it
 * was saved) and, for a clone (`identity`), give it its own identity in the
 * same exec. Once the guest's bash is up, three pings, each answered with
 * the guest's clock from a builtin; the quickest round trip gives the
 * offset, so the error left is at most half of it (a few ms when the guest
 * gets CPU), not an SSH exec's latency (0.2-2 s under loaded TCG).
 */
export async function setGuestClock(host: Host, via: GuestSSH | GuestRunner, identity?: Awaited<ReturnType<typeof cloneIdentityValues>>, signal?: AbortSignal): Promise<{ offsetMs: number; roundTripMs: number }> {
  const run: GuestRunner = typeof via === "function" ? via : (script, io) => via.exec(inBash(script), io);
  const ms = () => host.clock.now().getTime();
  const lines = _lineQueue();
  const result = { offsetMs: 0, roundTripMs: 0 };
  const enc = (t: string) => new TextEncoder().encode(t);
  const stdin = (async function* () {
    if ((await lines.next()) !== "ready") return;
    let best: ClockSample | null = null;
    for (let i = 0; i < CLOCK_READS; i++) {
      const sentAt = ms();
      yield enc("t\n");
      const said = await lines.next();
      const back = ms();
      // nothing (the guest side ended) or not a time: send nothing more, the exit code says what happened
      if (!/^\d+\.\d+$/.test(said)) return;
      best = _quicker(best, _clockSample(sentAt, back, Math.round(Number(said) * 1e6)));
    }
    result.offsetMs = best!.offsetUs / 1000;
    result.roundTripMs = best!.rtt;
    yield enc(`${best!.offsetUs}\n`);
    // stdin stays open (the guest's sleeps read it) until the guest side ends
    while (!lines.ended) await lines.next();
  })();
  const err: Uint8Array[] = [];
  const script = identity ? renderScript([SET_CLOCK_SH, CLONE_IDENTITY_SH], identity) : renderScript([SET_CLOCK_SH, CLOCK_BY_DATE_SH], {});
  let code: number;
  try {
    code = await run(script, { stdin, signal, onStdout: lines.feed, onStderr: (c) => void err.push(c) });
  } finally {
    lines.end(); // the guest side ended (or the exec failed): let a waiting stdin generator finish
  }
  if (code !== 0) {
    const what = identity ? `giving clone ${identity.NAME} its own identity` : "setting the restored guest's clock";
    throw new BangerError("E_STATE", `${what} failed (exit ${code}): ${Buffer.concat(err).toString().trim().split("\n").at(-1) ?? ""}`);
  }
  return result;
}

/**
 * setGuestClock over the exec agent (version 2), with no program started in
 * the guest: three clock reads (the quickest round trip gives the offset),
 * then one identity frame that moves the clock by it and reseeds the RNG
 * from host randomness, and for a clone (`clone`) also sets its hostname and
 * keys. A rollback's RNG is reseeded too: two restores of one snapshot must
 * not hand out the same random bytes.
 */
export async function setGuestClockOverExecAgent(host: Host, agent: ExecAgent, clone?: Awaited<ReturnType<typeof _cloneIdentity>>, signal?: AbortSignal): Promise<{ offsetMs: number; roundTripMs: number }> {
  let best: ClockSample | null = null;
  for (let i = 0; i < CLOCK_READS; i++) {
    const sentAt = host.clock.now().getTime();
    const guestUs = await agent.clockUs(signal);
    best = _quicker(best, _clockSample(sentAt, host.clock.now().getTime(), guestUs));
  }
  await agent.identity({ clockOffsetNs: BigInt(best!.offsetUs) * 1000n, entropy: _entropy(), ...clone }, signal);
  return { offsetMs: best!.offsetUs / 1000, roundTripMs: best!.rtt };
}

/**
 * A command line running a bash script in the login shell that dropbear
 * starts for it when that is bash (root's is, in banger's images), not in a
 * second bash: one program start less (50-150 ms under TCG).
 */
export function inBash(script: string): string {
  return `S=${shellQuote(script)}; if [ -n "$BASH_VERSION" ]; then eval "$S"; else exec bash -c "$S"; fi`;
}

/** Lines of a byte stream, handed out one by one as they arrive ("" once it ended). */
function _lineQueue() {
  let buf = "";
  let ended = false;
  const ready: string[] = [];
  let waiter: ((l: string) => void) | null = null;
  const deliver = () => {
    while (waiter && (ready.length || ended)) {
      const w = waiter;
      waiter = null;
      w(ready.shift() ?? "");
    }
  };
  return {
    feed: (c: Uint8Array) => {
      buf += new TextDecoder().decode(c);
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        ready.push(buf.slice(0, i).trim());
        buf = buf.slice(i + 1);
      }
      deliver();
    },
    end: () => {
      ended = true;
      deliver();
    },
    get ended() {
      return ended;
    },
    next: () =>
      new Promise<string>((resolve) => {
        waiter = resolve;
        deliver();
      }),
  };
}

/** "ready", the guest's own failure line, or null while still booting. */
async function bootState(fs: FS, path: string): Promise<"ready" | string | null> {
  const text = (await fs.readText(path)) ?? "";
  if (text.includes(READY_MARKER)) return "ready";
  const i = text.indexOf(FAILED_MARKER);
  return i >= 0 ? text.slice(i).split("\n")[0]!.trim() : null;
}

/** Time marks of one guest wait, for a debug line: where the time between launch (or restore) and "ready" goes. */
function _marks(host: Host) {
  const t0 = host.clock.now().getTime();
  let last = t0;
  const steps: string[] = [];
  return {
    mark(step: string) {
      const now = host.clock.now().getTime();
      steps.push(`${step} ${now - last} ms`);
      last = now;
    },
    line: () => `${steps.join(", ")}; ${last - t0} ms in all`,
  };
}

/**
 * Wait until the guest is reachable and return an open connection to it,
 * made with the VM's keys and pinned host key (a clone's: see below; the daemon's SSH pool
 * adopts it: the first exec needs no handshake of its own). Booting: the
 * console marker first (polling slirp's port forward before sshd listens
 * costs seconds of SYN backoff), then a real SSH handshake. Restored: its
 * clock is set over that connection. A clone answers with its parent's keys
 * (saved in the snapshot) until it has its own: one dial with those for
 * clock and identity in one exec; that connection is the one returned,
 * unless the clone was re-addressed (tap): then one dial with its own keys
 * at its own address. A restored guest whose init runs the agent
 * (`agentPipe`) gets its clock, identity and address over that instead, then
 * one dial with its own keys, or none when its exec agent (`execPipe`)
 * answers: the connection returned runs commands over that and dials SSH at
 * the first need (AgentFirstSSH); an agent silent for AGENT_SILENT_MS falls
 * back to the above. An exec agent of version 2 is asked first and does the
 * clock, identity and address itself (_restoreOverExecAgent): the guest
 * agent is not used at all.
 */
export async function waitForGuest(host: Host, vm: VMRecord, pid: number, opts: { timeoutMs: number; progress: (m: string) => void; signal: AbortSignal; restored?: boolean; log?: (m: string) => void; debug?: (m: string) => void; cloneOf?: string; cloneNet?: CloneNet; agentPipe?: string; execPipe?: string }): Promise<GuestSSH> {
  const deadline = host.clock.now().getTime() + opts.timeoutMs;
  const marks = _marks(host);
  const keys = vmPaths(vm.runtime.vmDir);
  const own = { privateKey: await host.fs.readText(keys.clientKey), hostKey: await host.fs.readText(keys.hostPubKey) };
  const parent = opts.cloneOf ? { privateKey: await host.fs.readText(join(opts.cloneOf, "keys", "id_ed25519")), hostKey: await host.fs.readText(join(opts.cloneOf, "keys", "host_ed25519.pub")) } : null;
  for (const k of parent ? [own, parent] : [own]) {
    if (!k.privateKey || !k.hostKey) throw new BangerError("E_STATE", `vm ${vm.name} has no SSH keys${k === parent ? " in its snapshot" : ""}`);
  }
  // a clone's guest still has its parent's address: its network provider says where it answers (CloneNet)
  const cloneNet = parent ? opts.cloneNet : undefined;
  // a restored guest's exec agent first: it answers the first exchange (the guest waking: 0.1-0.15 s under TCG here)
  let execAgent: ExecAgent | null = null;
  if (opts.restored && opts.execPipe) {
    execAgent = await _attachExecAgent(host, vm, pid, opts.execPipe, { ...opts, deadline });
    if (execAgent) marks.mark("exec agent");
    if (execAgent && execAgent.version >= 2) {
      const viaAgent = await _restoreOverExecAgent(host, vm, execAgent, { ...opts, cloneNet, marks });
      if (viaAgent) return viaAgent;
    }
  }
  const identity = opts.cloneOf ? await cloneIdentityValues(host, vm) : undefined;
  if (opts.restored && opts.agentPipe) {
    // clock, identity and address over the agent; then SSH once, with the VM's own keys, at its own address
    const silentBy = host.clock.now().getTime() + Math.min(AGENT_SILENT_MS, opts.timeoutMs);
    const run = agentRunner(host, opts.agentPipe, { deadline, silentBy, alive: _processAlive(host, pid) });
    let c: Awaited<ReturnType<typeof setGuestClock>>;
    try {
      c = await setGuestClock(host, run, identity, opts.signal);
    } catch (e) {
      execAgent?.close();
      if (!(e instanceof AgentSilent)) throw e;
      // what a guest answers over SSH is the same script: the agent, if it wakes after all, only does it again
      opts.log?.(`${vm.name}: the guest agent did not answer within ${AGENT_SILENT_MS / 1000} s; going over SSH`);
      return waitForGuest(host, vm, pid, { ...opts, agentPipe: undefined, execPipe: undefined, timeoutMs: Math.max(1000, deadline - host.clock.now().getTime()) });
    }
    marks.mark(identity ? "agent: clock + identity" : "agent: clock");
    opts.log?.(_clockMoved(vm, c));
    try {
      if (cloneNet?.guestScript) await runCloneNetScript(vm, run, cloneNet.guestScript);
      await cloneNet?.afterIdentity?.();
    } catch (e) {
      execAgent?.close();
      throw e;
    }
    if (execAgent) {
      // its commands over the exec agent; SSH (own keys, own address) once something needs it
      opts.debug?.(`${vm.name}: guest answering: ${marks.line()}`);
      return _agentFirst(host, vm, execAgent);
    }
    const conn = await _dialWhenUp(host, vm, pid, own, { ...opts, deadline, booting: false, retryMs: 50 });
    marks.mark("dial");
    opts.debug?.(`${vm.name}: guest answering: ${marks.line()}`);
    return conn;
  }
  execAgent?.close();
  let conn = await _dialWhenUp(host, vm, pid, parent ?? own, { ...opts, deadline, booting: !opts.restored, via: cloneNet?.dialVia });
  marks.mark(parent ? "dial (parent's keys)" : "dial");
  try {
    if (opts.restored) {
      const c = await setGuestClock(host, conn, identity, opts.signal);
      marks.mark(identity ? "clock + identity exec" : "clock exec");
      // the error left is at most half the round trip
      opts.log?.(_clockMoved(vm, c));
    }
    // after the identity, last on its connection: the network provider's re-addressing
    if (cloneNet?.guestScript) await runCloneNetScript(vm, conn, cloneNet.guestScript);
  } catch (e) {
    conn.close();
    throw e;
  }
  // A clone its network provider did not re-address keeps this connection: it was made to the only guest that
  // can answer on this VM's endpoint, and it stays open when its key is revoked. The new listener is up (the
  // identity script waits until it listens and fails if it dies), and whoever dials next meets the clone's own
  // keys; a handshake here (~0.2 s of guest CPU under TCG) would only delay the first exec.
  if (parent && !cloneNet?.dialVia && !cloneNet?.guestScript && !cloneNet?.afterIdentity) {
    opts.debug?.(`${vm.name}: guest answering: ${marks.line()} (the identity connection stays open)`);
    return conn;
  }
  if (parent) {
    conn.close();
    await cloneNet?.afterIdentity?.();
    // the clone's own keys (and address) from now on: its new listener (up by now) must answer with them
    conn = await _dialWhenUp(host, vm, pid, own, { ...opts, deadline, booting: false, retryMs: 50 });
    marks.mark("dial (own keys)");
  }
  opts.debug?.(`${vm.name}: guest answering: ${marks.line()}`);
  return conn;
}

/**
 * A connection whose commands go over the guest's exec agent at `execPipe`
 * (AgentFirstSSH), with `ssh` as its SSH connection or, without one, SSH
 * dialled (the VM's own keys) when something needs it. null, with a line in
 * the log, when the agent does not answer its ping within
 * EXEC_AGENT_SILENT_MS: the caller goes over SSH alone.
 */
export async function withExecAgent(host: Host, vm: VMRecord, pid: number, execPipe: string, opts: { deadline: number; signal: AbortSignal; log?: (m: string) => void; ssh?: GuestSSH }): Promise<AgentFirstSSH | null> {
  const agent = await _attachExecAgent(host, vm, pid, execPipe, opts);
  return agent && _agentFirst(host, vm, agent, opts.ssh);
}

/**
 * The exec agent at `execPipe`, answering; null, with a line in the log, when it is silent (for `silentMs`:
 * EXEC_AGENT_SILENT_MS unless said) or has no port.
 */
async function _attachExecAgent(host: Host, vm: VMRecord, pid: number, execPipe: string, opts: { deadline: number; signal?: AbortSignal; log?: (m: string) => void; silentMs?: number }): Promise<ExecAgent | null> {
  const silentMs = opts.silentMs ?? EXEC_AGENT_SILENT_MS;
  try {
    return await ExecAgent.attach(host, execPipe, { deadline: Math.min(opts.deadline, host.clock.now().getTime() + silentMs), alive: _processAlive(host, pid), signal: opts.signal });
  } catch (e) {
    if ((e as { code?: string } | null)?.code === "ENOENT") {
      // the port's FIFOs are not there (a VMM that gave the guest none): nothing to attach to
      opts.log?.(`${vm.name}: no exec agent port (${execPipe}.in/.out); its commands go over SSH`);
      return null;
    }
    if (!(e instanceof ExecAgentSilent)) throw e;
    opts.log?.(`${vm.name}: the guest's exec agent did not answer within ${silentMs / 1000} s; its commands go over SSH`);
    return null;
  }
}

/** The pool's connection over `agent`, SSH (`ssh`, or dialled as the pool dials, at the first need) for the rest. */
function _agentFirst(host: Host, vm: VMRecord, agent: ExecAgent, ssh?: GuestSSH): AgentFirstSSH {
  return new AgentFirstSSH(agent, async () => host.ssh.dial(await sshTargetFor(host.fs, vm)), ssh);
}

/**
 * A restored guest's clock, RNG and (a clone's) identity and address, all over its exec agent (version 2): no
 * program started in the guest for them, and no SSH. null when its dropbear would not take a new host key
 * (nothing applied): the caller goes the shell's way, which starts one that does.
 */
async function _restoreOverExecAgent(host: Host, vm: VMRecord, agent: ExecAgent, opts: { cloneOf?: string; cloneNet?: CloneNet; signal: AbortSignal; log?: (m: string) => void; debug?: (m: string) => void; marks: ReturnType<typeof _marks> }): Promise<AgentFirstSSH | null> {
  const clone = opts.cloneOf ? await _cloneIdentity(host, vm) : undefined;
  try {
    const c = await setGuestClockOverExecAgent(host, agent, clone, opts.signal);
    opts.marks.mark(clone ? "clock + identity" : "clock");
    opts.log?.(_clockMoved(vm, c));
  } catch (e) {
    if (e instanceof HostKeyNotPerConnection) {
      opts.log?.(`${vm.name}: ${e.message}; its identity goes over the guest agent`);
      return null;
    }
    agent.close();
    const what = clone ? `giving clone ${vm.name} its own identity` : "setting the restored guest's clock";
    throw new BangerError("E_STATE", `${what} failed: ${(e as Error).message}`);
  }
  try {
    // after the identity: the network provider's re-addressing, in bash as over the guest agent
    if (opts.cloneNet?.guestScript) await runCloneNetScript(vm, (script, io) => agent.exec(inBash(script), { onStdout: io.onStdout, onStderr: io.onStderr, signal: io.signal }), opts.cloneNet.guestScript);
    await opts.cloneNet?.afterIdentity?.();
  } catch (e) {
    agent.close();
    throw e;
  }
  opts.debug?.(`${vm.name}: guest answering: ${opts.marks.line()}`);
  return _agentFirst(host, vm, agent);
}

/** The log line of a restored guest's clock set (the error left is at most half the round trip; the e2e tests read it). */
function _clockMoved(vm: VMRecord, c: { offsetMs: number; roundTripMs: number }): string {
  return `${vm.name}: restored guest's clock moved ${(c.offsetMs / 1000).toFixed(3)} s to the host's (round trip ${c.roundTripMs} ms)`;
}

/** Whether the VM's process still runs: what the agents' exchanges watch. */
function _processAlive(host: Host, pid: number): () => Promise<boolean> {
  return async () => !!(await host.procs.info(pid));
}

/** Where and as whom banger dials a VM's guest with these keys: its endpoint, or `via` (a clone's parent's address). */
function _sshTarget(vm: VMRecord, key: { privateKey: string; hostKey: string }, via?: { host: string; port: number }) {
  return { host: via?.host ?? vm.runtime.sshHost, port: via?.port ?? vm.runtime.sshPort, user: "root", privateKey: key.privateKey, hostKey: key.hostKey.trim(), readyTimeoutMs: 10_000 };
}

/**
 * How long a restored guest's agent may stay silent before the clock (and identity) go over SSH instead: its
 * first line comes within a second here, seconds on a loaded TCG host; silence for this long means no agent reads.
 */
export const AGENT_SILENT_MS = 30_000;

/**
 * The progress line for a VM of banger's own image whose guest runs no exec agent, or (`agent`) one older than
 * version 2: an older banger built the image (an import's or OCI image's guest may lack perl: no line for those).
 */
async function _hintOlderImage(fs: Pick<Host["fs"], "readText">, image: { source: string; dir: string } | null | undefined, progress: (m: string) => void, agent?: "older"): Promise<void> {
  const source = image?.source;
  if (source !== "built" && source !== "derived" && source !== "committed") return;
  // built or committed on an image banger did not build (an OCI or an imported one, which may lack perl): no line either
  if (source !== "built" && (await _rootSource(fs, image!.dir)) !== "built") return;
  const what = agent ? "its restores and clones set their clock and identity the slower way (~0.1 s more each)" : "its guest runs commands over SSH only";
  progress(`this VM's image was built by an older banger: ${what}; \`banger image build --force\` (of it or of the image it comes from; then \`banger image warm\` again) gives it the ${agent ? "newer " : ""}exec agent`);
}

/** Where a derived or committed image's chain starts (its manifest's rootSource): "built" for a manifest from before it was written. */
async function _rootSource(fs: Pick<Host["fs"], "readText">, dir: string): Promise<string> {
  try {
    const m = JSON.parse((await fs.readText(join(dir, "manifest.json"))) ?? "{}") as { rootSource?: unknown };
    return typeof m.rootSource === "string" ? m.rootSource : "built";
  } catch {
    return "built";
  }
}

/** Record (or clear) that a VM's guest runs the agent: AGENT_FILE. */
async function _markAgent(fs: FS, path: string, agent: boolean): Promise<void> {
  if (agent) await fs.writeAtomic(path, "", 0o600);
  else await fs.rmrf(path);
}

/** Dial until the guest answers (a pinned-key mismatch fails at once), watching its process (and, booting, its console). */
async function _dialWhenUp(host: Host, vm: VMRecord, pid: number, key: { privateKey: string | null; hostKey: string | null }, opts: { deadline: number; timeoutMs: number; progress: (m: string) => void; signal: AbortSignal; booting: boolean; retryMs?: number; via?: { host: string; port: number } }): Promise<GuestSSH> {
  const now = () => host.clock.now().getTime();
  const started = now();
  let lastReport = 0;
  // a restored guest booted long ago: its console says nothing now (and QEMU emptied the log file), SSH is what tells
  let marker = !opts.booting;
  while (now() < opts.deadline) {
    if (opts.signal.aborted) throw new BangerError("E_STATE", "boot wait cancelled");
    if (!(await host.procs.info(pid))) {
      throw new BangerError("E_STATE", `vm ${vm.name}: the VM process exited during boot. Serial log tail:\n${await tail(host.fs, vm.runtime.logPath)}`);
    }
    const secs = Math.round((now() - started) / 1000);
    if (!marker) {
      const state = await bootState(host.fs, vm.runtime.logPath);
      if (state && state !== "ready") {
        throw new BangerError("E_STATE", `vm ${vm.name}: ${state}. Serial log tail:\n${await tail(host.fs, vm.runtime.logPath)}`);
      }
      marker = state === "ready";
      if (!marker) {
        if (now() - lastReport >= 1000) {
          opts.progress(`booting ${vm.name} (${secs}s)`);
          lastReport = now();
        }
        await host.clock.sleep(100);
        continue;
      }
      opts.progress(`waiting for ssh on ${vm.name} (${secs}s)`);
    }
    try {
      return await host.ssh.dial(_sshTarget(vm, { privateKey: key.privateKey!, hostKey: key.hostKey! }, opts.via));
    } catch (e) {
      if (/host key/i.test(String(e))) throw e; // a pinned-key mismatch never heals by retrying
      await host.clock.sleep(opts.retryMs ?? 250);
    }
  }
  throw new BangerError("E_TIMEOUT", `vm ${vm.name} did not answer SSH within ${Math.round(opts.timeoutMs / 1000)} s. Serial log tail:\n${await tail(host.fs, vm.runtime.logPath)}`);
}

export default definePlugin({
  name: "guest",
  description: "Per-VM SSH keys (client key + pinned guest host key), a seed initrd with hostname and keys, wait for SSH at boot",
  setup(ctx) {
    // A daemon that holds no connection to a running VM (it restarted, say) reaches its guest's exec agent
    // again rather than dial SSH: no handshake, and the agent's throughput for plain commands.
    ctx.connectGuest(async (vm, handles) => {
      if (!vm.runtime.sshPort || !handles.pid) return null;
      if (!(await ctx.host.fs.exists(join(vm.runtime.vmDir, EXEC_AGENT_FILE)))) return null;
      const now = ctx.host.clock.now().getTime();
      const agent = await _attachExecAgent(ctx.host, vm, handles.pid, vmPaths(vm.runtime.vmDir).execPipe, { deadline: now + EXEC_AGENT_RECONNECT_SILENT_MS, silentMs: EXEC_AGENT_RECONNECT_SILENT_MS, log: (m) => ctx.log.info(m) }).catch((e: unknown) => {
        // its VMM gone, say: SSH gives the error every other way to reach it gives
        ctx.log.info(`${vm.name}: cannot reach its exec agent (${(e as Error).message}); its commands go over SSH`);
        return null;
      });
      if (!agent) return null;
      ctx.log.info(`${vm.name}: its commands go over its exec agent again (version ${agent.version})`);
      return _agentFirst(ctx.host, vm, agent);
    });
    ctx.hook("vm:create", async ({ vm, progress }) => {
      const image = ctx.store.getImage(vm.spec.image);
      if (!image?.initrdPath) return; // a user's own kernel+rootfs pair: no seed channel, keys are theirs
      progress("generating keys");
      const paths = vmPaths(vm.runtime.vmDir);
      await ctx.host.fs.mkdirp(paths.keysDir, 0o700);
      const keys = await generateVMKeys({ fs: ctx.host.fs, dir: paths.keysDir });
      // generateVMKeys names its files as vmPaths does; the daemon's SSH pool reads them from there
      if (keys.clientKeyPath !== paths.clientKey || keys.hostKeyPath !== paths.hostKey) throw new BangerError("E_INTERNAL", "key file names drifted from vmPaths");
      await ctx.host.fs.writeAtomic(paths.hostPubKey, keys.hostPublicKey + "\n", 0o644);
    });
    ctx.hook("vm:start:before", async ({ vm, boot, op, restored }) => {
      const image = ctx.store.getImage(vm.spec.image);
      if (!image?.initrdPath) return;
      // A restored guest booted long ago and never reads a seed again (a clone gets its identity over SSH), and a
      // restore takes whatever -initrd it is given (what was loaded is not in the saved state): it keeps the
      // image's own, and a clone does not read and write a 1.2 MB copy of it (nor QEMU read that copy). A later
      // cold start builds the seed then, with the VM's own keys.
      if (restored) return;
      const keys = vmPaths(vm.runtime.vmDir);
      const out = join(vm.runtime.vmDir, "initrd.img");
      // a start that fails later (or a build failing half way) leaves the VM dir as it found it
      op.defer("seed initrd", () => ctx.host.fs.rmrf(out));
      await buildSeedInitrd({
        exec: ctx.host.exec,
        fs: ctx.host.fs,
        baseInitrd: image.initrdPath,
        out,
        hostname: vm.name,
        authorizedKey: (await ctx.host.fs.readText(`${keys.clientKey}.pub`))!.trim(),
        hostKeyPath: keys.hostKey,
        extraFiles: boot.guestFiles,
      });
      boot.initrdPaths = [out];
    });
    // a clone of this snapshot will answer with these keys until it gets its own; they do not change at the
    // freeze, so they are copied before it (their fsyncs would be freeze)
    ctx.hook("vm:snapshot:before", async ({ vm, dir }) => {
      const keys = vmPaths(vm.runtime.vmDir);
      await ctx.host.fs.mkdirp(join(dir, "keys"), 0o700);
      // the guest's agent runs on in the snapshot's memory: a restore of it can use it
      for (const f of [AGENT_FILE, EXEC_AGENT_FILE]) {
        if (await ctx.host.fs.exists(join(vm.runtime.vmDir, f))) await ctx.host.fs.writeAtomic(join(dir, f), "", 0o600);
      }
      for (const [from, to] of [[keys.clientKey, "id_ed25519"], [keys.hostPubKey, "host_ed25519.pub"]] as const) {
        const data = await ctx.host.fs.readText(from);
        if (data !== null) await ctx.host.fs.writeAtomic(join(dir, "keys", to), data, 0o600);
      }
    });
    // a resumed guest's clock stood still while it was paused: set it to the host's, as a restore's is (a pause
    // shorter than the skew a restore is allowed is left alone: the pause→resume round trip stays one VMM call)
    ctx.hook("vm:resume", async ({ vm, pausedMs, guest }) => {
      if (!vm.runtime.sshPort || (pausedMs !== null && pausedMs < RESUME_CLOCK_SLACK_MS)) return;
      const c = await setGuestClock(ctx.host, await guest());
      ctx.log.info(`${vm.name}: resumed guest's clock moved ${(c.offsetMs / 1000).toFixed(3)} s to the host's (paused ${pausedMs === null ? "since before this daemon" : `${pausedMs} ms`}, round trip ${c.roundTripMs} ms)`);
    });
    ctx.hook("vm:start:after", async ({ vm, handles, progress, signal, op, restored, snapshot, cloneNet }) => {
      if (!vm.runtime.sshPort) return;
      const image = ctx.store.getImage(vm.spec.image);
      if (!image?.initrdPath) {
        // an imported kernel+rootfs without banger's initramfs gets no keys: nothing to wait for
        ctx.log.info(`${vm.name}: image ${vm.spec.image} has no banger initramfs; not waiting for SSH`);
        return;
      }
      const agentFile = join(vm.runtime.vmDir, AGENT_FILE);
      const execAgentFile = join(vm.runtime.vmDir, EXEC_AGENT_FILE);
      // a restore inherits the snapshot's agents (its guest runs on from the snapshot's memory)
      const agent = restored ? !!snapshot && (await ctx.host.fs.exists(join(snapshot.dir, AGENT_FILE))) : false;
      const execAgent = agent && !!snapshot && (await ctx.host.fs.exists(join(snapshot.dir, EXEC_AGENT_FILE)));
      if (restored) {
        await _markAgent(ctx.host.fs, agentFile, agent);
        await _markAgent(ctx.host.fs, execAgentFile, execAgent);
        // a template or snapshot an older banger's image booted: the same hint as at its boot
        if (!execAgent) await _hintOlderImage(ctx.host.fs, image, progress);
      }
      let conn = await waitForGuest(ctx.host, vm, handles.pid, {
        timeoutMs: bootTimeoutMs(),
        progress,
        signal,
        restored,
        log: (m) => ctx.log.info(m),
        debug: (m) => ctx.log.debug(m),
        cloneOf: restored && snapshot && snapshot.vmId !== vm.id ? snapshot.dir : undefined,
        cloneNet,
        agentPipe: agent ? vmPaths(vm.runtime.vmDir).agentPipe : undefined,
        execPipe: execAgent ? vmPaths(vm.runtime.vmDir).execPipe : undefined,
      });
      if (!restored) {
        // booted: its init says on the console (before it said ready) whether its agents read their ports
        const said = (await ctx.host.fs.readText(vm.runtime.logPath)) ?? "";
        await _markAgent(ctx.host.fs, agentFile, said.includes(AGENT_MARKER));
        const execMarked = said.includes(AGENT_MARKER) && said.includes(EXEC_AGENT_MARKER);
        await _markAgent(ctx.host.fs, execAgentFile, execMarked);
        if (!execMarked) await _hintOlderImage(ctx.host.fs, image, progress);
        // its commands over the exec agent too (~2.5× SSH's throughput of output under TCG), the connection made for SSH's other uses
        if (execMarked) {
          const deadline = ctx.host.clock.now().getTime() + EXEC_AGENT_SILENT_MS;
          const viaAgent = await withExecAgent(ctx.host, vm, handles.pid, vmPaths(vm.runtime.vmDir).execPipe, { deadline, signal, log: (m) => ctx.log.info(m), ssh: conn }).catch((e: unknown) => {
            conn.close();
            throw e;
          });
          if (viaAgent) conn = viaAgent;
        }
      }
      // a guest whose exec agent predates the clock and identity frames: its templates and snapshots will too
      if (conn instanceof AgentFirstSSH && conn.agentVersion < 2) await _hintOlderImage(ctx.host.fs, image, progress, "older");
      // a start that fails after this leaves no live connection in the pool (a closed one is redialled)
      op.defer("ssh connection", () => conn.close());
      ctx.adoptSSH(vm, conn);
    });
  },
});
