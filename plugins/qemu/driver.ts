import { BangerError, faultPoint, shellQuote, type PreparedSave, type SaveOptions, type SaveResult, tempPathFor, guardedProcesses, joinInitrds, kvmUsable, requireBootFiles, sameProcess, type VMHandles, type VMRecord, type Host, type BootConfig, type LaunchOptions, type LaunchResult, type VMMDriver, type KvmProbe, type ProcTarget, vmPaths } from "../../src/plugin-api.ts";
import { basename, dirname, join } from "node:path";
import { mappingsOf, PAGE, privateRamFile, spliceable, spliceDeviceState, splitWholeStream, StreamNotSpliceable, writtenRuns, type Mapping, type SpliceableStream } from "./ram-delta.ts";
import { RECEIVER_IN_SOCK, RECEIVER_SOCK, reapLeftoverReceivers, receiverDiskName, receiverQmpArg } from "./receivers.ts";
import { qemuHaltedBy } from "./halt.ts";
import { savedPorts, memoryBackendArgs, qemuArgs, qmpArg, receiverArgs, type Accel, type RamFile } from "./args.ts";
import { MAX_MIGRATE_BANDWIDTH, qmpExecute, qmpMigrateIn, qmpMigrateOut, qmpPing, qmpPowerdown, qmpQuit, type MigrateOptions } from "./qmp.ts";

export const QEMU_BINARY = "qemu-system-x86_64";

/** What the driver does over QMP; real by default, swapped for a recorder in unit tests. */
export interface QmpOps {
  ping(sock: string, timeoutMs: number): Promise<boolean>;
  powerdown(sock: string, timeoutMs: number): Promise<boolean>;
  quit(sock: string, timeoutMs: number): Promise<boolean>;
  /** One QMP command; resolves with its `return` value, throws when QEMU refuses it. */
  command(sock: string, command: string, timeoutMs: number, args?: Record<string, unknown>): Promise<unknown>;
  /** Migrate out to an exec: URI and wait until done. */
  migrateOut(sock: string, uri: string, timeoutMs: number, o?: MigrateOptions): Promise<void>;
  /** Migrate in (the QEMU waits with -incoming defer) and wait until done. */
  migrateIn(sock: string, uri: string, timeoutMs: number, o?: MigrateOptions): Promise<void>;
}

export interface QemuDriverOptions {
  /** Binary name or path (default qemu-system-x86_64 on PATH). */
  binary?: string;
  /** Force an accelerator; default: probe with kvmUsable (BANGER_ACCEL overrides). */
  accel?: Accel;
  /** Probe used when accel is not forced (tests inject a fake). */
  probe?: () => Promise<KvmProbe>;
  qmp?: QmpOps;
  /** How long launch waits for the QMP socket to answer (default 15 s). */
  launchTimeoutMs?: number;
  /** Poll interval while waiting for the socket or for the process to exit (default 50 ms). */
  pollMs?: number;
  /** How long to wait after QMP quit / SIGKILL before giving up (default 3 s). */
  exitWaitMs?: number;
  /** Where the driver says how it saved a snapshot's RAM (by delta, or why not). */
  log?: (line: string) => void;
}

const realQmp: QmpOps = {
  ping: qmpPing,
  powerdown: qmpPowerdown,
  quit: qmpQuit,
  command: (sock, command, timeoutMs, args) => qmpExecute(sock, command, args, timeoutMs),
  migrateOut: qmpMigrateOut,
  migrateIn: qmpMigrateIn,
};

/**
 * The guest RAM file beside a snapshot's device state (STATE_FILE). Present:
 * the state file holds device state only (x-ignore-shared) and a restore maps
 * this file copy-on-write; absent: the state file is a whole migration stream.
 */
export const SNAPSHOT_RAM_FILE = "memory.ram";
/**
 * The saved VM's launch argv beside a snapshot's state file: a restore gives its QEMU the devices the state has
 * (the guest agent's port, which VMs launched before it existed lack). Absent (an older snapshot): no agent port.
 */
export const SNAPSHOT_ARGV_FILE = "qemu-argv.json";
/** A receiver loads 256 MiB-few GiB from its VM and saves a few hundred KiB: minutes at most, even on a loaded TCG host. */
const _RECEIVER_MAX_S = 600;

/** How long a state save or load may take (a few hundred MiB through a pipe). */
const _MIGRATE_TIMEOUT_MS = 120_000;

/** query-status values in which the guest's vCPUs do not run (QEMU's RunState); the rest count as running. */
const _STOPPED_STATUSES = new Set(["paused", "postmigrate", "inmigrate", "prelaunch", "finish-migrate", "save-vm", "restore-vm", "suspended"]);

/** Per-VM files the QEMU driver uses, derived from VMDir / VMRuntime. */
export function qemuPaths(vm: VMRecord) {
  const dir = vm.runtime.vmDir;
  const p = vmPaths(dir);
  return {
    qmpSock: vm.runtime.apiSockPath || p.apiSock,
    serialLog: vm.runtime.logPath || p.serialLog,
    pidfile: join(dir, "qemu.pid"),
    qemuLog: join(dir, "qemu.log"),
    initrd: join(dir, "initrd.img"),
    /** The argv this VM's qemu was launched with (before restore-only options): a snapshot's receiver is made from it. */
    launchArgs: join(dir, "qemu-argv.json"),
    /** A snapshot's receiver qemu (see _prepareReceiver): its QMP socket, its log, its disk stand-ins. */
    receiverSock: join(dir, RECEIVER_SOCK),
    /** Where it listens for the VM's migration stream. */
    receiverIn: join(dir, RECEIVER_IN_SOCK),
    receiverLog: join(dir, "receiver.log"),
    receiverDisk: (i: number) => join(dir, receiverDiskName(i)),
    /**
     * Links to the RAM file and stream of the snapshot the VM was restored from, which its QEMU maps (RAM) and a
     * save by delta splices into (stream): a `snapshot rm` meanwhile leaves them to the VM (see _keepRestoredFrom).
     */
    restoredRam: join(dir, "restored.ram"),
    restoredState: join(dir, "restored.mig"),
    /** The guest agent port's chardev (FIFOs `.in`, `.out`): vmPaths' agentPipe, where the guest plugin looks. */
    agentPipe: p.agentPipe,
    /** The exec agent port's chardev, likewise (vmPaths' execPipe). */
    execPipe: p.execPipe,
  };
}

// sockaddr_un.sun_path is 108 bytes including the NUL
const _MAX_SOCK_PATH = 107;

/** What the driver's steps share. */
interface _Qemu {
  host: Host;
  opts: QemuDriverOptions;
  qmp: QmpOps;
  pollMs: number;
  exitWaitMs: number;
  probe: () => Promise<KvmProbe>;
  guard: ReturnType<typeof guardedProcesses>;
  /**
   * For a process just sent SIGKILL (a VM killed by `vm delete --force` or `vm run --rm`, a snapshot's receiver): gone
   * within a few ms, with a command waiting for it, so looked at every few ms, not every pollMs.
   */
  killedGuard: ReturnType<typeof guardedProcesses>;
}

