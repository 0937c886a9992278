import { BangerError } from "../core/errors.ts";
import type { VMRecord } from "../core/model.ts";
import { vmPaths } from "../core/paths.ts";
import type { FS, GuestSSH, SSHDialer, SSHTarget } from "../host/types.ts";

/** Where and how to reach a VM's SSH server, with its pinned host key. */
export async function sshTargetFor(fs: FS, vm: VMRecord): Promise<SSHTarget> {
  if (!vm.runtime.sshPort) throw new BangerError("E_STATE", `vm ${vm.name} has no SSH endpoint`);
  const p = vmPaths(vm.runtime.vmDir);
  const privateKey = await fs.readText(p.clientKey);
  const hostKey = await fs.readText(p.hostPubKey);
  if (!privateKey || !hostKey) throw new BangerError("E_STATE", `vm ${vm.name} has no SSH keys in ${p.keysDir}`);
  return { host: vm.runtime.sshHost || "127.0.0.1", port: vm.runtime.sshPort, user: "root", privateKey, hostKey: hostKey.trim() };
}

/** One SSH connection per running VM, reused across requests and redialled when it drops. */
export class SSHPool {
  private readonly conns = new Map<string, Promise<GuestSSH>>();
  constructor(private readonly dialer: SSHDialer, private readonly fs: FS) {}

  async get(vm: VMRecord): Promise<GuestSSH> {
    const existing = this.conns.get(vm.id);
    if (existing) {
      try {
        const c = await existing;
        if (!c.closed) return c;
      } catch {}
      this.conns.delete(vm.id);
    }
    const p = sshTargetFor(this.fs, vm).then((t) => this.dialer.dial(t));
    this.conns.set(vm.id, p);
    p.catch(() => this.conns.delete(vm.id));
    return p;
  }

  drop(vmId: string): void {
    const p = this.conns.get(vmId);
    this.conns.delete(vmId);
    p?.then((c) => c.close()).catch(() => {});
  }

  closeAll(): void {
    for (const id of [...this.conns.keys()]) this.drop(id);
  }
}
