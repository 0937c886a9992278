import { BangerError } from "../shared/errors.ts";
import type { VMMDriver } from "./driver.ts";

/** Default VMM order: Firecracker where it can run (binary + usable KVM), else QEMU (KVM or TCG). */
export const VMM_PREFERENCE = ["firecracker", "qemu"] as const;

async function _usable(d: VMMDriver): Promise<{ usable: boolean; reason: string }> {
  return d.usable ? d.usable() : { usable: true, reason: "" };
}

/**
 * The VMM a new VM gets. An explicit choice must be loaded and usable here
 * (one-line error otherwise); no choice takes `fallback` when one is
 * configured, else the first usable driver in VMM_PREFERENCE.
 */
export async function chooseVmm(drivers: ReadonlyMap<string, VMMDriver>, requested: string | undefined, fallback?: string): Promise<string> {
  if (requested !== undefined) {
    const d = drivers.get(requested);
    if (!d) {
      throw new BangerError("E_BAD_REQUEST", `unknown vmm "${requested}" (loaded: ${[...drivers.keys()].join(", ") || "none"})`);
    }
    const u = await _usable(d);
    if (!u.usable) throw new BangerError("E_BAD_REQUEST", `vmm ${requested} cannot run on this host: ${u.reason}`);
    return requested;
  }
  if (fallback !== undefined) return fallback;
  for (const name of VMM_PREFERENCE) {
    const d = drivers.get(name);
    if (d && (await _usable(d)).usable) return name;
  }
  // nothing preferred is usable: let checkCreate name what is loaded
  return "qemu";
}
