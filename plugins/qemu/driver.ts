import { BangerError, shellQuote, tempPathFor, guardedProcesses, joinInitrds, kvmUsable, requireBootFiles, sameProcess, type VMHandles, type VMRecord, type Host, type BootConfig, type LaunchOptions, type LaunchResult, type VMMDriver, type KvmProbe, type ProcTarget, vmPaths } from "../../src/plugin-api.ts";
import { join } from "node:path";
import { qemuArgs, qmpArg, type Accel } from "./args.ts";
import { qmpExecute, qmpMigrateIn, qmpMigrateOut, qmpPing, qmpPowerdown, qmpQuit } from "./qmp.ts";

export const QEMU_BINARY = "qemu-system-x86_64";

/** What the driver does over QMP; real by default, swapped for a recorder in unit tests. */
export interface QmpOps {
  ping(sock: string, timeoutMs: number): Promise<boolean>;
  powerdown(sock: string, timeoutMs: number): Promise<boolean>;
  quit(sock: string, timeoutMs: number): Promise<boolean>;
  /** One QMP command; resolves with its `return` value, throws when QEMU refuses it. */
  command(sock: string, command: string, timeoutMs: number): Promise<unknown>;
  /** Migrate out to an exec: URI and wait until done. */
  migrateOut(sock: string, uri: string, timeoutMs: number): Promise<void>;
  /** Migrate in (the QEMU waits with -incoming defer) and wait until done. */
  migrateIn(sock: string, uri: string, timeoutMs: number): Promise<void>;
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
}

const realQmp: QmpOps = { ping: qmpPing, powerdown: qmpPowerdown, quit: qmpQuit, command: (sock, command, timeoutMs) => qmpExecute(sock, command, undefined, timeoutMs), migrateOut: qmpMigrateOut, migrateIn: qmpMigrateIn };

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

