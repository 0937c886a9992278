import { emptyHandles, type VMHandles, type VMRecord } from "../shared/model.ts";
import type { FS, Procs } from "../host/types.ts";
import { sameProcess } from "../host/procs.ts";
import type { VMMDriver } from "../vmm/driver.ts";
import { readHandlesFile, type HandlesFileStatus } from "./file.ts";

export interface Rediscovered {
  handles: VMHandles;
  /** "process": a live VM process was found; "scratch": only the file's contents; "none": neither. */
  source: "process" | "scratch" | "none";
  scratch: HandlesFileStatus;
  /** Set when the handles are exactly what handles.json holds, so there is nothing to write back. */
  unchanged?: true;
}

/**
 * Rebuild a VM's handles after a daemon restart. A live process found by its
 * API socket wins over the scratch file's pid; when the process is dead the
 * scratch contents are still returned so cleanup can tear kernel state down.
 * With `procs`, a scratch pid whose process still has the recorded start time
 * is taken as is (same pid + same start time is the same process): the
 * driver's search, which scans every process, runs only when that fails.
 */
export async function rediscoverHandles(vm: VMRecord, driver: VMMDriver, fs: FS, procs?: Procs): Promise<Rediscovered> {
  const file = await readHandlesFile(fs, vm.runtime.vmDir);
  const scratch = file.handles ?? emptyHandles();
  // without this, re-adopting N VMs after kill -9 scanned /proc N times (20 test-driver VMs: 33 ms each)
  if (procs && file.handles && scratch.pid > 0 && scratch.pidStartTime > 0) {
    if (await sameProcess(procs, scratch.pid, scratch.pidStartTime)) return { handles: scratch, source: "process", scratch: file.status, unchanged: true };
  }
  const live = await driver.findProcess(vm);
  if (live) {
    return { handles: { ...scratch, pid: live.pid, pidStartTime: live.startTime }, source: "process", scratch: file.status };
  }
  return { handles: scratch, source: file.handles ? "scratch" : "none", scratch: file.status };
}
