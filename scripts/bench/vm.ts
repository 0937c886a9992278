/**
 * What the VM sections share: the guest image in the temp home, one
 * long-lived VM ("bx") for exec/session and as the source of banger's qemu
 * argv, and OpenSSH command lines with the VM's own key and pinned host key.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Bench, killPid, pidAlive, which } from "./run.ts";

export const VM_NAME = "bx";

export interface VMShow {
  name: string;
  pid?: number;
  alive?: boolean;
  runtime: { state: string; sshHost: string; sshPort: number; vmDir: string; logPath: string; apiSockPath: string };
}

/** Why VM sections cannot run here, or null when they can. */
export function vmSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "not root (banger's VM path needs root here)";
  if (!which("qemu-system-x86_64")) return "qemu-system-x86_64 not on PATH (install qemu-system-x86)";
  if (!which("ssh")) return "OpenSSH client (ssh) not on PATH: the baselines need it";
  return null;
}

export class BenchVMs {
  private _image: Promise<string> | null = null;
  private _vm: Promise<VMShow> | null = null;
  /** qemu pids of VMs banger started for us: killed by pid at the end if `vm delete` missed one. */
  private readonly _qemuPids = new Set<number>();
  private _cleanupRegistered = false;

  constructor(readonly b: Bench) {}

  /** images/default in the temp home: imported from BANGER_BENCH_IMAGE_DIR, else built (~60 s). */
  image(): Promise<string> {
    this._image ??= this._ensureImage();
    return this._image;
  }

  private async _ensureImage(): Promise<string> {
    this._registerCleanup();
    const src = process.env.BANGER_BENCH_IMAGE_DIR;
    if (src) {
      for (const f of ["vmlinuz", "rootfs.ext4", "initrd.img"]) {
        if (!existsSync(join(src, f))) throw new Error(`BANGER_BENCH_IMAGE_DIR=${src} has no ${f}`);
      }
      console.log(`  image: importing ${src} (BANGER_BENCH_IMAGE_DIR)`);
      await this.b.must(this.b.banger("image", "import", "--name", "default", "--kernel", join(src, "vmlinuz"), "--rootfs", join(src, "rootfs.ext4"), "--initrd", join(src, "initrd.img")));
    } else {
      console.log("  image: BANGER_BENCH_IMAGE_DIR unset: building one with `banger image build` (about a minute)");
      await this.b.must(this.b.banger("image", "build", "--name", "default"));
    }
    await this.b.noteDaemon();
    return join(this.b.home, "images", "default");
  }

  private _registerCleanup(): void {
    if (this._cleanupRegistered) return;
    this._cleanupRegistered = true;
    this.b.defer("delete bench VMs", () => this._deleteAll());
  }

  /** Delete every VM in the temp home (all are ours), then kill by pid any qemu that survived. */
  private async _deleteAll(): Promise<void> {
    const r = await this.b.exec(this.b.banger("vm", "list", "--json"));
    if (r.code === 0) {
      const parsed = JSON.parse(r.stdout) as VMShow[] | { vms: VMShow[] };
      const vms = Array.isArray(parsed) ? parsed : parsed.vms;
      for (const vm of vms) {
        if (vm.pid) this._qemuPids.add(vm.pid);
        const d = await this.b.exec(this.b.banger("vm", "delete", vm.name));
        if (d.code !== 0) console.error(`bench cleanup: vm delete ${vm.name}: ${d.stderr.trim()}`);
      }
    }
    for (const pid of this._qemuPids) {
      if (killPid(pid, "qemu")) console.error(`bench cleanup: killed leftover qemu pid ${pid}`);
    }
  }

  async show(name = VM_NAME): Promise<VMShow> {
    const s = await this.b.bangerJson<VMShow>("vm", "show", name);
    if (s.pid) this._qemuPids.add(s.pid);
    return s;
  }

  /** The shared VM, created and booted once (`vm create bx --start`). */
  vm(): Promise<VMShow> {
    this._vm ??= (async () => {
      await this.image();
      console.log(`  creating and booting VM ${VM_NAME} (vm create ${VM_NAME} --start)…`);
      await this.b.must(this.b.banger("vm", "create", VM_NAME, "--start"));
      return this.show();
    })();
    return this._vm;
  }

  /** The shared VM, running (started again if a section stopped it). */
  async running(): Promise<VMShow> {
    await this.vm();
    let s = await this.show();
    if (s.runtime.state !== "running" || !s.alive) {
      console.log(`  starting VM ${VM_NAME} again…`);
      await this.b.must(this.b.banger("vm", "start", VM_NAME));
      s = await this.show();
    }
    return s;
  }

  async stop(name = VM_NAME): Promise<void> {
    await this.b.must(this.b.banger("vm", "stop", name));
  }

  /** Is the recorded qemu still alive? (for sanity messages only) */
  alive(s: VMShow): boolean {
    return !!s.pid && pidAlive(s.pid, "qemu");
  }
}

/** OpenSSH to a banger guest with its own client key and the pinned host key (no trust-on-first-use). */
export class Ssh {
  readonly knownHosts: string;

  private constructor(readonly port: number, readonly key: string, knownHosts: string) {
    this.knownHosts = knownHosts;
  }

  /** Write `[127.0.0.1]:PORT <host key>` to a known_hosts file in dir. */
  static async forGuest(dir: string, port: number, keysDir: string, tag: string): Promise<Ssh> {
    const hostKey = (await Bun.file(join(keysDir, "host_ed25519.pub")).text()).trim();
    const kh = join(dir, `known_hosts-${tag}`);
    await Bun.write(kh, `[127.0.0.1]:${port} ${hostKey}\n`);
    return new Ssh(port, join(keysDir, "id_ed25519"), kh);
  }

  /** The options every call shares: no user config, pinned key, never a prompt. */
  base(extra: string[] = []): string[] {
    return [
      "ssh", "-F", "none", "-i", this.key, "-o", "IdentitiesOnly=yes",
      "-o", `UserKnownHostsFile=${this.knownHosts}`, "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
      ...extra, "-p", String(this.port), "root@127.0.0.1",
    ];
  }

  /** A fresh connection per command. */
  cmd(command: string, extra: string[] = []): string[] {
    return [...this.base(extra), command];
  }

  static readonly CONTROL_PATH = "/tmp/bb-cm-%p";

  /** Through a ControlMaster (the first call opens it; ControlPersist keeps it 60 s). */
  cm(command: string): string[] {
    return this.cmd(command, ["-o", "ControlMaster=auto", "-o", `ControlPath=${Ssh.CONTROL_PATH}`, "-o", "ControlPersist=60"]);
  }

  /** `ssh -O exit`: close the master. */
  cmExit(): string[] {
    return ["ssh", "-F", "none", "-o", `ControlPath=${Ssh.CONTROL_PATH}`, "-O", "exit", "-p", String(this.port), "root@127.0.0.1"];
  }
}