async function _accel(q: _Qemu): Promise<Accel> {
  if (q.opts.accel) return q.opts.accel;
  return (await q.probe()).usable ? "kvm" : "tcg";
}

async function _findProcess(q: _Qemu, vm: VMRecord): Promise<{ pid: number; startTime: number } | null> {
  const { qmpSock } = qemuPaths(vm);
  const needle = qmpArg(qmpSock);
  const found = await q.host.procs.find(qmpSock);
  const p = found.find((p) => (p.cmdline[0] ?? "").includes("qemu") && p.cmdline.includes(needle));
  return p ? { pid: p.pid, startTime: p.startTime } : null;
}

async function _lastLogLine(q: _Qemu, path: string): Promise<string> {
  const text = (await q.host.fs.readText(path)) ?? "";
  // skip the command line banger wrote at the top: the error is what qemu said
  return text.trimEnd().split("\n").filter((l) => !l.startsWith("# ")).at(-1)?.trim() ?? "";
}

/** What a VM's qemu leaves in its dir once gone: its QMP socket and the agents' ports' FIFOs (the next launch makes new ones). */
async function _removeSocket(q: _Qemu, vm: VMRecord): Promise<void> {
  const p = qemuPaths(vm);
  for (const f of [p.qmpSock, ..._agentFifos(p)]) await q.host.fs.rmrf(f);
}

/** Refuse before anything is touched: no qemu, a socket path too long, a missing boot file, a VM already running. Returns the binary. */
async function _preflight(q: _Qemu, vm: VMRecord, boot: BootConfig): Promise<string> {
  const bin = await q.host.exec.which(q.opts.binary ?? QEMU_BINARY);
  if (!bin) {
    throw new BangerError("E_MISSING_TOOL", "qemu-system-x86_64 not found: install qemu-system-x86 (run `banger doctor`)");
  }
  const p = qemuPaths(vm);
  if (Buffer.byteLength(p.qmpSock) > _MAX_SOCK_PATH) {
    throw new BangerError("E_BAD_REQUEST", `API socket path is too long for a unix socket (${Buffer.byteLength(p.qmpSock)} > ${_MAX_SOCK_PATH} bytes): ${p.qmpSock}; use a shorter BANGER_HOME`);
  }
  if (!(await q.host.fs.exists(boot.kernelPath))) {
    throw new BangerError("E_NOT_FOUND", `kernel not found: ${boot.kernelPath} (rebuild the image: banger image build)`);
  }
  await requireBootFiles(q.host, boot);
  const running = await _findProcess(q, vm);
  if (running) {
    throw new BangerError("E_STATE", `${vm.name} already has a qemu process (pid ${running.pid}) on ${p.qmpSock}`);
  }
  return bin;
}

/** Start qemu detached, its command line at the top of its log; returns its pid. */
async function _spawnQemu(q: _Qemu, vm: VMRecord, boot: BootConfig, bin: string, o: { restoring: boolean; ramFile?: RamFile; ports: Ports }): Promise<number> {
  const p = qemuPaths(vm);
  let initrd: string | undefined;
  if (boot.initrdPaths.length > 1) {
    await joinInitrds(q.host, p.initrd, boot.initrdPaths);
    initrd = p.initrd;
  }
  const pipes = { agentPipe: o.ports.agent ? p.agentPipe : undefined, execPipe: o.ports.exec ? p.execPipe : undefined };
  await _makeAgentFifos(q, pipes);
  const base = qemuArgs(vm, boot, { accel: await _accel(q), qmpSock: p.qmpSock, pidfile: p.pidfile, serialLog: p.serialLog, initrd, ...pipes });
  // a snapshot's receiver copies these (written before the process exists: a VM running has them)
  await q.host.fs.writeAtomic(p.launchArgs, JSON.stringify(base) + "\n", 0o600);
  const args = [...base];
  if (o.ramFile) args.push(...memoryBackendArgs(vm.spec.memoryMiB, o.ramFile));
  // a restore: wait for the state over QMP (-incoming defer), and stay stopped (-S) until it is all in
  if (o.restoring) args.push("-incoming", "defer", "-S");
  // a stale socket from an earlier run would make the readiness probe lie (or qemu fail to bind)
  await q.host.fs.rmrf(p.qmpSock);
  await q.host.fs.rmrf(p.pidfile);
  await q.host.fs.writeAtomic(p.qemuLog, `# ${bin} ${args.join(" ")}\n`, 0o600);
  return q.host.exec.spawnDetached(bin, args, { cwd: vm.runtime.vmDir, logPath: p.qemuLog });
}

/** Which of the agents' ports a QEMU gets (the guest agent's, the exec agent's). */
type Ports = { agent: boolean; exec: boolean };

/** The FIFOs QEMU's pipe chardevs at these paths open (`.in`: what the host writes, `.out`: what the guest writes). */
function _agentFifos(pipes: { agentPipe?: string; execPipe?: string }): string[] {
  return [pipes.agentPipe, pipes.execPipe].flatMap((pipe) => (pipe ? [`${pipe}.in`, `${pipe}.out`] : []));
}

/** The agents' ports' FIFOs, new (what an earlier QEMU left unread in old ones is not this guest's to see). */
async function _makeAgentFifos(q: _Qemu, pipes: { agentPipe?: string; execPipe?: string }): Promise<void> {
  const ends = _agentFifos(pipes);
  if (ends.length === 0) return;
  for (const f of ends) await q.host.fs.rmrf(f);
  await q.host.exec.run("mkfifo", ["-m", "600", ...ends]);
}

/** The agents' ports the VM a saved state came from had (see SNAPSHOT_ARGV_FILE); none for an older snapshot. */
async function _portsSaved(q: _Qemu, statePath: string): Promise<Ports> {
  const text = await q.host.fs.readText(join(dirname(statePath), SNAPSHOT_ARGV_FILE));
  if (!text) return { agent: false, exec: false };
  try {
    return savedPorts(JSON.parse(text) as string[]);
  } catch {
    return { agent: false, exec: false };
  }
}

/**
 * Ask `done` every `everyMs` until it says so; what it throws is the error. Past `timeoutMs` (the host's clock),
 * `timedOut` makes the error instead (having undone what it must).
 */
async function _pollUntil(q: _Qemu, o: { everyMs: number; timeoutMs: number }, done: () => Promise<boolean>, timedOut: () => Promise<Error> | Error): Promise<void> {
  const deadline = q.host.clock.now().getTime() + o.timeoutMs;
  for (;;) {
    if (await done()) return;
    if (q.host.clock.now().getTime() >= deadline) throw await timedOut();
    await q.host.clock.sleep(o.everyMs);
  }
}

/** How often a disk's stream job is looked at: it copies what its layers hold, tens of ms for a few MiB. */
const _STREAM_POLL_MS = 20;

interface _BlockJob {
  device: string;
  status: string;
  error?: string;
}

/** Our disk jobs' ids: `banger-stream-disk<index>`. */
const _STREAM_JOB = "banger-stream-disk";

