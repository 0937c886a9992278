/**
 * What the bench ran on (cores, memory, kernel, KVM) and at which commit:
 * the facts bench/results.md prints above its table.
 */
import { cpus, loadavg, release, totalmem } from "node:os";
import { createFS } from "../../src/host/fs.ts";
import { kvmUsable } from "../../src/vmm/kvm.ts";
import type { Machine } from "./results.ts";

export async function machineInfo(): Promise<Machine> {
  // the same probe the qemu driver uses, so "usable" means banger would use KVM here
  const kvm = await kvmUsable({ fs: createFS() });
  const c = cpus();
  return {
    cores: c.length || navigator.hardwareConcurrency,
    memoryBytes: totalmem(),
    kernel: release(),
    kvmUsable: kvm.usable,
    kvmReason: kvm.reason,
    cpuModel: (c[0]?.model ?? "unknown cpu").replace(/\s+/g, " ").trim(),
    loadAvg: loadavg(),
  };
}

/** HEAD's short sha, with "+dirty" when the work tree has uncommitted changes. */
export async function gitSha(repo: string): Promise<string> {
  const head = Bun.spawnSync(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"], { stdout: "pipe", stderr: "ignore" });
  if (head.exitCode !== 0) return "unknown";
  const dirty = Bun.spawnSync(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], { stdout: "pipe", stderr: "ignore" });
  return head.stdout.toString().trim() + (dirty.stdout.toString().trim() ? "+dirty" : "");
}
