import { BangerError } from "../shared/errors.ts";
import type { VMRecord } from "../shared/model.ts";
import { vmPaths } from "../shared/paths.ts";
import type { FS, SSHTarget } from "./types.ts";

/**
 * Where and how to reach a VM's SSH server, with its pinned host key (its keys in VMDir/keys): what the daemon's
 * pool dials, and a plugin's connection that falls back to SSH.
 */
export async function sshTargetFor(fs: FS, vm: VMRecord): Promise<SSHTarget & { hostKey: string }> {
  if (!vm.runtime.sshPort) throw new BangerError("E_STATE", `vm ${vm.name} has no SSH endpoint`);
  const p = vmPaths(vm.runtime.vmDir);
  const privateKey = await fs.readText(p.clientKey);
  const hostKey = await fs.readText(p.hostPubKey);
  if (!privateKey || !hostKey) {
    throw new BangerError("E_STATE", `vm ${vm.name} has no SSH keys in ${p.keysDir} (a VM of an image imported without --initrd gets none: banger's initramfs is what gives it keys and agents)`);
  }
  return { host: vm.runtime.sshHost || "127.0.0.1", port: vm.runtime.sshPort, user: "root", privateKey, hostKey: hostKey.trim() };
}