/** QEMU's block jobs on the VM at `sock`. */
async function _blockJobs(q: _Qemu, sock: string): Promise<_BlockJob[]> {
  const jobs = await q.qmp.command(sock, "query-block-jobs", 5000);
  return Array.isArray(jobs) ? (jobs as _BlockJob[]) : [];
}

/**
 * Until job `id` has concluded (block-job-cancel on `signal`), then dismissed: its error, "cancelled", or
 * undefined. A concluded job that is not dismissed still holds its drive (`blockdev-snapshot-sync`: "block
 * device is in use by block job").
 */
async function _jobEnded(q: _Qemu, vm: VMRecord, sock: string, id: string, signal?: AbortSignal): Promise<string | undefined> {
  let cancelled = false;
  for (;;) {
    const j = (await _blockJobs(q, sock)).find((x) => x.device === id);
    if (!j) throw new BangerError("E_INTERNAL", `vm ${vm.name}: QEMU lost its disk job ${id}`);
    if (j.status === "concluded") {
      await q.qmp.command(sock, "job-dismiss", 5000, { id });
      return j.error ?? (cancelled ? "cancelled" : undefined);
    }
    if (signal?.aborted && !cancelled) {
      cancelled = true;
      await q.qmp.command(sock, "block-job-cancel", 5000, { device: id });
    }
    await q.host.clock.sleep(_STREAM_POLL_MS);
  }
}

/**
 * The disk jobs of ours a killed daemon left (their daemon died before it dismissed them): each waited for and
 * dismissed, so nothing holds the drives a snapshot switches. Their outcome is QEMU's to apply: a stream that
 * ended well has shortened its chain, one that failed left it as it was.
 */
async function _settleDiskJobs(q: _Qemu, vm: VMRecord): Promise<void> {
  const sock = qemuPaths(vm).qmpSock;
  for (const j of await _blockJobs(q, sock)) {
    if (!j.device.startsWith(_STREAM_JOB)) continue;
    const error = await _jobEnded(q, vm, sock, j.device);
    q.opts.log?.(`vm ${vm.name}: a disk job a killed daemon left (${j.device}) ${error ? `failed: ${error}` : "ended"}; dismissed`);
  }
}

/**
 * block-stream of drive disk<index> down to `base`: QEMU copies into the file the drive writes every cluster its
 * layers above `base` hold and then names `base.name` (relative: a chain's files share one dir) as its backing,
 * with base's format. The guest runs on and reads the same bytes throughout; a QEMU that dies midway leaves the
 * drive's file valid over its old chain (the header changes last). The job is not dismissed by itself, so its
 * end and error are read here; one of ours a killed daemon left is settled first.
 */
async function _streamDisk(q: _Qemu, vm: VMRecord, index: number, base: { path: string; name: string }, signal?: AbortSignal): Promise<void> {
  const sock = qemuPaths(vm).qmpSock;
  const id = `${_STREAM_JOB}${index}`;
  await _settleDiskJobs(q, vm);
  await q.qmp.command(sock, "block-stream", 10_000, { "job-id": id, device: `disk${index}`, base: base.path, "backing-file": base.name, "auto-dismiss": false });
  await faultPoint("snapshot:streaming");
  const error = await _jobEnded(q, vm, sock, id, signal);
  if (error) throw new BangerError("E_STATE", `vm ${vm.name}: streaming disk ${index} down to ${base.name} failed: ${error}`);
}

/**
 * How often a freshly spawned qemu's socket is looked for: it answers 40-60 ms after the spawn under TCG, and a clone's
 * or a snapshot's path waits for it (a stat costs next to nothing).
 */
const _QMP_UP_POLL_MS = 5;
/** How long one connection waits for a launching QEMU's greeting before it is tried again (its process looked at in between). */
const _QMP_GREETING_WAIT_MS = 5000;

/**
 * Until a freshly spawned qemu (`who`, its log `log`) answers on `sock`: its exit first is the error, with its
 * log's last line (qemu's last word names what is wrong; the whole log stays in the file). Returns its start time.
 */
async function _untilQmpUp(q: _Qemu, pid: number, sock: string, log: string, who: { exited: string; silent: string }): Promise<number> {
  const info = await q.host.procs.info(pid);
  const timeoutMs = q.opts.launchTimeoutMs ?? 15000;
  let startTime = info?.startTime ?? 0;
  const why = async () => {
    const line = await _lastLogLine(q, log);
    return line ? `: ${line}` : "";
  };
  const deadline = q.host.clock.now().getTime() + timeoutMs;
  await _pollUntil(
    q,
    { everyMs: Math.min(q.pollMs, _QMP_UP_POLL_MS), timeoutMs },
    async () => {
      const now = await sameProcess(q.host.procs, pid, info?.startTime ?? 0);
      if (!now) throw new BangerError("E_INTERNAL", `${who.exited}${await why()} (log: ${log})`);
      startTime = now.startTime;
      // QEMU makes its socket early and answers on it once its main loop runs: no connection before the socket
      // exists (a refused one cost the daemon as much as a ping), then one that waits for the greeting (one per
      // 500 ms cost a clone several under load, each a handshake for both sides); QEMU dying closes it at once
      if (!(await q.host.fs.exists(sock))) return false;
      const left = deadline - q.host.clock.now().getTime();
      return q.qmp.ping(sock, Math.max(500, Math.min(left, _QMP_GREETING_WAIT_MS)));
    },
    async () => {
      // nothing may outlive a launch that failed
      await q.guard.killGuarded({ pid, startTime });
      return new BangerError("E_TIMEOUT", `${who.silent} within ${timeoutMs} ms${await why()} (log: ${log})`);
    },
  );
  return startTime;
}

/** Until QMP answers: qemu exiting first, or the deadline passing (then it is killed), is the launch's error. */
async function _waitForQmp(q: _Qemu, vm: VMRecord, pid: number): Promise<LaunchResult> {
  const p = qemuPaths(vm);
  const startTime = await _untilQmpUp(q, pid, p.qmpSock, p.qemuLog, { exited: "qemu exited during launch", silent: "qemu's QMP socket did not answer" });
  return { pid, pidStartTime: startTime };
}

/** The snapshot's RAM file beside its state file, if the snapshot has one (see SNAPSHOT_RAM_FILE). */
async function _ramFileFor(q: _Qemu, statePath: string): Promise<string | null> {
  const ram = join(dirname(statePath), SNAPSHOT_RAM_FILE);
  return (await q.host.fs.exists(ram)) ? ram : null;
}

/**
 * The RAM file a restore maps, linked into the VM's dir with the snapshot's stream beside it (restoredRam,
 * restoredState): removing the snapshot while the VM runs on it then leaves the VM both (QEMU would keep a
 * deleted file's mapping, but the next save by delta needs the stream and the file's name). The snapshot's own
 * file where it cannot be linked (another filesystem); null, with the links of an earlier restore removed, when
 * there is no RAM file (a boot, a whole-stream snapshot).
 */
