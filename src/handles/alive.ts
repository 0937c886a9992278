import type { VMHandles, VMRecord } from "../shared/model.ts";
import type { Procs } from "../host/types.ts";
import { sameProcess } from "../host/procs.ts";
import type { VMMDriver } from "../vmm/driver.ts";

/**
 * The single liveness check: the recorded pid exists, is the same process
 * (start time matches, so a reused pid doesn't count) and the VM's API
 * socket answers. Nothing else inspects pids.
 */
export async function vmAlive(vm: VMRecord, handles: VMHandles | null, driver: VMMDriver, procs: Procs): Promise<boolean> {
  if (!handles || handles.pid <= 0) return false;
  if (!(await sameProcess(procs, handles.pid, handles.pidStartTime))) return false;
  return driver.apiAnswers(vm);
}
