import { randomBytes } from "node:crypto";
import { BangerError, errorMessage, undoFailuresOf } from "../shared/errors.ts";
import { faultMidStream, faultPoint } from "../host/faults.ts";
import type { HookEngine } from "../core/hooks.ts";
import { runOperation, type Operation } from "../core/operation.ts";
import type { Logger } from "../core/plugin.ts";
import { Backlog, type FlowControl } from "../shared/backlog.ts";
import { shellJoin } from "../shared/quote.ts";
import type { GuestSession, SessionStdinMode, VMRecord } from "../shared/model.ts";
import type { Clock, GuestSSH, Host } from "../host/types.ts";
import {
  AttachInputCommandForPipe,
  AttachTailCommand,
  BACKEND_SSH,
  CommandPreflightScript,
  CWDPreflightScript,
  DEFAULT_STATE_ROOT,
  LaunchScript,
  LogReadCommand,
  RemoveScript,
  SEND_NO_PIPE_EXIT,
  SEND_SHORT_EXIT,
  SEND_TIMEOUT_EXIT,
  SEND_TIMEOUT_SECONDS,
  SendScript,
  FastSendScript,
  fastSendable,
  sessionPaths,
  StateDir,
  StatusScript,
  StatusesScript,
  StopScript,
  UserPreflightScript,
  StartFollowScript,
  bootstrapCommand,
  SignalScript,
  CloseStdinScript,
  ResizeScript,
  LabelReadCommand,
  LogSizesCommand,
  type LaunchOptions,
  type PtySize,
} from "./scripts.ts";
import { checkExecOptions } from "../shared/exec-options.ts";
import { notRunningError } from "../shared/vm-errors.ts";
import type { SessionRepo } from "../shared/session-repo.ts";

export type { SessionRepo } from "../shared/session-repo.ts";

export const SESSION_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** What the engine needs from the daemon; tests pass fakes that record. */
export interface SessionEngineDeps {
  repo: SessionRepo;
  /** Given to the start operation. */
  host: Host;
  /** Where hook and undo failures are logged. */
  log: Logger;
  /** session:start and session:stop fire from here (each handler's failure is logged, not thrown). */
  hooks?: Pick<HookEngine, "runAll">;
  /** An SSH connection to the VM's guest (host key pinned). */
  dial: (vm: VMRecord) => Promise<GuestSSH>;
  /** The single liveness check of a VM. */
  vmAlive: (vm: VMRecord) => Promise<boolean>;
  /** Why the VM is being stopped on purpose right now ("it was rolled back to box@s1"; "" for a plain stop), or null: a session found ended meanwhile says so. */
  stoppingBecause?: (vmId: string) => string | null;
  getVM: (idOrName: string) => VMRecord | null;
  clock: Clock;
  newId: () => string;
  /** Root of the guest state dirs (default /var/lib/banger/sessions); tests point it at a temp dir. */
  stateRoot?: string;
  /** How long a send may block on a stdin pipe nobody reads (default 10 s). */
  sendTimeoutSeconds?: number;
  /** Random suffix of /tmp/banger-send-* upload paths. */
  randomToken?: () => string;
}

export interface StartSessionParams {
  vmIdOrName: string;
  name?: string;
  command: string;
  args?: string[];
  cwd?: string;
  stdinMode?: SessionStdinMode;
  requiredCommands?: string[];
  /** KEY=VALUE entries, a user (NAME|UID[:GROUP|GID]) and a timeout for the process; not kept in the row. */
  env?: string[];
  user?: string;
  timeoutMs?: number;
}

export interface SendParams {
  vmIdOrName: string;
  sessionIdOrName: string;
  payload: Uint8Array;
}

export interface SendResult {
  bytesWritten: number;
  session: GuestSession;
}

export type LogStream = "stdout" | "stderr";

export interface LogsOptions {
  stream?: LogStream;
  /** Byte offset to read from (0-based). */
  offset?: number;
  /** Most bytes to return in one call (default 1 MiB). */
  limit?: number;
}

export interface LogsResult {
  data: Uint8Array;
  /** The offset the data starts at. */
  offset: number;
  /** Where the next read should start: offset + data.length. */
  nextOffset: number;
}

export interface LogChunk {
  data: Uint8Array;
  /** Offset just past this chunk: resume from here to lose and repeat nothing. */
  nextOffset: number;
}

export interface FollowOptions {
  stream?: LogStream;
  offset?: number;
  signal?: AbortSignal;
  /** Pause before retrying a tail that ended while the session still runs. */
  retryMs?: number;
}

/** Where a follower's output goes. */
export interface OutputHandlers {
  onStdout(data: Uint8Array): void;
  onStderr(data: Uint8Array): void;
  /** The reader's brake on the guest's output (see Backlog): paused while it is behind. */
  flow?(ctl: FlowControl): void;
  /** Resolves once the reader has caught up: what follows a log waits for it before the next chunk. */
  caughtUp?(): Promise<void>;
}

/** startFollow's callbacks: output, and the moment the process runs. */
export interface FollowHandlers extends OutputHandlers {
  /** The process runs and its session is recorded running (with its guest pid); no output is handed over before this. */
  onStart(session: GuestSession): void;
}

