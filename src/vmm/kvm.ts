import { configFrom, environ } from "../host/config.ts";
import { canOpenRW } from "../host/fs.ts";
import type { Host } from "../host/types.ts";

export interface KvmProbe {
  usable: boolean;
  /** Why: shown by `banger doctor` and in debug logs. */
  reason: string;
}

export interface KvmProbeOptions {
  /** Environment to read BANGER_ACCEL from (default environ(), src/host/config.ts). */
  env?: Record<string, string | undefined>;
  /** Default /dev/kvm. */
  devPath?: string;
  /** Default /sys/module/kvm_pvm: present when the PVM flavour of KVM is loaded. */
  pvmModulePath?: string;
  /** Can the device be opened read-write by us? Default: a real open(2). */
  canOpen?: (path: string) => Promise<boolean>;
}

/**
 * Is KVM really usable for a stock guest kernel? Not when /dev/kvm is missing
 * or cannot be opened, and not when it is kvm_pvm (which only runs PVM guest
 * kernels: a stock kernel hangs at "Probing EDD"). `BANGER_ACCEL=tcg|kvm`
 * overrides the probe.
 */
export async function kvmUsable(host: Pick<Host, "fs">, opts: KvmProbeOptions = {}): Promise<KvmProbe> {
  const env = opts.env ?? environ();
  const devPath = opts.devPath ?? "/dev/kvm";
  const pvmPath = opts.pvmModulePath ?? "/sys/module/kvm_pvm";
  const canOpen = opts.canOpen ?? canOpenRW;

  const forced = (configFrom(env).accel ?? "").trim().toLowerCase();
  if (forced === "tcg") return { usable: false, reason: "BANGER_ACCEL=tcg forces software emulation (TCG)" };
  if (forced === "kvm") return { usable: true, reason: "BANGER_ACCEL=kvm forces KVM" };

  if (!(await host.fs.exists(devPath))) {
    return { usable: false, reason: `${devPath} does not exist (no hardware virtualization; using TCG)` };
  }
  if (await host.fs.exists(pvmPath)) {
    return {
      usable: false,
      reason: `${devPath} is kvm_pvm (${pvmPath} exists): it only runs PVM guest kernels and a stock kernel hangs; using TCG`,
    };
  }
  if (!(await canOpen(devPath))) {
    return { usable: false, reason: `${devPath} cannot be opened read-write (permissions? add yourself to the kvm group); using TCG` };
  }
  return { usable: true, reason: `${devPath} is usable` };
}

/** The accelerator to pass to QEMU for a probe result. */
export function accelFor(probe: KvmProbe): "kvm" | "tcg" {
  return probe.usable ? "kvm" : "tcg";
}