async function _keepRestoredFrom(q: _Qemu, vm: VMRecord, statePath: string | undefined): Promise<string | null> {
  const p = qemuPaths(vm);
  for (const f of [p.restoredRam, p.restoredState]) await q.host.fs.rmrf(f);
  const ram = statePath ? await _ramFileFor(q, statePath) : null;
  if (!statePath || !ram) return null;
  try {
    await q.host.fs.link(statePath, p.restoredState);
    await q.host.fs.link(ram, p.restoredRam);
    return p.restoredRam;
  } catch {
    for (const f of [p.restoredRam, p.restoredState]) await q.host.fs.rmrf(f);
    return ram;
  }
}

/** The stream beside a RAM file a VM maps: its link's (restoredState) or its snapshot's (`name` beside it). */
function _streamBeside(vm: VMRecord, ramFile: string, name: string): string {
  const p = qemuPaths(vm);
  return ramFile === p.restoredRam ? p.restoredState : join(dirname(ramFile), name);
}

/** Load saved state into a QEMU waiting with -incoming defer -S, then let it run. */
async function _restoreState(q: _Qemu, vm: VMRecord, statePath: string, ramFile: string | null): Promise<void> {
  if (!(await q.host.fs.exists(statePath))) throw new BangerError("E_NOT_FOUND", `saved state not found: ${statePath}`);
  const sock = qemuPaths(vm).qmpSock;
  // device state only: the RAM is the file this qemu maps, which the stream must not be expected to carry
  await q.qmp.migrateIn(sock, `exec:cat ${shellQuote(statePath)}`, _MIGRATE_TIMEOUT_MS, ramFile ? { capabilities: { "x-ignore-shared": true } } : {});
  await q.qmp.command(sock, "cont", 2000);
}

/** `exec:` URI that writes a migration stream to a temp renamed into place: the file is whole once it exists. */
function _toFileUri(path: string): { uri: string; tmp: string } {
  const tmp = tempPathFor(path);
  return { uri: `exec:cat > ${shellQuote(tmp)} && mv ${shellQuote(tmp)} ${shellQuote(path)}`, tmp };
}

/** How often _untilWritten looks: it runs while the guest is frozen, so a whole launch poll period (50 ms) would be freeze. */
const _WRITTEN_POLL_MS = 2;

/** QEMU reports "completed" when it has written the stream, possibly before cat (and mv) have. */
async function _untilWritten(q: _Qemu, path: string, tmp: string): Promise<void> {
  await _pollUntil(q, { everyMs: Math.min(q.pollMs, _WRITTEN_POLL_MS), timeoutMs: 10_000 }, () => q.host.fs.exists(path), async () => {
    await q.host.fs.rmrf(tmp);
    return new BangerError("E_TIMEOUT", `qemu's state stream did not reach ${path}`);
  });
}

/**
 * A whole migration stream (RAM and devices) of a VM that stops for all of it (one on a tap, or launched before
 * its argv was recorded). The finish, the VM running again, splits the guest's RAM out of it into `memory.ram`
 * (splitWholeStream): its clones then map that file as any snapshot's, sharing its pages, and their own snapshots
 * are saved by delta. A stream the split does not take stays whole (restored as before), with the reason logged.
 */
async function _saveWholeStream(q: _Qemu, vm: VMRecord, path: string): Promise<SaveResult> {
  const sock = qemuPaths(vm).qmpSock;
  const status = (await q.qmp.command(sock, "query-status", 2000)) as { status?: unknown } | undefined;
  if (status?.status === "running") await q.qmp.command(sock, "stop", 2000);
  await _leavePostmigrate(q, vm, sock, status?.status);
  const stoppedAt = q.host.clock.now().getTime();
  const { uri, tmp } = _toFileUri(path);
  await q.qmp.migrateOut(sock, uri, _MIGRATE_TIMEOUT_MS);
  await _untilWritten(q, path, tmp);
  return { frozenMs: q.host.clock.now().getTime() - stoppedAt, finish: _finishOnce(() => _splitRamOut(q, vm, path)) };
}

/**
 * QEMU 7.2 will not migrate a VM that has stayed stopped since its last migration out (run state `postmigrate`:
 * a paused VM snapshotted before; "Can't migrate the vm that was paused due to previous migration"), and no
 * command takes it from there to paused but a run: it runs for an instant (cont, then stop) first. A paused VM's
 * second and later snapshots cost that; its first does not.
 */
async function _leavePostmigrate(q: _Qemu, vm: VMRecord, sock: string, status: unknown): Promise<void> {
  if (status !== "postmigrate") return;
  await q.qmp.command(sock, "cont", 2000);
  await q.qmp.command(sock, "stop", 2000);
  q.opts.log?.(`vm ${vm.name}: stopped since its last save, which QEMU will not save again as it is: run for an instant and stopped`);
}

/**
 * A save's `finish`, run at most once: a snapshot that fails after it has run calls it again among its undos, and
 * a second run would find its files moved on (the stream rewritten, the receiver gone).
 */
function _finishOnce(finish: () => Promise<void>): () => Promise<void> {
  let started = false;
  return async () => {
    if (started) return;
    started = true;
    await finish();
  };
}

/** The largest whole stream _splitRamOut reads: a guest with more RAM in use keeps it in its stream. */
const _SPLIT_MAX_BYTES = 512 * 1024 * 1024;

/** The guest's RAM out of a whole stream at `path` into `memory.ram` beside it, the stream rewritten to go with it (see _saveWholeStream). */
async function _splitRamOut(q: _Qemu, vm: VMRecord, path: string): Promise<void> {
  const ramFile = join(dirname(path), SNAPSHOT_RAM_FILE);
  let split: ReturnType<typeof splitWholeStream>;
  // read whole into the daemon's memory: past this, the stream stays as it is rather than swell the daemon
  const size = (await q.host.fs.stat(path))?.size ?? 0;
  if (size > _SPLIT_MAX_BYTES) {
    q.opts.log?.(`vm ${vm.name}: its snapshot keeps its RAM in its stream: ${size} bytes, more than the ${_SPLIT_MAX_BYTES} split here`);
    return;
  }
  const whole = await q.host.fs.readBytes(path);
  try {
    split = splitWholeStream(whole);
  } catch (e) {
    if (!(e instanceof StreamNotSpliceable)) throw e;
    q.opts.log?.(`vm ${vm.name}: its snapshot keeps its RAM in its stream: ${e.message}`);
    return;
  }
  try {
    await q.host.exec.run("truncate", ["-s", String(vm.spec.memoryMiB * 1024 * 1024), ramFile]);
    await q.host.fs.writeRanges(ramFile, split.pages.map((p) => ({ offset: p.offset, data: p.fill === undefined ? whole.subarray(p.at, p.at + PAGE) : new Uint8Array(PAGE).fill(p.fill) })));
    // the RAM file first, then the stream that needs it: a restore takes memory.ram's presence to mean the latter
    await q.host.fs.writeAtomic(path, split.stream, 0o600);
  } catch (e) {
    await q.host.fs.rmrf(ramFile);
    throw e;
  }
  q.opts.log?.(`vm ${vm.name}: its snapshot's RAM split out of its stream: ${split.pages.length} pages (${((split.pages.length * PAGE) / 1048576).toFixed(1)} MiB) in ${SNAPSHOT_RAM_FILE}`);
}