export interface StartFollowParams extends StartSessionParams {
  /** Run the command on a terminal of this size (its output is the terminal's, on stdout). */
  pty?: PtySize;
  /** Without a cwd, start in the user's home (as a login does) rather than /. */
  cwdHome?: boolean;
  /** `user` is a default nobody asked for: a guest without that account runs the command as root. */
  userOptional?: boolean;
  /** Kept with the session in the guest (0600: it may hold env values); read back with label(). */
  label?: string;
  /** Stop following (the process runs on). */
  signal?: AbortSignal;
  /** Forget the session (row and guest state dir) once it ended while followed here: its output and exit were handed over. */
  removeWhenDone?: boolean;
}

/** Signals a session's process group can be sent. */
export type SessionSignal = "TERM" | "KILL" | "INT" | "HUP";

const DEFAULT_LOG_LIMIT = 1 << 20;
/** How much of a followed log may wait in the daemon for its reader before the guest's tail is held. */
export const TAIL_BACKLOG_BYTES = 1 << 20;
const ACTIVE: GuestSession["status"][] = ["starting", "running"];

function _bytes(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function _firstLine(s: string): string {
  return s.trim().split("\n")[0]?.trim() ?? "";
}

/**
 * Long-lived guest processes over SSH: start (with preflight), send to a
 * FIFO stdin, read and follow logs from byte offsets, stop/kill, refresh
 * status from the guest. All guest state lives in the session's state dir,
 * so a fresh engine (a restarted daemon) picks up where the last one was.
 */
/** What a session its VM's stop ended records: "its vm stopped", with why when the stop said ("it was rolled back to box@s1"). */
export function vmStoppedReason(why: string): string {
  return why ? `its vm stopped (${why})` : "its vm stopped";
}

export class SessionEngine {
  private readonly _d: SessionEngineDeps;
  private readonly _root: string;
  private readonly _sendChains = new Map<string, Promise<void>>();
  /** Sessions this engine is starting now (listFresh leaves them to their start). */
  private readonly _starting = new Set<string>();

  constructor(deps: SessionEngineDeps) {
    this._d = deps;
    this._root = deps.stateRoot ?? DEFAULT_STATE_ROOT;
  }

  // --- lookup ---

  /** The VM by id or name, or E_VM_NOT_FOUND. */
  vm(vmIdOrName: string): VMRecord {
    const vm = this._d.getVM(vmIdOrName);
    if (!vm) throw new BangerError("E_VM_NOT_FOUND", `vm not found: ${vmIdOrName}`);
    return vm;
  }

  /** A session by id or name within a VM, or E_VM_NOT_FOUND / E_SESSION_NOT_FOUND. */
  get(vmIdOrName: string, sessionIdOrName: string): GuestSession {
    const vm = this.vm(vmIdOrName);
    const s = this._d.repo.find(vm.id, sessionIdOrName);
    // a name no session can have is bad input (exit 2), as a VM's is
    if (!s && !SESSION_NAME_RE.test(sessionIdOrName)) throw _badSessionName(sessionIdOrName);
    if (!s) throw new BangerError("E_SESSION_NOT_FOUND", `no session "${sessionIdOrName}" on vm ${vm.name}`);
    return s;
  }

  /** Sessions of one VM, or of all VMs; as recorded (call refresh for the guest's view). */
  list(vmIdOrName?: string): GuestSession[] {
    if (vmIdOrName === undefined) return this._d.repo.list();
    return this._d.repo.list({ vmId: this.vm(vmIdOrName).id });
  }

  /**
   * A VM's sessions as the guest has them: those recorded running are asked
   * after first, all in one round trip; none is made when none runs or the VM
   * does not (its stop already ended them). A guest that cannot answer (paused,
   * unreachable) leaves the recorded rows.
   */
  async listFresh(vmIdOrName: string): Promise<GuestSession[]> {
    const vm = this.vm(vmIdOrName);
    // "starting" only when no start of this daemon's is making it: one in flight has no pid file yet, and "missing"
    // would end it under its own start; one an earlier daemon was killed in would say starting for ever
    const running = this._d.repo.list({ vmId: vm.id, status: ["running", "starting"] }).filter((x) => x.status === "running" || !this._starting.has(x.id));
    if (running.length > 0 && (await this._d.vmAlive(vm))) {
      await this._refreshAll(vm, running).catch((e) => this._d.log.debug(`session list on vm ${vm.name}: statuses not refreshed: ${errorMessage(e)}`));
    }
    return this._d.repo.list({ vmId: vm.id });
  }

  // --- start ---

  /**
   * Preflight (stage "cwd", then "command"), then launch (stage "launch").
   * A failure records status failed with launchStage/launchMessage and
   * throws an error naming the stage.
   */
  async start(params: StartSessionParams): Promise<GuestSession> {
    const { vm, command, stdinMode } = await this._checkStart(params);
    let session = this._recordStarting(vm, params, command, stdinMode);
    this._starting.add(session.id);
    await faultPoint("session:after-row");

    // Preflight and launch are one operation; a failure records status failed with the stage it reached.
    const at = { stage: "connect" };
    try {
      session = await runOperation({ name: `session start ${session.name} on ${vm.name}`, vm, host: this._d.host, log: this._d.log }, async (op) => {
        const conn = await this._conn(vm);
        await this._preflight(conn, session, params.requiredCommands ?? [], at, params.user);
        at.stage = "launch";
        const pid = await this._launch(conn, session, op, { env: params.env, user: params.user, timeoutMs: params.timeoutMs });
        return this._recordRunning(session, pid);
      });
    } catch (e) {
      this._recordFailed(session, at.stage, e);
    } finally {
      this._starting.delete(session.id);
    }
    await this._fire("session:start", vm, session);
    return session;
  }

  /** Refuse a start before a row exists: no command, a bad stdin mode, a value no shell can carry, a VM that is not running. */
  private async _checkStart(params: StartSessionParams): Promise<{ vm: VMRecord; command: string; stdinMode: SessionStdinMode }> {
    const vm = this.vm(params.vmIdOrName);
    const command = params.command?.trim() ? params.command : "";
    if (!command) throw new BangerError("E_BAD_REQUEST", "session command is empty: pass it after `--`");
    const stdinMode: SessionStdinMode = params.stdinMode ?? "pipe";
    if (stdinMode !== "pipe" && stdinMode !== "closed") {
      throw new BangerError("E_BAD_REQUEST", `stdin mode must be "pipe" or "closed", not "${String(stdinMode)}"`);
    }
    // quote everything now: a value no shell can carry (NUL) is refused before a row exists
    shellJoin([command, ...(params.args ?? []), params.cwd ?? "", ...(params.requiredCommands ?? [])]);
    checkExecOptions({ env: params.env, user: params.user, timeoutMs: params.timeoutMs });
    if (!(await this._d.vmAlive(vm))) {
      throw notRunningError(vm);
    }
    return { vm, command, stdinMode };
  }

  /** The session's row, status starting, under a name that is valid and free on its VM. */
  private _recordStarting(vm: VMRecord, params: StartSessionParams, command: string, stdinMode: SessionStdinMode): GuestSession {
    const id = this._d.newId();
    const name = params.name ?? `session-${id.replace(/[^A-Za-z0-9]/g, "").slice(0, 8)}`;
    if (!SESSION_NAME_RE.test(name)) throw _badSessionName(name);
    const holder = this._d.repo.find(vm.id, name);
    if (holder) {
      // A start that failed before its command ran leaves a record to read, not a name to keep: the retry takes it.
      if (holder.status === "failed" && !holder.startedAt) this._d.repo.delete(holder.id);
      else throw _nameTaken(vm, holder);
    }

    const now = this._now();
    const stateDir = StateDir(id, this._root);
    const paths = sessionPaths(stateDir);
    const session: GuestSession = {
      id,
      vmId: vm.id,
      name,
      backend: BACKEND_SSH,
      command,
      args: params.args ?? [],
      cwd: params.cwd ?? "",
      stdinMode,
      status: "starting",
      guestStateDir: stateDir,
      stdoutLogPath: paths.stdout,
      stderrLogPath: paths.stderr,
      attachable: false,
      reattachable: false,
      launchStage: "",
      launchMessage: "",
      guestPid: 0,
      exitCode: null,
      startedAt: "",
      endedAt: "",
      createdAt: now,
      updatedAt: now,
    };
    this._d.repo.upsert(session);
    return session;
  }

  /** In the guest: the cwd exists (stage "cwd"), and so do the command and every required one (stage "command"). */
  private async _preflight(conn: GuestSSH, session: GuestSession, required: string[], at: { stage: string }, user: string | undefined): Promise<void> {
    if (user !== undefined) {
      at.stage = "user";
      const r = await conn.runScript(UserPreflightScript(user));
      if (r.exitCode !== 0) throw new BangerError("E_BAD_REQUEST", _firstLine(r.stderr) || `no such user in the guest: ${user}`);
    }
    if (session.cwd) {
      at.stage = "cwd";
      const r = await conn.runScript(CWDPreflightScript(session.cwd));
      if (r.exitCode !== 0) throw new BangerError("E_BAD_REQUEST", _firstLine(r.stderr) || `missing cwd: ${session.cwd}`);
    }
    at.stage = "command";
    const wanted = [...new Set([session.command, ...required])];
    const r = await conn.runScript(CommandPreflightScript(wanted, session.cwd || undefined));
    if (r.exitCode !== 0) {
      const missing = r.stderr.trim().split("\n").map((l) => l.trim()).filter(Boolean).join("; ");
      throw new BangerError("E_BAD_REQUEST", missing || `missing command among: ${wanted.join(", ")}`);
    }
  }

  /** Start the command in the guest; returns its pid. From here a failure of the operation stops it again. */
  private async _launch(conn: GuestSSH, session: GuestSession, op: Operation, o: LaunchOptions): Promise<number> {
    const launched = await conn.runScript(LaunchScript(session, o));
    if (launched.exitCode !== 0) throw new BangerError("E_STATE", launched.stderr.trim() || `launch script exited ${launched.exitCode}`);
    op.defer("session process", async () => {
      await conn.runScript(StopScript(session.guestStateDir, 0));
    });
    await faultPoint("session:after-launch");
    const [pidText] = launched.stdout.trim().split(/\s+/);
    const pid = Number(pidText);
    if (!Number.isInteger(pid) || pid <= 0) throw new BangerError("E_STATE", `launch script printed no pid: ${JSON.stringify(launched.stdout)}`);
    return pid;
  }

  private _recordRunning(session: GuestSession, pid: number): GuestSession {
    const t = this._now();
    const pipe = session.stdinMode === "pipe";
    const running: GuestSession = { ...session, status: "running", guestPid: pid, startedAt: t, updatedAt: t, attachable: pipe, reattachable: pipe };
    this._d.repo.upsert(running);
    return running;
  }

  /** Record status failed with the stage reached, and throw an error naming it (E_BAD_REQUEST stays one: the caller asked for something wrong). */
  private _recordFailed(session: GuestSession, stage: string, e: unknown): never {
    const message = errorMessage(e);
    const t = this._now();
    this._d.repo.upsert({ ...session, status: "failed", launchStage: stage, launchMessage: message, endedAt: t, updatedAt: t });
    const code = e instanceof BangerError && e.code === "E_BAD_REQUEST" ? "E_BAD_REQUEST" : "E_STATE";
    throw new BangerError(code, `session ${session.name} failed at stage "${stage}": ${message}`, { cause: e, undoFailures: undoFailuresOf(e) });
  }

  /** Run a session hook; its failures are logged (the session's state is what it is either way). */
  private async _fire(name: "session:start" | "session:stop", vm: VMRecord | null, session: GuestSession): Promise<void> {
    if (!this._d.hooks || !vm) return;
    for (const f of await this._d.hooks.runAll(name, { vm, session })) this._d.log.warn(f.message);
  }

  // --- start and follow on one channel ---

  /**
   * Start a session and follow its output over the same SSH channel: one
   * round trip where start() takes several (preflight, launch, then a tail
   * per stream), for short commands whose latency counts. The process is
   * detached as with start(), so it outlives the channel and the daemon. No
   * preflight: a user or cwd that does not exist fails the start
   * (E_BAD_REQUEST), a missing command exits 127 as in a shell. Resolves with
   * the ended session; when `signal` aborts, with the session as it is (it
   * runs on: follow or refresh it later).
   */
  async startFollow(params: StartFollowParams, h: FollowHandlers): Promise<GuestSession> {
    const { vm, command, stdinMode } = await this._checkStart(params);
    let session = this._recordStarting(vm, params, command, stdinMode);
    const mark = `banger-start-${this._d.randomToken?.() ?? randomBytes(8).toString("hex")}`;
    const o: LaunchOptions = { env: params.env, user: params.user, timeoutMs: params.timeoutMs, pty: params.pty, cwdHome: params.cwdHome, userOptional: params.userOptional };
    const script = new TextEncoder().encode(StartFollowScript(session, o, mark, params.label ?? "", params.removeWhenDone));
    let conn: GuestSSH;
    try {
      conn = await this._conn(vm);
    } catch (e) {
      this._recordFailed(session, "connect", e);
    }

    // Output is held until the session is recorded running, then handed over in order.
    let pending: Array<() => void> | null = [];
    const deliver = (f: () => void) => (pending ? pending.push(f) : f());
    const seen = { stdout: 0, stderr: 0 };
    let control: ((line: string | null) => void) | null = null;
    const controlLine = new Promise<string | null>((r) => (control = r));
    let head: Uint8Array[] | null = [];
    const onStderr = (c: Uint8Array) => {
      if (head === null) {
        seen.stderr += c.length;
        const d = c.slice();
        return deliver(() => h.onStderr(d));
      }
      head.push(c.slice());
      const all = Buffer.concat(head);
      const nl = all.indexOf(10);
      if (nl < 0) return;
      head = null;
      control?.(all.subarray(0, nl).toString("utf8"));
      if (nl + 1 < all.length) onStderr(new Uint8Array(all.subarray(nl + 1)));
    };
    const onStdout = (c: Uint8Array) => {
      seen.stdout += c.length;
      const d = c.slice();
      deliver(() => h.onStdout(d));
    };
    let stopInput!: () => void;
    const inputDone = new Promise<void>((r) => (stopInput = r));
    const stdin: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        yield script;
        // closing it (stopInput) makes the guest stop following
        await inputDone;
      },
    };
    const run = conn.exec(bootstrapCommand(script.length), { stdin, onStdout, onStderr, flow: h.flow ? (ctl) => h.flow!(ctl) : undefined });
    const ran = run.then(
      (code) => ({ code, error: null as unknown }),
      (error: unknown) => ({ code: -1, error }),
    );
    void ran.then(
      () => control?.(null),
      () => control?.(null),
    );

    const line = await controlLine;
    const words = line?.startsWith(`${mark} `) ? line.slice(mark.length + 1).split(" ") : null;
    if (!words || words[0] !== "pid") {
      stopInput();
      const r = await ran;
      const reason = words?.[0] === "failed" ? words.slice(1).join(" ") : line ? _firstLine(line) : r.error ? errorMessage(r.error) : `start script exited ${r.code}`;
      const code = /^no such (user|group|directory)/.test(reason) || reason.startsWith("cannot enter directory") ? "E_BAD_REQUEST" : "E_STATE";
      this._recordFailed(session, "launch", new BangerError(code, reason));
    }
    const pid = Number(words[1]);
    try {
      session = this._recordRunning(session, pid);
    } catch (e) {
      stopInput();
      await conn.runScript(StopScript(session.guestStateDir, 0)).catch(() => {});
      this._recordFailed(session, "launch", e);
    }
    await this._fire("session:start", vm, session);
    h.onStart(session);
    for (const f of pending) f();
    pending = null;

    const signal = params.signal;
    const aborted = new Promise<"aborted">((r) => {
      if (signal?.aborted) r("aborted");
      signal?.addEventListener("abort", () => r("aborted"), { once: true });
    });
    const end = await Promise.race([ran, aborted]);
    stopInput();
    if (end === "aborted") return this._d.repo.get(session.id) ?? session;
    if (end.error === null && end.code >= 0 && end.code < 255) {
      const ended = await this._end(session, "exited", end.code, "");
      // the guest removed its state dir itself (start-follow.sh, CLEANUP)
      if (params.removeWhenDone) this._d.repo.delete(session.id);
      return ended;
    }
    // the channel dropped, or the script could not tell: follow on from what we saw, then ask the guest
    return this.followAll(session, seen, h, signal);
  }

  /**
   * Follow stdout and stderr together from byte offsets until the session
   * ends (or `signal` aborts); resolves with the session as recorded then.
   */
  async followAll(session: GuestSession, from: { stdout: number; stderr: number }, h: OutputHandlers, signal?: AbortSignal): Promise<GuestSession> {
    const pump = async (stream: LogStream, offset: number, out: (d: Uint8Array) => void) => {
      for await (const c of this.follow(session, { stream, offset, signal })) {
        out(c.data);
        await h.caughtUp?.();
      }
    };
    await Promise.all([pump("stdout", from.stdout, (d) => h.onStdout(d)), pump("stderr", from.stderr, (d) => h.onStderr(d))]);
    return this._d.repo.get(session.id) ?? session;
  }

  /** The sizes of a session's logs: where following "from now on" starts. */
  async logSizes(session: GuestSession): Promise<{ stdout: number; stderr: number }> {
    const conn = await this._conn(await this._liveVM(session));
    const chunks: Uint8Array[] = [];
    await conn.exec(LogSizesCommand(session.guestStateDir), { onStdout: (c) => chunks.push(c.slice()) });
    const [o, e] = Buffer.concat(chunks).toString("utf8").trim().split(/\s+/).map(Number);
    return { stdout: Number.isInteger(o) ? o! : 0, stderr: Number.isInteger(e) ? e! : 0 };
  }

  /** The label the session was started with ("" when none). */
  async label(session: GuestSession): Promise<string> {
    const conn = await this._conn(await this._liveVM(session));
    const chunks: Uint8Array[] = [];
    await conn.exec(LabelReadCommand(session.guestStateDir), { onStdout: (c) => chunks.push(c.slice()) });
    return Buffer.concat(chunks).toString("utf8");
  }

  // --- signal, close stdin, resize ---

  /** Send a signal to the session's process group without waiting; false when nothing runs. */
  async signal(session: GuestSession, sig: SessionSignal): Promise<boolean> {
    const conn = await this._conn(await this._liveVM(session));
    const r = await conn.runScript(SignalScript(session.guestStateDir, sig));
    return r.stdout.trim() === "sent";
  }

  /** Close the session's stdin pipe: the process reads EOF once no send is writing. False when its runner is gone. */
  async closeStdin(session: GuestSession): Promise<boolean> {
    if (session.stdinMode !== "pipe") throw new BangerError("E_STATE", `session ${session.name} has no stdin pipe (stdin mode ${session.stdinMode})`);
    const conn = await this._conn(await this._liveVM(session));
    const r = await conn.runScript(CloseStdinScript(session.guestStateDir));
    return r.stdout.trim() === "closed";
  }

  /** Resize a pty session's terminal; false when nothing runs. */
  async resize(session: GuestSession, size: PtySize): Promise<boolean> {
    const conn = await this._conn(await this._liveVM(session));
    const r = await conn.runScript(ResizeScript(session.guestStateDir, size));
    const out = r.stdout.trim();
    if (out === "no terminal") throw new BangerError("E_STATE", `session ${session.name} has no terminal`);
    return out === "resized";
  }

  private async _liveVM(session: GuestSession): Promise<VMRecord> {
    const vm = this._vmOf(session);
    if (!(await this._d.vmAlive(vm))) throw new BangerError("E_STATE", `vm ${vm.name} is not running`);
    return vm;
  }

  // --- send ---

  /**
   * Write a payload to the session's stdin pipe: upload to /tmp/banger-send-*,
   * cat it into the FIFO, rm it. An empty payload dials nothing. Sends to one
   * session run one at a time, in call order.
   */
  async send(params: SendParams): Promise<SendResult> {
    const vm = this.vm(params.vmIdOrName);
    const session = this._d.repo.find(vm.id, params.sessionIdOrName);
    if (!session) throw new BangerError("E_SESSION_NOT_FOUND", `no session "${params.sessionIdOrName}" on vm ${vm.name}`);
    if (session.status !== "running") {
      throw new BangerError("E_STATE", `session ${session.name} is not running (status ${session.status})`);
    }
    if (session.stdinMode !== "pipe") {
      throw new BangerError("E_STATE", `session ${session.name} has no stdin pipe (stdin mode ${session.stdinMode}): start it with --stdin pipe`);
    }
    if (!(await this._d.vmAlive(vm))) {
      throw new BangerError("E_STATE", `vm ${vm.name} is not running, so session ${session.name} is not running`);
    }
    const payload = params.payload ?? new Uint8Array();
    if (payload.length === 0) return { bytesWritten: 0, session };

    const prev = this._sendChains.get(session.id) ?? Promise.resolve();
    const run = prev.then(() => this._sendNow(vm, session, payload));
    const tail = run.then(
      () => {},
      () => {},
    );
    this._sendChains.set(session.id, tail);
    try {
      return await run;
    } finally {
      // Forget the chain once nothing queued behind us, so the map stays small.
      if (this._sendChains.get(session.id) === tail) this._sendChains.delete(session.id);
    }
  }

  private async _sendNow(vm: VMRecord, session: GuestSession, payload: Uint8Array): Promise<SendResult> {
    const token = this._d.randomToken?.() ?? randomBytes(8).toString("hex");
    const upload = `/tmp/banger-send-${token}`;
    const pipe = sessionPaths(session.guestStateDir).pipe;
    const timeout = this._d.sendTimeoutSeconds ?? SEND_TIMEOUT_SECONDS;
    const conn = await this._conn(vm);
    const errChunks: Uint8Array[] = [];
    const script = fastSendable(payload) ? FastSendScript(upload, pipe, timeout, payload.length) : SendScript(upload, pipe, timeout, payload.length);
    await faultPoint("send:before-exec");
    const exitCode = await conn.exec(script, { stdin: faultMidStream("send:mid-upload", payload), onStderr: (c) => errChunks.push(c.slice()) });
    await faultPoint("send:after-exec");
    const r = { exitCode, stderr: Buffer.concat(errChunks).toString("utf8") };
    if (r.exitCode !== 0) {
      // Maybe the process ended under us: say so rather than "timed out".
      const now = await this.refresh(session).catch(() => session);
      if (now.status !== "running") {
        throw new BangerError("E_STATE", `session ${session.name} is not running (status ${now.status}${now.exitCode !== null ? `, exit ${now.exitCode}` : ""})`);
      }
      if (r.exitCode === SEND_TIMEOUT_EXIT) {
        throw new BangerError("E_TIMEOUT", `send to session ${session.name} timed out after ${timeout}s: the process is not reading its stdin`);
      }
      if (r.exitCode === SEND_SHORT_EXIT) {
        throw new BangerError("E_STATE", `send to session ${session.name}: the upload was cut short, nothing was written (${r.stderr.trim()})`);
      }
      if (r.exitCode === SEND_NO_PIPE_EXIT) {
        throw new BangerError("E_STATE", `session ${session.name} has no stdin pipe in the guest (${pipe})`);
      }
      throw new BangerError("E_STATE", `send to session ${session.name} failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
    }
    return { bytesWritten: payload.length, session: this._d.repo.get(session.id) ?? session };
  }

  /**
   * Live stdin for attach: stream `input` into the session's FIFO until it
   * ends. Returns the bytes written.
   */
  async attachInput(session: GuestSession, input: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<number> {
    if (session.status !== "running") throw new BangerError("E_STATE", `session ${session.name} is not running (status ${session.status})`);
    if (session.stdinMode !== "pipe") throw new BangerError("E_STATE", `session ${session.name} has no stdin pipe (stdin mode ${session.stdinMode})`);
    const vm = this._vmOf(session);
    if (!(await this._d.vmAlive(vm))) throw new BangerError("E_STATE", `vm ${vm.name} is not running`);
    let written = 0;
    const counted: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        for await (const c of input) {
          written += c.length;
          yield c;
        }
      },
    };
    const conn = await this._conn(vm);
    const code = await conn.exec(AttachInputCommandForPipe(sessionPaths(session.guestStateDir).pipe), { stdin: counted, signal });
    if (code !== 0) throw new BangerError("E_STATE", `attach input to session ${session.name} ended with exit ${code}`);
    return written;
  }

  // --- status ---

  /**
   * Ask the guest how the session is doing and record it: running, or
   * exited with its exit code and end time; failed when the process is gone
   * without an exit code or the VM is not running.
   */
  async refresh(session: GuestSession): Promise<GuestSession> {
    const current = this._d.repo.get(session.id) ?? session;
    if (!ACTIVE.includes(current.status)) return current;
    const vm = this._d.getVM(current.vmId);
    if (!vm || !(await this._d.vmAlive(vm))) {
      return this._end(current, "failed", null, "", vm ? this._notRunning(vm) : "vm is gone");
    }
    const conn = await this._conn(vm);
    const r = await conn.runScript(StatusScript(current.guestStateDir));
    return this._applyStatus(current, r.stdout, "exited");
  }

  /** Refresh several sessions of one running VM with one status script: its lines answer them in order. */
  private async _refreshAll(vm: VMRecord, sessions: GuestSession[]): Promise<void> {
    const conn = await this._conn(vm);
    const r = await conn.runScript(StatusesScript(sessions.map((s) => s.guestStateDir)));
    const lines = r.stdout.split("\n");
    if (r.exitCode !== 0 || lines.length < sessions.length) throw new BangerError("E_STATE", `status script exited ${r.exitCode}: ${_firstLine(r.stderr) || JSON.stringify(r.stdout)}`);
    for (const [i, s] of sessions.entries()) await this._applyStatus(s, lines[i]!, "exited");
  }

  /**
   * A VM stopped (stop, restart, a crash found, a rollback's stop): its guest processes are gone with it, so
   * every session still recorded starting or running on it ends now, failed with `why` (session:stop fires
   * for each), rather than when someone next asks after it.
   */
  async endForVM(vmId: string, why: string): Promise<GuestSession[]> {
    const out: GuestSession[] = [];
    for (const s of this._d.repo.list({ vmId, status: ACTIVE })) out.push(await this._end(s, "failed", null, "", why));
    return out;
  }

  /** Refresh every session the store says is starting or running (daemon startup reconcile). */
  async reconcile(): Promise<GuestSession[]> {
    const out: GuestSession[] = [];
    for (const s of this._d.repo.list({ status: ACTIVE })) {
      try {
        out.push(await this.refresh(s));
      } catch {
        // An unreachable guest keeps its last known state; the next refresh tries again.
        out.push(s);
      }
    }
    return out;
  }

  private async _applyStatus(s: GuestSession, output: string, endStatus: "exited" | "stopped"): Promise<GuestSession> {
    const words = output.trim().split("\n").pop()?.trim().split(/\s+/) ?? [];
    switch (words[0]) {
      case "running": {
        const pid = Number(words[1]);
        if (s.status === "running" && s.guestPid === pid) return s;
        const t = this._now();
        const pipe = s.stdinMode === "pipe";
        const next: GuestSession = { ...s, status: "running", guestPid: pid, startedAt: s.startedAt || t, updatedAt: t, attachable: pipe, reattachable: pipe };
        this._d.repo.upsert(next);
        return next;
      }
      case "exited": {
        const code = Number(words[1]);
        const mtime = Number(words[2]);
        const endedAt = Number.isFinite(mtime) && mtime > 0 ? new Date(mtime * 1000).toISOString() : "";
        return this._end(s, endStatus, Number.isInteger(code) ? code : null, endedAt);
      }
      case "gone":
        return this._end(s, "failed", null, "", "process is gone and recorded no exit code");
      case "missing":
        return this._end(s, "failed", null, "", "session never started in the guest", "launch");
      default:
        throw new BangerError("E_INTERNAL", `unexpected session status output: ${JSON.stringify(output)}`);
    }
  }

  /**
   * Record that a session ended and fire session:stop, once: only the call
   * that moves the stored row out of starting/running fires (the check and
   * the write run without an await between them, and the row is durable, so
   * a restarted daemon noticing the same end does not fire again).
   */
  private async _end(s: GuestSession, status: GuestSession["status"], exitCode: number | null, endedAt: string, message?: string, stage?: string): Promise<GuestSession> {
    const stored = this._d.repo.get(s.id);
    if (stored && !ACTIVE.includes(stored.status)) return stored; // someone else recorded the end first
    const t = this._now();
    const next: GuestSession = {
      ...s,
      status,
      exitCode,
      endedAt: endedAt || t,
      updatedAt: t,
      attachable: false,
      reattachable: false,
      launchStage: stage ?? s.launchStage,
      launchMessage: message && (stage || !s.launchMessage) ? message : s.launchMessage,
    };
    this._d.repo.upsert(next);
    if (stored) await this._fire("session:stop", this._d.getVM(next.vmId), next);
    return next;
  }

  /** Why a session of a VM that is not running ended: the stop under way, if one is. */
  private _notRunning(vm: VMRecord): string {
    const why = this._d.stoppingBecause?.(vm.id) ?? null;
    return why === null ? "vm is not running" : vmStoppedReason(why);
  }

  // --- stop / kill / remove ---

  /** TERM the session's process group, KILL after graceMs; records status stopped and the exit code. */
  async stop(session: GuestSession, graceMs = 5000): Promise<GuestSession> {
    const current = this._d.repo.get(session.id) ?? session;
    if (!ACTIVE.includes(current.status)) return current;
    const vm = this._d.getVM(current.vmId);
    if (!vm || !(await this._d.vmAlive(vm))) return this._end(current, "failed", null, "", vm ? this._notRunning(vm) : "vm is not running");
    const conn = await this._conn(vm);
    const r = await conn.runScript(StopScript(current.guestStateDir, graceMs));
    return this._applyStatus(current, r.stdout, "stopped");
  }

  /** KILL at once. */
  kill(session: GuestSession): Promise<GuestSession> {
    return this.stop(session, 0);
  }

  /** Forget a session and remove its guest state dir. A running one needs force (it is killed first). */
  async remove(session: GuestSession, opts: { force?: boolean } = {}): Promise<void> {
    let current = this._d.repo.get(session.id) ?? session;
    if (ACTIVE.includes(current.status)) {
      if (!opts.force) throw new BangerError("E_STATE", `session ${current.name} is ${current.status}: stop it first, or remove with --force`);
      current = await this.kill(current);
    }
    const vm = this._d.getVM(current.vmId);
    if (vm && (await this._d.vmAlive(vm))) {
      const conn = await this._conn(vm);
      try {
        await conn.runScript(RemoveScript(current.guestStateDir));
      } catch {
        // Best effort: the record goes either way; a leftover dir is harmless.
      }
    }
    this._d.repo.delete(current.id);
  }

  // --- logs ---

  /** Bytes of stdout/stderr from a byte offset (at most `limit`). */
  async logs(session: GuestSession, opts: LogsOptions = {}): Promise<LogsResult> {
    const offset = Math.max(0, Math.floor(opts.offset ?? 0));
    const vm = this._vmOf(session);
    if (!(await this._d.vmAlive(vm))) throw new BangerError("E_STATE", `vm ${vm.name} is not running: its session logs live in the guest`);
    const path = opts.stream === "stderr" ? session.stderrLogPath : session.stdoutLogPath;
    const chunks: Uint8Array[] = [];
    const conn = await this._conn(vm);
    await conn.exec(LogReadCommand(path, offset, opts.limit ?? DEFAULT_LOG_LIMIT), { onStdout: (c) => chunks.push(c.slice()) });
    const data = _bytes(chunks);
    return { data, offset, nextOffset: offset + data.length };
  }

  /**
   * Follow a log from a byte offset until the session ends (or `signal`
   * aborts): streams new bytes as the guest writes them. Each chunk says
   * where the next read starts, so a reader that reconnects with that offset
   * neither loses nor repeats output.
   */
  async *follow(session: GuestSession, opts: FollowOptions = {}): AsyncGenerator<LogChunk> {
    let offset = Math.max(0, Math.floor(opts.offset ?? 0));
    const stream = opts.stream ?? "stdout";
    let s = this._d.repo.get(session.id) ?? session;
    while (!opts.signal?.aborted) {
      if (s.status === "running") {
        for await (const c of this._tail(s, stream, offset, opts.signal)) {
          offset = c.nextOffset;
          yield c;
        }
        if (opts.signal?.aborted) return;
      }
      s = await this.refresh(s);
      if (s.status !== "running") {
        // Drain what the process wrote before it ended.
        for (;;) {
          const r = await this.logs(s, { stream, offset });
          if (r.data.length === 0) return;
          offset = r.nextOffset;
          yield { data: r.data, nextOffset: offset };
        }
      }
      // The tail ended but the session runs on (a dropped connection): retry from our offset.
      await this._d.clock.sleep(opts.retryMs ?? 200);
    }
  }

  private async *_tail(s: GuestSession, stream: LogStream, offset: number, signal?: AbortSignal): AsyncGenerator<LogChunk> {
    const vm = this._vmOf(s);
    const path = stream === "stderr" ? s.stderrLogPath : s.stdoutLogPath;
    const queue: Uint8Array[] = [];
    // a reader that does not come back for the next chunk (a slow client) holds the guest's tail, not the daemon's memory
    const backlog = new Backlog(TAIL_BACKLOG_BYTES);
    let done = false;
    let wake: (() => void) | null = null;
    const poke = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    // Ending our stdin makes the guest-side watchdog kill the tail.
    let stopInput!: () => void;
    const inputDone = new Promise<void>((r) => (stopInput = r));
    const onAbort = () => {
      stopInput();
      poke();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const stdin: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        await inputDone;
      },
    };
    let conn: GuestSSH;
    try {
      conn = await this._conn(vm);
    } catch (e) {
      signal?.removeEventListener("abort", onAbort);
      throw e;
    }
    // the tail ends when our stdin ends (stopInput) or the connection drops
    void conn
      .exec(AttachTailCommand(path, offset, s.guestPid), {
        stdin,
        onStdout: (c) => {
          queue.push(c.slice());
          backlog.added(c.length);
          poke();
        },
        flow: (ctl) => backlog.flow(ctl),
      })
      .catch(() => 255)
      .finally(() => {
        done = true;
        poke();
      });
    let at = offset;
    try {
      for (;;) {
        if (queue.length > 0) {
          const data = _bytes(queue.splice(0));
          backlog.taken(data.length);
          at += data.length;
          yield { data, nextOffset: at };
          continue;
        }
        if (done || signal?.aborted) break;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      backlog.release();
      stopInput();
    }
  }

  // --- connections ---

  private _vmOf(s: GuestSession): VMRecord {
    const vm = this._d.getVM(s.vmId);
    if (!vm) throw new BangerError("E_VM_NOT_FOUND", `vm ${s.vmId} of session ${s.name} no longer exists`);
    return vm;
  }

  /** The VM's connection; reuse is the dialer's job (the daemon passes its SSHPool). */
  private _conn(vm: VMRecord): Promise<GuestSSH> {
    return this._d.dial(vm);
  }

  private _now(): string {
    return this._d.clock.now().toISOString();
  }
}

function _badSessionName(name: string): BangerError {
  return new BangerError("E_BAD_NAME", `bad session name ${JSON.stringify(name).slice(0, 80)}: use letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)`);
}

function _nameTaken(vm: VMRecord, holder: GuestSession): BangerError {
  const how = ACTIVE.includes(holder.status)
    ? `(${holder.status}): stop it and \`banger session rm ${vm.name} ${holder.name}\`, or pick another name`
    : `(${holder.status}): \`banger session rm ${vm.name} ${holder.name}\` frees the name`;
  return new BangerError("E_NAME_TAKEN", `vm ${vm.name} already has a session named ${holder.name} ${how}`);
}
