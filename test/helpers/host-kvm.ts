import { closeSync, existsSync, openSync } from "node:fs";

export type KvmCase = "missing" | "pvm" | "no-rw" | "usable";

/**
 * What the KVM probe should say on this host, from independent looks (not
 * banger's code): /dev/kvm missing (with or without kvm_pvm loaded), kvm_pvm,
 * a device we cannot open read-write, or usable KVM. Tests that run the real
 * probe clear BANGER_ACCEL so the probe looks too.
 */
export function kvmLook(): { case: KvmCase; usable: boolean } {
  const c = _case();
  return { case: c, usable: c === "usable" };
}

function _case(): KvmCase {
  if (!existsSync("/dev/kvm")) return "missing";
  if (existsSync("/sys/module/kvm_pvm")) return "pvm";
  try {
    closeSync(openSync("/dev/kvm", "r+"));
  } catch {
    return "no-rw";
  }
  return "usable";
}

/** The words the probe's reason (and doctor's kvm finding) must contain for each case. */
export const KVM_REASON: Record<KvmCase, string> = {
  missing: "/dev/kvm does not exist",
  pvm: "kvm_pvm",
  "no-rw": "/dev/kvm cannot be opened read-write",
  usable: "/dev/kvm is usable",
};

/** A firecracker binary where banger looks for one (PATH, then /usr/sbin and /sbin), or null. */
export function firecrackerOnHost(): string | null {
  return Bun.which("firecracker", { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` });
}

/** The accelerator a daemon started with `env` should give QEMU: BANGER_ACCEL when it forces one, else the look's. */
export function expectedAccel(env: Record<string, string | undefined> = process.env): "kvm" | "tcg" {
  const forced = (env.BANGER_ACCEL ?? "").trim().toLowerCase();
  if (forced === "kvm" || forced === "tcg") return forced;
  return kvmLook().usable ? "kvm" : "tcg";
}