/** A receiver a killed daemon may have left (its QMP socket is in the VM's dir): killed before another is made. */
async function _reapReceiver(q: _Qemu, vm: VMRecord): Promise<void> {
  for (const t of await _receiverProcs(q, vm)) await _killAndWait(q, t);
}

/** The VM's receiver qemu processes (its QMP socket is the VM's RECEIVER_SOCK; its `timeout` watchdog is not one). */
async function _receiverProcs(q: _Qemu, vm: VMRecord): Promise<ProcTarget[]> {
  const sock = qemuPaths(vm).receiverSock;
  const needle = qmpArg(sock);
  return (await q.host.procs.find(sock)).filter((p) => receiverQmpArg(p.cmdline) === needle).map((p) => ({ pid: p.pid, startTime: p.startTime }));
}

/** SIGKILL to a VM's receiver qemu and to its watchdogs in `spawned` (by pid and start time), without waiting for them to go. */
async function _signalReceiver(q: _Qemu, vm: VMRecord, spawned: readonly ProcTarget[]): Promise<void> {
  for (const t of await _receiverProcs(q, vm)) await q.killedGuard.killGuarded(t);
  for (const t of spawned) await q.killedGuard.killGuarded(t);
}

/**
 * A snapshot as a RAM file plus device state, made ready while the VM runs:
 * a receiver qemu (the VM's own argv, RAM a shared memfd, see receiverArgs)
 * is started and listens for a migration on RECEIVER_IN_SOCK. The save
 * (save()) stops the VM and migrates it straight into the receiver; with
 * `runOn` and a VM QEMU can background-snapshot (anonymous RAM), the guest
 * runs again once its RAM is write-protected, 20-50 ms after the stop, while
 * the RAM streams. `finish` then waits until the receiver has it all, has
 * the receiver save its device state only (x-ignore-shared: the RAM is
 * shared) to `path`, copies its RAM, sparse, to `memory.ram` beside `path`,
 * and kills it. Either step failing fails the snapshot, the receiver killed
 * and its files removed; `finish` runs once.
 *
 * The stream is loaded as it comes, not written to a file and read back:
 * that took a 256 MiB guest's snapshot ~0.2 s longer. Not a live (precopy)
 * migration: that stopped the VM for only 5-12 ms, but 1 rollback in 6 of
 * such snapshots of a busy TCG guest panicked in a stress loop (a guest
 * kernel oops right after the restore; cause not found), none of the
 * stopped or background ones.
 */
async function _prepareReceiver(q: _Qemu, vm: VMRecord, launchArgs: string[], path: string): Promise<PreparedSave> {
  const p = qemuPaths(vm);
  const bin = await q.host.exec.which(q.opts.binary ?? QEMU_BINARY);
  if (!bin) throw new BangerError("E_MISSING_TOOL", "qemu-system-x86_64 not found: install qemu-system-x86 (run `banger doctor`)");
  await _reapReceiver(q, vm);
  const placeholders: string[] = [];
  const spawned: ProcTarget[] = [];
  const ramFile = join(dirname(path), SNAPSHOT_RAM_FILE);
  let ended = false;
  // waited for when the snapshot fails (nothing of it may outlive the failure); only signalled when it is whole
  const end = async (ok: boolean) => {
    if (ended) return;
    ended = true;
    if (ok) await _signalReceiver(q, vm, spawned);
    else {
      // a save that failed after its stream began (the stream itself goes on): killed midway, it would leave the guest stuck
      await _untilSaveStreamed(q, p.qmpSock);
      await _reapReceiver(q, vm);
      for (const t of spawned) await _killAndWait(q, t);
      await q.host.fs.rmrf(ramFile);
    }
    for (const f of [p.receiverSock, p.receiverIn, ...placeholders]) await q.host.fs.rmrf(f);
  };
  try {
    const blocks = (await q.qmp.command(p.qmpSock, "query-block", 2000)) as { device?: string; inserted?: { image?: { "virtual-size"?: number } } }[];
    const driveIds = launchArgs.flatMap((a, i) => (launchArgs[i - 1] === "-drive" ? [/^id=([^,]+),/.exec(a)?.[1] ?? ""] : []));
    for (const [i, id] of driveIds.entries()) {
      const size = blocks.find((b) => b.device === id)?.inserted?.image?.["virtual-size"];
      if (!size) throw new BangerError("E_INTERNAL", `qemu did not report the size of ${vm.name}'s disk ${id}`);
      placeholders.push(p.receiverDisk(i));
      await q.host.exec.run("truncate", ["-s", String(size), p.receiverDisk(i)]);
    }
    const args = receiverArgs(launchArgs, { qmpSock: p.receiverSock, memoryMiB: vm.spec.memoryMiB, placeholders });
    for (const f of [p.receiverSock, p.receiverIn]) await q.host.fs.rmrf(f);
    await q.host.fs.writeAtomic(p.receiverLog, `# ${bin} ${args.join(" ")}\n`, 0o600);
    // under a watchdog: a daemon killed meanwhile leaves it for at most _RECEIVER_MAX_S (the next daemon's start reaps it sooner: receivers.ts)
    const pid = await q.host.exec.spawnDetached("timeout", ["-s", "KILL", String(_RECEIVER_MAX_S), bin, ...args], { cwd: vm.runtime.vmDir, logPath: p.receiverLog });
    spawned.push({ pid, startTime: (await q.host.procs.info(pid))?.startTime ?? 0 });
    await _untilQmpUp(q, pid, p.receiverSock, p.receiverLog, { exited: "the snapshot's receiver qemu exited", silent: "the snapshot's receiver qemu did not answer" });
    // listening from here on (the path goes to QEMU as it is: a QMP string, not a command line)
    await q.qmp.command(p.receiverSock, "migrate-incoming", 2000, { uri: `unix:${p.receiverIn}` });
  } catch (e) {
    await end(false);
    throw e;
  }
  return {
    abandon: () => end(false),
    async save(o: SaveOptions = {}) {
      try {
        const status = (await q.qmp.command(p.qmpSock, "query-status", 2000)) as { status?: unknown } | undefined;
        // stopped by the caller with its disks taken, to run on: QEMU may let it run while its RAM streams
        const background = !!o.runOn && status?.status !== "running" && (await _backgroundCapable(q, p.qmpSock));
        if (status?.status === "running") await q.qmp.command(p.qmpSock, "stop", 2000);
        await _leavePostmigrate(q, vm, p.qmpSock, status?.status);
        const stoppedAt = q.host.clock.now().getTime();
        // all of the VM's RAM goes in the stream: a restored VM still has x-ignore-shared on from its restore
        const uri = `unix:${p.receiverIn}`;
        if (background) {
          await q.qmp.command(p.qmpSock, "migrate-set-parameters", 2000, { "max-bandwidth": MAX_MIGRATE_BANDWIDTH });
          await q.qmp.command(p.qmpSock, "migrate", 10_000, { uri });
          await _untilGuestRuns(q, p.qmpSock);
          // the guest runs again, its RAM streaming into the receiver
          await faultPoint("snapshot:ram-streaming");
        } else {
          // background-snapshot off again: an earlier snapshot may have left it on in this QEMU
          await q.qmp.migrateOut(p.qmpSock, uri, _MIGRATE_TIMEOUT_MS, { capabilities: { "x-ignore-shared": false, "background-snapshot": false } });
        }
        const frozenMs = q.host.clock.now().getTime() - stoppedAt;
        const finish = _finishOnce(async () => {
          let ok = false;
          try {
            if (background) await _untilMigrated(q, p.qmpSock);
            // the source has sent it all; the receiver may still be loading the tail
            await _untilMigrated(q, p.receiverSock);
            await faultPoint("snapshot:in-receiver");
            const dev = _toFileUri(path);
            await q.qmp.migrateOut(p.receiverSock, dev.uri, _MIGRATE_TIMEOUT_MS, { capabilities: { "x-ignore-shared": true } });
            await _untilWritten(q, path, dev.tmp);
            await _copyReceiverRam(q, vm, ramFile);
            ok = true;
          } finally {
            await end(ok);
          }
        });
        return { frozenMs, finish };
      } catch (e) {
        await end(false);
        throw e;
      }
    },
  };
}

