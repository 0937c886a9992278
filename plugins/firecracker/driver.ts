import { BangerError, guardedProcesses, joinInitrds, requireBootFiles, sameProcess, createUnixHttp, kvmUsable, configFrom, environ, type VMHandles, type VMRecord, type Host, type UnixHttp, type BootConfig, type LaunchOptions, type LaunchResult, type VMMDriver, type KvmProbe, type ProcTarget } from "../../src/plugin-api.ts";
import { firecrackerApi } from "./api.ts";
import { FC_MAX_VCPUS, fcConfigCalls, fcPaths, fcRestoreCalls, fcSnapshotCreateCall, vmlinuxFor } from "./config.ts";

export const FIRECRACKER_BINARY = "firecracker";

/**
 * Overrides the firecracker binary (a path or a name on PATH). Meant for
 * tests, which put a fake that serves the spec'd API in its place.
 */
export const FIRECRACKER_BIN_ENV = "BANGER_FIRECRACKER_BIN";

export interface FirecrackerDriverOptions {
  /** Binary name or path (default: $BANGER_FIRECRACKER_BIN, else firecracker on PATH). */
  binary?: string;
  /** Environment the binary override is read from (default environ()). */
  env?: Record<string, string | undefined>;
  /** HTTP over the API socket (default: the real unix-socket client). */
  http?: UnixHttp;
  /** KVM probe for usable() (tests inject a fake). */
  probe?: () => Promise<KvmProbe>;
  /** How long launch waits for the API socket to answer (default 5 s). */
  launchTimeoutMs?: number;
  /** Per-request timeout on the API socket (default 5 s). */
  apiTimeoutMs?: number;
  /** Poll interval while waiting for the socket or for the process to exit (default 50 ms). */
  pollMs?: number;
  /** How long to wait after SIGKILL before giving up (default 3 s). */
  exitWaitMs?: number;
}

// sockaddr_un.sun_path is 108 bytes including the NUL
const _MAX_SOCK_PATH = 107;

/** Firecracker's --id: alphanumerics and '-', 1 to 64 characters. */
export function fcInstanceId(vm: VMRecord): string {
  return `banger-${vm.id}`.replace(/[^A-Za-z0-9-]/g, "-").slice(0, 64);
}

/** What the driver's steps share. */
interface _Fc {
  host: Host;
  http: UnixHttp;
  pollMs: number;
  exitWaitMs: number;
  apiTimeoutMs: number;
  launchTimeoutMs: number;
  guard: ReturnType<typeof guardedProcesses>;
  binary: () => string;
}

async function _findProcess(f: _Fc, vm: VMRecord): Promise<ProcTarget | null> {
  const sock = fcPaths(vm).apiSock;
  const found = await f.host.procs.find("--api-sock", sock);
  const p = found.find((p) => {
    const i = p.cmdline.indexOf("--api-sock");
    return i >= 0 && p.cmdline[i + 1] === sock;
  });
  return p ? { pid: p.pid, startTime: p.startTime } : null;
}

async function _killAndWait(f: _Fc, t: ProcTarget): Promise<void> {
  await f.guard.killGuarded(t);
  if (!(await f.guard.waitGone(t, f.exitWaitMs))) {
    throw new BangerError("E_TIMEOUT", `firecracker (pid ${t.pid}) did not exit after SIGKILL`);
  }
}

/** Firecracker leaves its sockets behind; a leftover API socket makes the next start fail. */
async function _removeSockets(f: _Fc, vm: VMRecord): Promise<void> {
  const p = fcPaths(vm);
  await f.host.fs.rmrf(p.apiSock);
  await f.host.fs.rmrf(p.vsock);
}

