import type { VMRecord } from "../shared/model.ts";
import type { FS, GuestSSH, SSHDialer } from "../host/types.ts";
import { sshTargetFor } from "../host/ssh-target.ts";
import type { GuestConnector } from "../core/plugin.ts";
import { readHandlesFile } from "../handles/file.ts";

/**
 * One SSH connection per VM, reused by every caller and redialled when it
 * drops. `dial` makes a new connection (the daemon: pinned target from
 * VMDir/keys; tests: their own), unless a connector (a plugin's
 * ctx.connectGuest) makes one first.
 */
export class SSHPool {
  private readonly conns = new Map<string, Promise<GuestSSH>>();
  private readonly connectors: GuestConnector[] = [];
  constructor(
    private readonly dial: (vm: VMRecord) => Promise<GuestSSH>,
    private readonly fs?: FS,
  ) {}

  /** Asked, in order, before `dial` (see PluginContext.connectGuest). */
  addConnector(connect: GuestConnector): void {
    this.connectors.push(connect);
  }

  async get(vm: VMRecord): Promise<GuestSSH> {
    const existing = this.conns.get(vm.id);
    if (existing) {
      try {
        const c = await existing;
        if (!c.closed) return c;
      } catch {}
      // only forget it if a concurrent caller has not already replaced it
      if (this.conns.get(vm.id) === existing) this.conns.delete(vm.id);
    }
    const p = this._connect(vm);
    this.conns.set(vm.id, p);
    p.catch(() => {
      if (this.conns.get(vm.id) === p) this.conns.delete(vm.id);
    });
    return p;
  }

  private async _connect(vm: VMRecord): Promise<GuestSSH> {
    if (this.connectors.length && this.fs) {
      const { handles } = await readHandlesFile(this.fs, vm.runtime.vmDir);
      for (const connect of handles ? this.connectors : []) {
        const c = await connect(vm, handles!);
        if (c) return c;
      }
    }
    return this.dial(vm);
  }

  /**
   * A connection to this VM someone else made to the pool's own target (the
   * guest plugin's, once the guest answers): the next get() uses it. One the
   * pool held goes.
   */
  adopt(vmId: string, conn: GuestSSH): void {
    const old = this.conns.get(vmId);
    this.conns.set(vmId, Promise.resolve(conn));
    old?.then((c) => c !== conn && c.close()).catch(() => {});
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

/** The daemon's pool: every VM reached through its pinned SSH target. */
export function vmSSHPool(dialer: SSHDialer, fs: FS): SSHPool {
  return new SSHPool(async (vm) => dialer.dial(await sshTargetFor(fs, vm)), fs);
}