/**
 * The receiver's RAM (a memfd, see receiverArgs) to the snapshot's RAM file, sparse: zero blocks stay holes.
 * Read through /proc/<pid>/fd of the receiver, which holds it until killed; written to a temp renamed into place.
 */
async function _copyReceiverRam(q: _Qemu, vm: VMRecord, ramFile: string): Promise<void> {
  const [rcv] = await _receiverProcs(q, vm);
  if (!rcv) throw new BangerError("E_INTERNAL", `the snapshot's receiver qemu of ${vm.name} is gone before its RAM was copied`);
  const fdDir = `/proc/${rcv.pid}/fd`;
  let memfd: string | undefined;
  for (const { name } of await q.host.fs.list(fdDir)) {
    if ((await q.host.fs.readlink(join(fdDir, name)))?.startsWith("/memfd:")) memfd = join(fdDir, name);
  }
  if (!memfd) throw new BangerError("E_INTERNAL", `the snapshot's receiver qemu of ${vm.name} holds no memfd`);
  const tmp = tempPathFor(ramFile);
  try {
    await q.host.exec.run("cp", ["--sparse=always", memfd, tmp]);
    await q.host.fs.rename(tmp, ramFile);
  } finally {
    await q.host.fs.rmrf(tmp);
  }
}

/**
 * A save through a receiver (see _prepareReceiver) or, for a VM launched before its argv was recorded or one on a tap
 * (virtio-net's state needs a tap with vnet_hdr to load into, and the VM holds its tap: no receiver can stand in),
 * the stopped VM's whole stream to `path`, with nothing to make ready.
 */
async function _prepareSave(q: _Qemu, vm: VMRecord, handles: VMHandles, path: string): Promise<PreparedSave> {
  // before the freeze, whose disk switch a job left on a drive would refuse
  await _settleDiskJobs(q, vm);
  const text = await q.host.fs.readText(qemuPaths(vm).launchArgs);
  const launchArgs = text ? (JSON.parse(text) as string[]) : null;
  // the devices this state has, for the QEMU that restores it (in the snapshot's dir, before anything is saved there)
  if (text) await q.host.fs.writeAtomic(join(dirname(path), SNAPSHOT_ARGV_FILE), text, 0o600);
  const delta = await _deltaSource(q, vm, handles, path);
  if (delta) return _prepareDeltaSave(q, vm, path, delta);
  const tap = launchArgs?.some((a, i) => launchArgs[i - 1] === "-netdev" && a.startsWith("tap,"));
  if (launchArgs && !tap) return _prepareReceiver(q, vm, launchArgs, path);
  return { save: () => _saveWholeStream(q, vm, path), abandon: async () => {} };
}

/** What a save by RAM delta (see ram-delta.ts) starts from: the VM's process, the RAM file it maps private, and that snapshot's stream. */
interface _DeltaSource {
  pid: number;
  ramFile: string;
  stream: SpliceableStream;
  mappings: Mapping[];
}

/**
 * The VM runs on a snapshot's RAM file mapped private, that snapshot's stream can take this VM's device state
 * (spliceDeviceState), and this daemon may read the VM's memory: then a save by delta; else null (the receiver's
 * or the whole stream's way), with the reason in the daemon's log when the VM does map such a file.
 */
async function _deltaSource(q: _Qemu, vm: VMRecord, handles: VMHandles, path: string): Promise<_DeltaSource | null> {
  const t = await q.guard.target(handles, () => _findProcess(q, vm));
  const ramFile = t ? privateRamFile((await q.host.procs.info(t.pid))?.cmdline ?? []) : null;
  if (!t || !ramFile) return null;
  const why = (m: string) => {
    q.opts.log?.(`vm ${vm.name}: its RAM is saved whole, not by delta: ${m}`);
    return null;
  };
  const bytes = await q.host.fs.readBytes(_streamBeside(vm, ramFile, basename(path))).catch(() => null);
  if (!bytes) return why(`no stream beside ${ramFile}`);
  let stream: SpliceableStream;
  try {
    stream = spliceable(bytes);
  } catch (e) {
    if (e instanceof StreamNotSpliceable) return why(e.message);
    throw e;
  }
  const mappings = mappingsOf((await q.host.fs.readText(`/proc/${t.pid}/maps`)) ?? "", ramFile);
  const mapped = mappings.reduce((n, m) => n + (m.end - m.start), 0);
  if (mapped !== vm.spec.memoryMiB * 1024 * 1024) return why(`${mapped} bytes of ${ramFile} mapped, for ${vm.spec.memoryMiB} MiB of RAM`);
  // its memory is readable (ptrace rules: another user's, or a hardened kernel's, is not)
  if ((await q.host.fs.readRange(`/proc/${t.pid}/mem`, mappings[0]!.start, 1).catch(() => null))?.length !== 1) return why(`/proc/${t.pid}/mem cannot be read`);
  return { pid: t.pid, ramFile, stream, mappings };
}

/**
 * A snapshot of a VM running on a snapshot's RAM file mapped private, by RAM delta (see ram-delta.ts). Made
 * ready while the VM runs: a sparse copy of the RAM file it maps (that file never changes) as the new
 * `memory.ram`. The save, the VM stopped: its device state (xen-save-devices-state, live off: its disks stay
 * active), then the pages it has written since it mapped the file, read from its memory over the copy. The
 * finish, the VM running again: the device state spliced into the mapped snapshot's stream as `path`. No
 * process is started; what the save leaves is in the snapshot's temp dir, which a failed snapshot removes.
 */