async function _removeSocket(q: _Qemu, vm: VMRecord): Promise<void> {
  await q.host.fs.rmrf(qemuPaths(vm).qmpSock);
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
async function _spawnQemu(q: _Qemu, vm: VMRecord, boot: BootConfig, bin: string, restoring: boolean): Promise<number> {
  const p = qemuPaths(vm);
  let initrd: string | undefined;
  if (boot.initrdPaths.length > 1) {
    await joinInitrds(q.host, p.initrd, boot.initrdPaths);
    initrd = p.initrd;
  }
  const args = qemuArgs(vm, boot, { accel: await _accel(q), qmpSock: p.qmpSock, pidfile: p.pidfile, serialLog: p.serialLog, initrd });
  // a restore: wait for the state over QMP (-incoming defer), and stay stopped (-S) until it is all in
  if (restoring) args.push("-incoming", "defer", "-S");
  // a stale socket from an earlier run would make the readiness probe lie (or qemu fail to bind)
  await q.host.fs.rmrf(p.qmpSock);
  await q.host.fs.rmrf(p.pidfile);
  await q.host.fs.writeAtomic(p.qemuLog, `# ${bin} ${args.join(" ")}\n`, 0o600);
  return q.host.exec.spawnDetached(bin, args, { cwd: vm.runtime.vmDir, logPath: p.qemuLog });
}

/** Until QMP answers: qemu exiting first, or the deadline passing (then it is killed), is the launch's error. */
async function _waitForQmp(q: _Qemu, vm: VMRecord, pid: number): Promise<LaunchResult> {
  const p = qemuPaths(vm);
  const timeoutMs = q.opts.launchTimeoutMs ?? 15000;
  const info = await q.host.procs.info(pid);
  const deadline = q.host.clock.now().getTime() + timeoutMs;
  for (;;) {
    const now = await sameProcess(q.host.procs, pid, info?.startTime ?? 0);
    if (!now) {
      // one line (qemu's last word names what is wrong); the whole log stays in the file
      const why = await _lastLogLine(q, p.qemuLog);
      throw new BangerError("E_INTERNAL", `qemu exited during launch${why ? `: ${why}` : ""} (log: ${p.qemuLog})`);
    }
    if (await q.qmp.ping(p.qmpSock, 500)) return { pid, pidStartTime: now.startTime };
    if (q.host.clock.now().getTime() >= deadline) {
      await q.guard.killGuarded({ pid, startTime: now.startTime });
      const why = await _lastLogLine(q, p.qemuLog);
      throw new BangerError("E_TIMEOUT", `qemu's QMP socket did not answer within ${timeoutMs} ms${why ? `: ${why}` : ""} (log: ${p.qemuLog})`);
    }
    await q.host.clock.sleep(q.pollMs);
  }
}

/** Load saved state into a QEMU waiting with -incoming defer -S, then let it run. */
async function _restoreState(q: _Qemu, vm: VMRecord, statePath: string): Promise<void> {
  if (!(await q.host.fs.exists(statePath))) throw new BangerError("E_NOT_FOUND", `saved state not found: ${statePath}`);
  const sock = qemuPaths(vm).qmpSock;
  await q.qmp.migrateIn(sock, `exec:cat ${shellQuote(statePath)}`, _MIGRATE_TIMEOUT_MS);
  await q.qmp.command(sock, "cont", 2000);
}

async function _killAndWait(q: _Qemu, t: ProcTarget): Promise<void> {
  await q.guard.killGuarded(t);
  if (!(await q.guard.waitGone(t, q.exitWaitMs))) {
    throw new BangerError("E_TIMEOUT", `qemu (pid ${t.pid}) did not exit after SIGKILL`);
  }
}

/** Gentlest first: ACPI power button (the guest's init decides to power off), then QMP quit, then SIGKILL. */
async function _stop(q: _Qemu, vm: VMRecord, handles: VMHandles, timeoutMs: number): Promise<void> {
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
  };
  return {
    name: "qemu",
    async launch(vm: VMRecord, boot: BootConfig, opts: LaunchOptions = {}): Promise<LaunchResult> {
      const bin = await _preflight(q, vm, boot);
      const pid = await _spawnQemu(q, vm, boot, bin, !!opts.restoreFrom);
      const launched = await _waitForQmp(q, vm, pid);
      if (opts.restoreFrom) {
        try {
          await _restoreState(q, vm, opts.restoreFrom);
        } catch (e) {
          await _killAndWait(q, { pid: launched.pid, startTime: launched.pidStartTime }).catch(() => {});
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
      await _removeSocket(q, vm);
    },
    async pause(vm: VMRecord): Promise<void> {
      await q.qmp.command(qemuPaths(vm).qmpSock, "stop", 2000);
    },
    async resume(vm: VMRecord): Promise<void> {
      await q.qmp.command(qemuPaths(vm).qmpSock, "cont", 2000);
    },
    async saveState(vm: VMRecord, _handles: VMHandles, path: string): Promise<void> {
      // QEMU 7.2 has no file: URI. cat writes a temp renamed into place, so the file is whole once it exists:
      // QEMU reports "completed" when it has written the stream, possibly before cat has
      const tmp = tempPathFor(path);
      await q.qmp.migrateOut(qemuPaths(vm).qmpSock, `exec:cat > ${shellQuote(tmp)} && mv ${shellQuote(tmp)} ${shellQuote(path)}`, _MIGRATE_TIMEOUT_MS);
      for (let waited = 0; !(await q.host.fs.exists(path)); waited += q.pollMs) {
        if (waited >= 10_000) {
          await q.host.fs.rmrf(tmp);
          throw new BangerError("E_TIMEOUT", `qemu's state stream did not reach ${path}`);
        }
        await q.host.clock.sleep(q.pollMs);
      }
    },
    async runState(vm: VMRecord): Promise<"running" | "paused"> {
      const r = (await q.qmp.command(qemuPaths(vm).qmpSock, "query-status", 2000)) as { status?: unknown } | undefined;
      return _STOPPED_STATUSES.has(String(r?.status)) ? "paused" : "running";
    },
  };
}