async function _tail(f: _Fc, path: string, lines = 20): Promise<string> {
  const text = (await f.host.fs.readText(path)) ?? "";
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

async function _ping(f: _Fc, sock: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await f.http.request(sock, { method: "GET", path: "/" }, timeoutMs);
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Refuse before anything is touched: no binary, socket paths too long, no vmlinux, a missing boot file, a VM already running. Returns the binary and the vmlinux. */
async function _preflight(f: _Fc, vm: VMRecord, boot: BootConfig): Promise<{ bin: string; kernel: string }> {
  const bin = await f.host.exec.which(f.binary());
  if (!bin) {
    throw new BangerError("E_MISSING_TOOL", `${f.binary()} not found: install the firecracker release binary on PATH or use --vmm qemu`);
  }
  const p = fcPaths(vm);
  if (Buffer.byteLength(p.apiSock) > _MAX_SOCK_PATH || Buffer.byteLength(p.vsock) > _MAX_SOCK_PATH) {
    throw new BangerError("E_BAD_REQUEST", `socket path is too long for a unix socket (> ${_MAX_SOCK_PATH} bytes): ${p.apiSock}; use a shorter BANGER_HOME`);
  }
  const kernel = vmlinuxFor(boot.kernelPath);
  if (!(await f.host.fs.exists(kernel))) {
    throw new BangerError("E_NOT_FOUND", `firecracker needs an uncompressed vmlinux and ${kernel} does not exist (rebuild the image: banger image build)`);
  }
  await requireBootFiles(f.host, boot);
  const running = await _findProcess(f, vm);
  if (running) {
    throw new BangerError("E_STATE", `${vm.name} already has a firecracker process (pid ${running.pid}) on ${p.apiSock}`);
  }
  return { bin, kernel };
}

/** The files firecracker wants before it starts (one initrd, its log and metrics files, no old sockets), then firecracker itself; returns its pid. */
async function _spawnFirecracker(f: _Fc, vm: VMRecord, boot: BootConfig, bin: string): Promise<number> {
  const p = fcPaths(vm);
  if (boot.initrdPaths.length > 1) await joinInitrds(f.host, p.initrd, boot.initrdPaths);
  await _removeSockets(f, vm);
  // Firecracker opens the log and metrics files but does not create them
  for (const file of [p.fcLog, p.metrics]) {
    if (!(await f.host.fs.exists(file))) await f.host.fs.writeAtomic(file, "", 0o600);
  }
  const args = ["--api-sock", p.apiSock, "--id", fcInstanceId(vm)];
  return f.host.exec.spawnDetached(bin, args, { cwd: vm.runtime.vmDir, logPath: p.serialLog });
}

/** Until the API socket answers. Firecracker exiting first is the launch's error; the deadline passing is `failLaunch`'s. */
async function _waitForApi(f: _Fc, vm: VMRecord, t: ProcTarget, failLaunch: (e: unknown) => Promise<never>): Promise<void> {
  const p = fcPaths(vm);
  const deadline = f.host.clock.now().getTime() + f.launchTimeoutMs;
  for (;;) {
    if (!(await sameProcess(f.host.procs, t.pid, t.startTime))) {
      await _removeSockets(f, vm);
      // one line, like every CLI error; the logs keep the rest
      const why = ((await _tail(f, p.fcLog, 1)) || (await _tail(f, p.serialLog, 1))).trim();
      throw new BangerError("E_INTERNAL", `firecracker exited during launch${why ? `: ${why}` : ""} (log: ${p.fcLog})`);
    }
    if ((await f.host.fs.exists(p.apiSock)) && (await _ping(f, p.apiSock, 500))) return;
    if (f.host.clock.now().getTime() >= deadline) {
      return failLaunch(new BangerError("E_TIMEOUT", `firecracker's API socket did not answer within ${f.launchTimeoutMs} ms (log: ${p.fcLog})`));
    }
    await f.host.clock.sleep(f.pollMs);
  }
}

async function _launch(f: _Fc, vm: VMRecord, boot: BootConfig, opts: LaunchOptions = {}): Promise<LaunchResult> {
  const { bin, kernel } = await _preflight(f, vm, boot);
  const p = fcPaths(vm);
  const initrd = boot.initrdPaths.length > 1 ? p.initrd : boot.initrdPaths[0];
  if (opts.restoreFrom && !(await f.host.fs.exists(opts.restoreFrom))) throw new BangerError("E_NOT_FOUND", `saved state not found: ${opts.restoreFrom}`);
  // every request is built (and refused) before anything is touched
  const planPaths = { fcLog: p.fcLog, metrics: p.metrics, vsock: p.vsock, initrd };
  const calls = opts.restoreFrom ? fcRestoreCalls(boot, planPaths, opts.restoreFrom) : fcConfigCalls(vm, { ...boot, kernelPath: kernel }, planPaths);
  const pid = await _spawnFirecracker(f, vm, boot, bin);
  // -1 (no start time: it is already gone) matches no process, so the wait reports the exit
  const first = await f.host.procs.info(pid);
  const t = { pid, startTime: first?.startTime ?? -1 };
  const failLaunch = async (e: unknown): Promise<never> => {
    await _killAndWait(f, t).catch(() => {});
    await _removeSockets(f, vm);
    throw e;
  };
  await _waitForApi(f, vm, t, failLaunch);
  const api = firecrackerApi(f.http, p.apiSock, f.apiTimeoutMs);
  for (const call of calls) {
    try {
      await api.send(call);
    } catch (e) {
      return failLaunch(e);
    }
  }
  return { pid, pidStartTime: t.startTime };
}

/** Graceful first: Ctrl+Alt+Del makes the guest reboot, and with reboot=k Firecracker exits on it; SIGKILL when that does not end it in time. */
async function _stop(f: _Fc, vm: VMRecord, handles: VMHandles, timeoutMs: number): Promise<void> {
  const t = await f.guard.target(handles, () => _findProcess(f, vm));
  if (t) {
    const api = firecrackerApi(f.http, fcPaths(vm).apiSock, Math.min(f.apiTimeoutMs, 2000));
    const asked = await api.send({ method: "PUT", path: "/actions", body: { action_type: "SendCtrlAltDel" } }).then(
      () => true,
      () => false,
    );
    if (!(asked && (await f.guard.waitGone(t, timeoutMs)))) await _killAndWait(f, t);
  }
  await _removeSockets(f, vm);
}

/**
 * The Firecracker VMM driver: one `firecracker --api-sock … --id …` process
 * per VM in its own session, configured over its API socket, then started
 * with InstanceStart. Firecracker never removes its API socket (and refuses
 * to start when one exists), so the driver removes it before launch and
 * after every exit.
 */
export function createFirecrackerDriver(host: Host, opts: FirecrackerDriverOptions = {}): VMMDriver & {
  usable(): Promise<{ usable: boolean; reason: string }>;
} {
  const pollMs = opts.pollMs ?? 50;
  const probe = opts.probe ?? (() => kvmUsable(host));
  const env = opts.env ?? environ();
  const f: _Fc = {
    host,
    http: opts.http ?? createUnixHttp(),
    pollMs,
    exitWaitMs: opts.exitWaitMs ?? 3000,
    apiTimeoutMs: opts.apiTimeoutMs ?? 5000,
    launchTimeoutMs: opts.launchTimeoutMs ?? 5000,
    guard: guardedProcesses(host, pollMs),
    binary: () => opts.binary ?? (configFrom(env).firecrackerBin || FIRECRACKER_BINARY),
  };

  return {
    name: "firecracker",
    maxCpus: FC_MAX_VCPUS,
    // No user-mode networking in Firecracker: a guest is reachable only on a tap.
    nets: ["tap"],

    /** Usable when the binary is found and /dev/kvm really works (Firecracker has no software fallback). */
    async usable() {
      const bin = await host.exec.which(f.binary());
      if (!bin) return { usable: false, reason: `${f.binary()} not found on PATH (install the firecracker release binary; see \`banger doctor\`)` };
      const kvm = await probe();
      if (!kvm.usable) return { usable: false, reason: kvm.reason.replace(/; using TCG$/, "") };
      return { usable: true, reason: `${bin} with ${kvm.reason}` };
    },
    launch: (vm: VMRecord, boot: BootConfig, opts?: LaunchOptions) => _launch(f, vm, boot, opts),
    apiAnswers: (vm: VMRecord) => _ping(f, fcPaths(vm).apiSock, 1000),
    findProcess: (vm: VMRecord) => _findProcess(f, vm),
    stop: (vm: VMRecord, handles: VMHandles, timeoutMs: number) => _stop(f, vm, handles, timeoutMs),
    async kill(vm: VMRecord, handles: VMHandles): Promise<void> {
      const t = await f.guard.target(handles, () => _findProcess(f, vm));
      if (t) await _killAndWait(f, t);
      await _removeSockets(f, vm);
    },
    async pause(vm: VMRecord): Promise<void> {
      await firecrackerApi(f.http, fcPaths(vm).apiSock, f.apiTimeoutMs).send({ method: "PATCH", path: "/vm", body: { state: "Paused" } });
    },
    async resume(vm: VMRecord): Promise<void> {
      await firecrackerApi(f.http, fcPaths(vm).apiSock, f.apiTimeoutMs).send({ method: "PATCH", path: "/vm", body: { state: "Resumed" } });
    },
    async saveState(vm: VMRecord, _handles: VMHandles, path: string): Promise<void> {
      // a full snapshot of ~guest RAM size takes longer than a config call
      await firecrackerApi(f.http, fcPaths(vm).apiSock, Math.max(f.apiTimeoutMs, 120_000)).send(fcSnapshotCreateCall(path));
    },
    async runState(vm: VMRecord): Promise<"running" | "paused"> {
      const info = (await firecrackerApi(f.http, fcPaths(vm).apiSock, f.apiTimeoutMs).send({ method: "GET", path: "/" })) as { state?: unknown } | undefined;
      return info?.state === "Paused" ? "paused" : "running";
    },
  };
}