async function _prepareDeltaSave(q: _Qemu, vm: VMRecord, path: string, src: _DeltaSource): Promise<PreparedSave> {
  const sock = qemuPaths(vm).qmpSock;
  const ramOut = join(dirname(path), SNAPSHOT_RAM_FILE);
  const devices = `${path}.devices`;
  const drop = async () => {
    for (const f of [ramOut, devices]) await q.host.fs.rmrf(f);
  };
  try {
    await q.host.exec.run("cp", ["--sparse=always", src.ramFile, ramOut]);
  } catch (e) {
    await drop();
    throw e;
  }
  return {
    abandon: drop,
    async save() {
      try {
        const status = (await q.qmp.command(sock, "query-status", 2000)) as { status?: unknown } | undefined;
        if (status?.status === "running") await q.qmp.command(sock, "stop", 2000);
        const stoppedAt = q.host.clock.now().getTime();
        await q.qmp.command(sock, "xen-save-devices-state", 10_000, { filename: devices, live: false });
        let pages = 0;
        for (const m of src.mappings) {
          const pagemap = await q.host.fs.readRange(`/proc/${src.pid}/pagemap`, (m.start / PAGE) * 8, ((m.end - m.start) / PAGE) * 8);
          const runs = writtenRuns(pagemap, m);
          await q.host.fs.copyRanges(`/proc/${src.pid}/mem`, ramOut, runs.map((r) => ({ from: m.start + r.first * PAGE - m.fileOffset, to: r.first * PAGE, length: r.count * PAGE })));
          pages += runs.reduce((n, r) => n + r.count, 0);
        }
        q.opts.log?.(`vm ${vm.name}: RAM saved by delta: ${pages} pages (${((pages * PAGE) / 1048576).toFixed(1)} MiB) written since it mapped ${src.ramFile}`);
        const frozenMs = q.host.clock.now().getTime() - stoppedAt;
        return {
          frozenMs,
          finish: _finishOnce(async () => {
            try {
              await q.host.fs.writeFile(path, spliceDeviceState(src.stream, await q.host.fs.readBytes(devices)));
            } catch (e) {
              await drop();
              throw e;
            }
            await q.host.fs.rmrf(devices);
          }),
        };
      } catch (e) {
        await drop();
        throw e;
      }
    },
  };
}

/**
 * Can this QEMU save with background-snapshot (userfaultfd write-protect of the guest's RAM)? Sets it on when so.
 * Anonymous RAM (a cold boot) can; a clone's RAM file mapped private cannot (QEMU refuses the capability).
 */
async function _backgroundCapable(q: _Qemu, sock: string): Promise<boolean> {
  try {
    await q.qmp.command(sock, "migrate-set-capabilities", 2000, { capabilities: [{ capability: "x-ignore-shared", state: false }, { capability: "background-snapshot", state: true }] });
    return true;
  } catch {
    return false;
  }
}

/** What query-migrate says of a background save that went wrong: its failure, in QEMU's words. */
function _migrateFailed(r: { status?: string; "error-desc"?: string }): BangerError | null {
  if (r.status !== "failed" && r.status !== "cancelled") return null;
  return new BangerError("E_INTERNAL", `qemu state save ${r.status}${r["error-desc"] ? `: ${r["error-desc"]}` : ""}`);
}

/**
 * A background save has QEMU save the device state, write-protect the RAM and run the guest again (from a
 * bottom half, after the protection is on): until it runs, the guest is frozen, so this looks often.
 */
async function _untilGuestRuns(q: _Qemu, sock: string): Promise<void> {
  await _pollUntil(
    q,
    { everyMs: _WRITTEN_POLL_MS, timeoutMs: 30_000 },
    async () => {
      const st = (await q.qmp.command(sock, "query-status", 2000)) as { status?: unknown } | undefined;
      if (st?.status === "running") return true;
      const failed = _migrateFailed((await q.qmp.command(sock, "query-migrate", 2000)) as { status?: string; "error-desc"?: string });
      if (failed) throw failed;
      return false;
    },
    () => new BangerError("E_TIMEOUT", "qemu did not run the guest again within 30 s of its background state save"),
  );
}

/** Until a migration (out of a VM, or into a receiver) is all done: no hurry, the guest runs meanwhile. */
async function _untilMigrated(q: _Qemu, sock: string): Promise<void> {
  await _pollUntil(
    q,
    { everyMs: 10, timeoutMs: _MIGRATE_TIMEOUT_MS },
    async () => {
      const r = (await q.qmp.command(sock, "query-migrate", 2000)) as { status?: string; "error-desc"?: string };
      const failed = _migrateFailed(r);
      if (failed) throw failed;
      return r.status === "completed";
    },
    () => new BangerError("E_TIMEOUT", `qemu's migration did not finish within ${_MIGRATE_TIMEOUT_MS} ms`),
  );
}

/** query-migrate's statuses of a save still under way: its RAM still streams, or its end is being written. */
const _SAVING = new Set(["setup", "active", "device", "pre-switchover", "wait-unplug", "cancelling"]);

/**
 * Until the VM's own state save has stopped streaming (the caller is about to kill its receiver); how long that
 * took when it had to wait, or null. QEMU 7.2 lifts a background save's write protection of the guest's RAM
 * only when the save completes: one that fails or is cancelled (its receiver killed midway) leaves the vCPU
 * blocked on the guest's next write for good (see _guestStuck). A receiver left alone takes the whole stream;
 * a VM whose QMP does not answer is not waited for.
 */
async function _untilSaveStreamed(q: _Qemu, sock: string): Promise<number | null> {
  const start = q.host.clock.now().getTime();
  let waited = false;
  const streamed = async () => {
    const r = (await q.qmp.command(sock, "query-migrate", 2000).catch(() => null)) as { status?: string } | null;
    if (!r || !_SAVING.has(r.status ?? "")) return true;
    waited = true;
    return false;
  };
  // past the migration's own bound the receiver goes anyway: a save stuck that long is not one a wait would end
  await _pollUntil(q, { everyMs: 10, timeoutMs: _MIGRATE_TIMEOUT_MS }, streamed, () => new Error("still streaming")).catch(() => {});
  return waited ? q.host.clock.now().getTime() - start : null;
}

/**
 * Why a live VM can never run its guest again, or null. The one case known: QEMU 7.2 after a background save
 * that failed or was cancelled (see _untilSaveStreamed). Its status says so, the capability is still on (or QMP
 * no longer answers: the main loop blocked too, as seen once in three), and a thread of the process waits in
 * the kernel's handle_userfault (its /proc wait channel), seen twice 100 ms apart. A save that completed, or a
 * QEMU that lifts the protection itself, never shows this.
 */
async function _guestStuck(q: _Qemu, vm: VMRecord, pid: number): Promise<string | null> {
  const sock = qemuPaths(vm).qmpSock;
  // no answer at all: QEMU's own main loop may be the thread blocked (a device writing guest RAM), so only the threads tell
  const r = (await q.qmp.command(sock, "query-migrate", 2000).catch(() => null)) as { status?: string } | null;
  if (r && r.status !== "failed" && r.status !== "cancelled") return null;
  if (r) {
    const caps = (await q.qmp.command(sock, "query-migrate-capabilities", 2000).catch(() => null)) as { capability?: string; state?: boolean }[] | null;
    if (!caps?.some((c) => c.capability === "background-snapshot" && c.state)) return null;
  }
  for (let i = 0; i < 2; i++) {
    if (i) await q.host.clock.sleep(100);
    if (!(await _threadWaitsIn(q, pid, "handle_userfault"))) return null;
  }
  return r
    ? `its guest cannot run again: a background state save ${r.status} and QEMU left its memory write-protected`
    : "its guest cannot run again: QEMU stopped answering, blocked on write-protected memory (a background state save cut midway)";
}

