import { emptyHandles, type VMHandles, type VMRecord } from "../core/model.ts";
import type { FS } from "../host/types.ts";
import type { VMMDriver } from "../vmm/driver.ts";
import { readHandlesFile, type HandlesFileStatus } from "./file.ts";

export interface Rediscovered {
  handles: VMHandles;
  /** "process": a live VM process was found; "scratch": only the file's contents; "none": neither. */
  source: "process" | "scratch" | "none";
  scratch: HandlesFileStatus;
}

/**
 * Rebuild a VM's handles after a daemon restart. A live process found by its
 * API socket wins over the scratch file's pid; when the process is dead the
 * scratch contents are still returned so cleanup can tear kernel state down.
 */
export async function rediscoverHandles(vm: VMRecord, driver: VMMDriver, fs: FS): Promise<Rediscovered> {
  const file = await readHandlesFile(fs, vm.runtime.vmDir);
  const scratch = file.handles ?? emptyHandles();
  const live = await driver.findProcess(vm);
  if (live) {
    return { handles: { ...scratch, pid: live.pid, pidStartTime: live.startTime }, source: "process", scratch: file.status };
  }
  return { handles: scratch, source: file.handles ? "scratch" : "none", scratch: file.status };
}
