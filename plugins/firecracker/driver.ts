import { BangerError, guardedProcesses, sameProcess, createUnixHttp, kvmUsable, configFrom, environ, type VMHandles, type VMRecord, type Host, type UnixHttp, type BootConfig, type LaunchResult, type VMMDriver, type KvmProbe, tempPathFor } from "../../src/plugin-api.ts";
import { firecrackerApi } from "./api.ts";
import { fcConfigCalls, fcPaths, vmlinuxFor } from "./config.ts";

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
  const http = opts.http ?? createUnixHttp();
  const pollMs = opts.pollMs ?? 50;
  const exitWaitMs = opts.exitWaitMs ?? 3000;
  const apiTimeoutMs = opts.apiTimeoutMs ?? 5000;
  const launchTimeoutMs = opts.launchTimeoutMs ?? 5000;
  const probe = opts.probe ?? (() => kvmUsable(host));
  const env = opts.env ?? environ();
  const guard = guardedProcesses(host, pollMs);
  const binary = () => opts.binary ?? (configFrom(env).firecrackerBin || FIRECRACKER_BINARY);

  async function findProcess(vm: VMRecord): Promise<{ pid: number; startTime: number } | null> {
    const sock = fcPaths(vm).apiSock;
    const found = await host.procs.find("--api-sock", sock);
    const p = found.find((p) => {
      const i = p.cmdline.indexOf("--api-sock");
      return i >= 0 && p.cmdline[i + 1] === sock;
    });
    return p ? { pid: p.pid, startTime: p.startTime } : null;
  }

  async function _killAndWait(t: { pid: number; startTime: number }): Promise<void> {
    await guard.killGuarded(t);
    if (!(await guard.waitGone(t, exitWaitMs))) {
      throw new BangerError("E_TIMEOUT", `firecracker (pid ${t.pid}) did not exit after SIGKILL`);
    }
  }

  /** Firecracker leaves its sockets behind; a leftover API socket makes the next start fail. */
  async function _removeSockets(vm: VMRecord): Promise<void> {
    const p = fcPaths(vm);
    await host.fs.rmrf(p.apiSock);
    await host.fs.rmrf(p.vsock);
  }

  async function _tail(path: string, lines = 20): Promise<string> {
    const text = (await host.fs.readText(path)) ?? "";
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  }

  async function _ping(sock: string, timeoutMs: number): Promise<boolean> {
    try {
      const res = await http.request(sock, { method: "GET", path: "/" }, timeoutMs);
      return res.status === 200;
    } catch {
      return false;
    }
  }

  return {
    name: "firecracker",
    // No user-mode networking in Firecracker: a guest is reachable only on a tap.
    nets: ["tap"],

    /** Usable when the binary is found and /dev/kvm really works (Firecracker has no software fallback). */
    async usable() {
      const bin = await host.exec.which(binary());
      if (!bin) return { usable: false, reason: `${binary()} not found on PATH (install the firecracker release binary; see \`banger doctor\`)` };
      const kvm = await probe();
      if (!kvm.usable) return { usable: false, reason: kvm.reason.replace(/; using TCG$/, "") };
      return { usable: true, reason: `${bin} with ${kvm.reason}` };
    },

    async launch(vm: VMRecord, boot: BootConfig): Promise<LaunchResult> {
      const bin = await host.exec.which(binary());
      if (!bin) {
        throw new BangerError("E_MISSING_TOOL", `${binary()} not found: install the firecracker release binary on PATH or use --vmm qemu`);
      }
      const p = fcPaths(vm);
      if (Buffer.byteLength(p.apiSock) > _MAX_SOCK_PATH || Buffer.byteLength(p.vsock) > _MAX_SOCK_PATH) {
        throw new BangerError("E_BAD_REQUEST", `socket path is too long for a unix socket (> ${_MAX_SOCK_PATH} bytes): ${p.apiSock}; use a shorter BANGER_HOME`);
      }
      const kernel = vmlinuxFor(boot.kernelPath);
      if (!(await host.fs.exists(kernel))) {
        throw new BangerError("E_NOT_FOUND", `firecracker needs an uncompressed vmlinux and ${kernel} does not exist (rebuild the image: banger image build)`);
      }
      for (const f of [...boot.initrdPaths, ...boot.disks.map((d) => d.path)]) {
        if (!(await host.fs.exists(f))) throw new BangerError("E_NOT_FOUND", `boot file not found: ${f}`);
      }
      const running = await findProcess(vm);
      if (running) {
        throw new BangerError("E_STATE", `${vm.name} already has a firecracker process (pid ${running.pid}) on ${p.apiSock}`);
      }

      const initrd = boot.initrdPaths.length > 1 ? p.initrd : boot.initrdPaths[0];
      // every request is built (and refused) before anything is touched
      const calls = fcConfigCalls(vm, { ...boot, kernelPath: kernel }, { fcLog: p.fcLog, metrics: p.metrics, vsock: p.vsock, initrd });
      if (boot.initrdPaths.length > 1) {
        // Firecracker takes one initrd; the kernel unpacks concatenated cpio archives in order
        await host.exec.run("sh", ["-c", 'out=$1; tmp=$2; shift 2; cat -- "$@" > "$tmp" && mv -f -- "$tmp" "$out"', "sh", p.initrd, tempPathFor(p.initrd), ...boot.initrdPaths]);
      }

      await _removeSockets(vm);
      // Firecracker opens the log and metrics files but does not create them
      for (const f of [p.fcLog, p.metrics]) {
        if (!(await host.fs.exists(f))) await host.fs.writeAtomic(f, "", 0o600);
      }

      const args = ["--api-sock", p.apiSock, "--id", fcInstanceId(vm)];
      const pid = await host.exec.spawnDetached(bin, args, { cwd: vm.runtime.vmDir, logPath: p.serialLog });
      const first = await host.procs.info(pid);
      const t = { pid, startTime: first?.startTime ?? -1 };
      const failLaunch = async (e: unknown): Promise<never> => {
        await _killAndWait(t).catch(() => {});
        await _removeSockets(vm);
        throw e;
      };

      const deadline = host.clock.now().getTime() + launchTimeoutMs;
      for (;;) {
        if (!(await sameProcess(host.procs, pid, t.startTime))) {
          await _removeSockets(vm);
          // one line, like every CLI error; the logs keep the rest
          const why = ((await _tail(p.fcLog, 1)) || (await _tail(p.serialLog, 1))).trim();
          throw new BangerError("E_INTERNAL", `firecracker exited during launch${why ? `: ${why}` : ""} (log: ${p.fcLog})`);
        }
        if ((await host.fs.exists(p.apiSock)) && (await _ping(p.apiSock, 500))) break;
        if (host.clock.now().getTime() >= deadline) {
          return failLaunch(new BangerError("E_TIMEOUT", `firecracker's API socket did not answer within ${launchTimeoutMs} ms (log: ${p.fcLog})`));
        }
        await host.clock.sleep(pollMs);
      }

      const api = firecrackerApi(http, p.apiSock, apiTimeoutMs);
      for (const call of calls) {
        try {
          await api.send(call);
        } catch (e) {
          return failLaunch(e);
        }
      }
      return { pid, pidStartTime: t.startTime };
    },

    async apiAnswers(vm: VMRecord): Promise<boolean> {
      return _ping(fcPaths(vm).apiSock, 1000);
    },

    findProcess,

    async stop(vm: VMRecord, handles: VMHandles, timeoutMs: number): Promise<void> {
      const t = await guard.target(handles, () => findProcess(vm));
      if (t) {
        // graceful: Ctrl+Alt+Del makes the guest reboot, and with reboot=k Firecracker exits on it
        const api = firecrackerApi(http, fcPaths(vm).apiSock, Math.min(apiTimeoutMs, 2000));
        const asked = await api.send({ method: "PUT", path: "/actions", body: { action_type: "SendCtrlAltDel" } }).then(
          () => true,
          () => false,
        );
        if (!(asked && (await guard.waitGone(t, timeoutMs)))) await _killAndWait(t);
      }
      await _removeSockets(vm);
    },

    async kill(vm: VMRecord, handles: VMHandles): Promise<void> {
      const t = await guard.target(handles, () => findProcess(vm));
      if (t) await _killAndWait(t);
      await _removeSockets(vm);
    },
  };
}