/** Whether a thread of the process waits in kernel function `fn` (/proc/<pid>/task/<tid>/wchan). */
async function _threadWaitsIn(q: _Qemu, pid: number, fn: string): Promise<boolean> {
  for (const t of await q.host.fs.list(`/proc/${pid}/task`).catch(() => [])) {
    if ((await q.host.fs.readText(`/proc/${pid}/task/${t.name}/wchan`).catch(() => null))?.trim() === fn) return true;
  }
  return false;
}

async function _killAndWait(q: _Qemu, t: ProcTarget): Promise<void> {
  await q.killedGuard.killGuarded(t);
  if (!(await q.killedGuard.waitGone(t, q.exitWaitMs))) {
    throw new BangerError("E_TIMEOUT", `qemu (pid ${t.pid}) did not exit after SIGKILL`);
  }
}

/** Gentlest first: ACPI power button (the guest's init decides to power off), then QMP quit, then SIGKILL. */
async function _stop(q: _Qemu, vm: VMRecord, handles: VMHandles, timeoutMs: number): Promise<void> {
  await _reapReceiver(q, vm);
  const t = await q.guard.target(handles, () => _findProcess(q, vm));
  const sock = qemuPaths(vm).qmpSock;
  if (t) {
    if (await q.qmp.powerdown(sock, 1000)) {
      if (await q.guard.waitGone(t, timeoutMs)) return _removeSocket(q, vm);
    }
    if (await q.qmp.quit(sock, 1000)) {
      if (await q.guard.waitGone(t, q.exitWaitMs)) return _removeSocket(q, vm);
    }
    await _killAndWait(q, t);
  }
  await _removeSocket(q, vm);
}

/**
 * The QEMU VMM driver: KVM where it is really usable, TCG otherwise. The VM
 * is a qemu process in its own session; its QMP socket is the API socket.
 */
export function createQemuDriver(host: Host, opts: QemuDriverOptions = {}): VMMDriver {
  const pollMs = opts.pollMs ?? 50;
  const q: _Qemu = {
    host,
    opts,
    qmp: opts.qmp ?? realQmp,
    pollMs,
    exitWaitMs: opts.exitWaitMs ?? 3000,
    probe: opts.probe ?? (() => kvmUsable(host)),
    guard: guardedProcesses(host, pollMs),
    killedGuard: guardedProcesses(host, Math.min(pollMs, 5)),
  };
  return {
    name: "qemu",
    // q35's limit in QEMU 7.2 (the machine every VM runs on: args.ts)
    maxCpus: 288,
    async launch(vm: VMRecord, boot: BootConfig, opts: LaunchOptions = {}): Promise<LaunchResult> {
      const bin = await _preflight(q, vm, boot);
      const ramFile = await _keepRestoredFrom(q, vm, opts.restoreFrom);
      // a cold boot always gets the agents' ports; a restore exactly those the saved VM had
      const ports = opts.restoreFrom ? await _portsSaved(q, opts.restoreFrom) : { agent: true, exec: true };
      // a restore from a RAM file maps it copy-on-write: the snapshot's file never changes, its clones share its pages
      // a QEMU that never came up leaves no command line behind for a snapshot's receiver to copy, nor FIFOs
      const forgetArgs = async () => {
        const p = qemuPaths(vm);
        for (const f of [p.launchArgs, ..._agentFifos(p)]) await q.host.fs.rmrf(f).catch(() => {});
      };
      let launched: LaunchResult;
      try {
        const pid = await _spawnQemu(q, vm, boot, bin, { restoring: !!opts.restoreFrom, ramFile: ramFile ? { path: ramFile, share: false } : undefined, ports });
        launched = await _waitForQmp(q, vm, pid);
      } catch (e) {
        await forgetArgs();
        throw e;
      }
      if (opts.restoreFrom) {
        try {
          await _restoreState(q, vm, opts.restoreFrom, ramFile);
        } catch (e) {
          await _killAndWait(q, { pid: launched.pid, startTime: launched.pidStartTime }).catch(() => {});
          await forgetArgs();
          throw e;
        }
      }
      return launched;
    },
    apiAnswers: (vm: VMRecord) => q.qmp.ping(qemuPaths(vm).qmpSock, 1000),
    findProcess: (vm: VMRecord) => _findProcess(q, vm),
    stop: (vm: VMRecord, handles: VMHandles, timeoutMs: number) => _stop(q, vm, handles, timeoutMs),
    async kill(vm: VMRecord, handles: VMHandles): Promise<void> {
      const t = await q.guard.target(handles, () => _findProcess(q, vm));
      if (t) await _killAndWait(q, t);
      await _reapReceiver(q, vm);
      await _removeSocket(q, vm);
    },
    async pause(vm: VMRecord): Promise<void> {
      await q.qmp.command(qemuPaths(vm).qmpSock, "stop", 2000);
    },
    async resume(vm: VMRecord): Promise<void> {
      await q.qmp.command(qemuPaths(vm).qmpSock, "cont", 2000);
    },
    async switchDisk(vm: VMRecord, _handles: VMHandles, index: number, overlay: string): Promise<void> {
      // mode existing: QEMU opens the overlay we made and puts the drive's current node under it, whatever its
      // header names; the old node is flushed first and kept read-only (drive ids are qemuArgs' disk<i>)
      await q.qmp.command(qemuPaths(vm).qmpSock, "blockdev-snapshot-sync", 10_000, { device: `disk${index}`, "snapshot-file": overlay, format: "qcow2", mode: "existing" });
    },
    streamDisk: (vm: VMRecord, _handles: VMHandles, index: number, base: { path: string; name: string }, signal?: AbortSignal) => _streamDisk(q, vm, index, base, signal),
    liveSave: true,
    prepareSave: (vm: VMRecord, handles: VMHandles, path: string) => _prepareSave(q, vm, handles, path),
    async saveState(vm: VMRecord, handles: VMHandles, path: string, o: SaveOptions = {}): Promise<SaveResult> {
      return (await _prepareSave(q, vm, handles, path)).save(o);
    },
    async runState(vm: VMRecord): Promise<"running" | "paused"> {
      const r = (await q.qmp.command(qemuPaths(vm).qmpSock, "query-status", 2000)) as { status?: unknown } | undefined;
      return _STOPPED_STATUSES.has(String(r?.status)) ? "paused" : "running";
    },
    reapLeftovers: (scope) =>
      reapLeftoverReceivers(q.host, (t) => _killAndWait(q, t), scope, async (vm) => {
        const ms = await _untilSaveStreamed(q, qemuPaths(vm).qmpSock);
        return ms === null ? null : `waited ${ms} ms for its state save to finish streaming into the receiver`;
      }),
    guestStuck: (vm: VMRecord, handles: VMHandles) => _guestStuck(q, vm, handles.pid),
    haltedBy: (vm: VMRecord) => qemuHaltedBy((command) => q.qmp.command(qemuPaths(vm).qmpSock, command, 2000)),
  };
}
