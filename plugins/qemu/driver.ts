import { BangerError, guardedProcesses, kvmUsable, sameProcess, type VMHandles, type VMRecord, type Host, type BootConfig, type LaunchResult, type VMMDriver, type KvmProbe, tempPathFor } from "../../src/plugin-api.ts";
import { join } from "node:path";
import { qemuArgs, qmpArg, type Accel } from "./args.ts";
import { qmpPing, qmpPowerdown, qmpQuit } from "./qmp.ts";

export const QEMU_BINARY = "qemu-system-x86_64";

/** What the driver does over QMP; real by default, swapped for a recorder in unit tests. */
export interface QmpOps {
  ping(sock: string, timeoutMs: number): Promise<boolean>;
  powerdown(sock: string, timeoutMs: number): Promise<boolean>;
  quit(sock: string, timeoutMs: number): Promise<boolean>;
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

const realQmp: QmpOps = { ping: qmpPing, powerdown: qmpPowerdown, quit: qmpQuit };

/** Per-VM files the QEMU driver uses, derived from VMDir / VMRuntime. */
export function qemuPaths(vm: VMRecord) {
  const dir = vm.runtime.vmDir;
  return {
    qmpSock: vm.runtime.apiSockPath || join(dir, "api.sock"),
    serialLog: vm.runtime.logPath || join(dir, "serial.log"),
    pidfile: join(dir, "qemu.pid"),
    qemuLog: join(dir, "qemu.log"),
    initrd: join(dir, "initrd.img"),
  };
}

// sockaddr_un.sun_path is 108 bytes including the NUL
const _MAX_SOCK_PATH = 107;

/**
 * The QEMU VMM driver: KVM where it is really usable, TCG otherwise. The VM
 * is a qemu process in its own session; its QMP socket is the API socket.
 */
export function createQemuDriver(host: Host, opts: QemuDriverOptions = {}): VMMDriver {
  const qmp = opts.qmp ?? realQmp;
  const pollMs = opts.pollMs ?? 50;
  const exitWaitMs = opts.exitWaitMs ?? 3000;
  const probe = opts.probe ?? (() => kvmUsable(host));
  const guard = guardedProcesses(host, pollMs);

  async function accel(): Promise<Accel> {
    if (opts.accel) return opts.accel;
    return (await probe()).usable ? "kvm" : "tcg";
  }

  async function findProcess(vm: VMRecord): Promise<{ pid: number; startTime: number } | null> {
    const { qmpSock } = qemuPaths(vm);
    const needle = qmpArg(qmpSock);
    const found = await host.procs.find(qmpSock);
    const p = found.find((p) => (p.cmdline[0] ?? "").includes("qemu") && p.cmdline.includes(needle));
    return p ? { pid: p.pid, startTime: p.startTime } : null;
  }

  async function _lastLogLine(path: string): Promise<string> {
    const text = (await host.fs.readText(path)) ?? "";
    // skip the command line banger wrote at the top: the error is what qemu said
    return text.trimEnd().split("\n").filter((l) => !l.startsWith("# ")).at(-1)?.trim() ?? "";
  }

  async function _removeSocket(vm: VMRecord): Promise<void> {
    await host.fs.rmrf(qemuPaths(vm).qmpSock);
  }

  return {
    name: "qemu",

    async launch(vm: VMRecord, boot: BootConfig): Promise<LaunchResult> {
      const bin = await host.exec.which(opts.binary ?? QEMU_BINARY);
      if (!bin) {
        throw new BangerError("E_MISSING_TOOL", "qemu-system-x86_64 not found: install qemu-system-x86 (run `banger doctor`)");
      }
      const p = qemuPaths(vm);
      if (Buffer.byteLength(p.qmpSock) > _MAX_SOCK_PATH) {
        throw new BangerError("E_BAD_REQUEST", `API socket path is too long for a unix socket (${Buffer.byteLength(p.qmpSock)} > ${_MAX_SOCK_PATH} bytes): ${p.qmpSock}; use a shorter BANGER_HOME`);
      }
      if (!(await host.fs.exists(boot.kernelPath))) {
        throw new BangerError("E_NOT_FOUND", `kernel not found: ${boot.kernelPath} (rebuild the image: banger image build)`);
      }
      for (const f of [...boot.initrdPaths, ...boot.disks.map((d) => d.path)]) {
        if (!(await host.fs.exists(f))) throw new BangerError("E_NOT_FOUND", `boot file not found: ${f}`);
      }

      const running = await findProcess(vm);
      if (running) {
        throw new BangerError("E_STATE", `${vm.name} already has a qemu process (pid ${running.pid}) on ${p.qmpSock}`);
      }

      let initrd: string | undefined;
      if (boot.initrdPaths.length > 1) {
        // QEMU takes one -initrd; the kernel unpacks concatenated cpio archives in order
        await host.exec.run("sh", ["-c", 'out=$1; tmp=$2; shift 2; cat -- "$@" > "$tmp" && mv -f -- "$tmp" "$out"', "sh", p.initrd, tempPathFor(p.initrd), ...boot.initrdPaths]);
        initrd = p.initrd;
      }

      const args = qemuArgs(vm, boot, { accel: await accel(), qmpSock: p.qmpSock, pidfile: p.pidfile, serialLog: p.serialLog, initrd });
      // a stale socket from an earlier run would make the readiness probe lie (or qemu fail to bind)
      await host.fs.rmrf(p.qmpSock);
      await host.fs.rmrf(p.pidfile);
      await host.fs.writeAtomic(p.qemuLog, `# ${bin} ${args.join(" ")}\n`, 0o600);

      const pid = await host.exec.spawnDetached(bin, args, { cwd: vm.runtime.vmDir, logPath: p.qemuLog });
      const info = await host.procs.info(pid);
      const deadline = host.clock.now().getTime() + (opts.launchTimeoutMs ?? 15000);
      for (;;) {
        const now = await sameProcess(host.procs, pid, info?.startTime ?? 0);
        if (!now) {
          // one line (qemu's last word names what is wrong); the whole log stays in the file
          const why = await _lastLogLine(p.qemuLog);
          throw new BangerError("E_INTERNAL", `qemu exited during launch${why ? `: ${why}` : ""} (log: ${p.qemuLog})`);
        }
        if (await qmp.ping(p.qmpSock, 500)) return { pid, pidStartTime: now.startTime };
        if (host.clock.now().getTime() >= deadline) {
          await guard.killGuarded({ pid, startTime: now.startTime });
          const why = await _lastLogLine(p.qemuLog);
          throw new BangerError("E_TIMEOUT", `qemu's QMP socket did not answer within ${opts.launchTimeoutMs ?? 15000} ms${why ? `: ${why}` : ""} (log: ${p.qemuLog})`);
        }
        await host.clock.sleep(pollMs);
      }
    },

    async apiAnswers(vm: VMRecord): Promise<boolean> {
      return qmp.ping(qemuPaths(vm).qmpSock, 1000);
    },

    findProcess,

    async stop(vm: VMRecord, handles: VMHandles, timeoutMs: number): Promise<void> {
      const t = await guard.target(handles, () => findProcess(vm));
      const sock = qemuPaths(vm).qmpSock;
      if (t) {
        // graceful: ACPI power button; the guest's init decides to power off
        if (await qmp.powerdown(sock, 1000)) {
          if (await guard.waitGone(t, timeoutMs)) return _removeSocket(vm);
        }
        if (await qmp.quit(sock, 1000)) {
          if (await guard.waitGone(t, exitWaitMs)) return _removeSocket(vm);
        }
        await guard.killGuarded(t);
        if (!(await guard.waitGone(t, exitWaitMs))) {
          throw new BangerError("E_TIMEOUT", `qemu (pid ${t.pid}) did not exit after SIGKILL`);
        }
      }
      await _removeSocket(vm);
    },

    async kill(vm: VMRecord, handles: VMHandles): Promise<void> {
      const t = await guard.target(handles, () => findProcess(vm));
      if (t) {
        await guard.killGuarded(t);
        if (!(await guard.waitGone(t, exitWaitMs))) {
          throw new BangerError("E_TIMEOUT", `qemu (pid ${t.pid}) did not exit after SIGKILL`);
        }
      }
      await _removeSocket(vm);
    },
  };
}
