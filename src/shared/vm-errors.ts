import { BangerError } from "./errors.ts";
import type { VMRecord } from "./model.ts";

/**
 * The one line for a VM that is not running, wherever it is found so (exec, stats, sessions): why, and the way on.
 * Recorded running or paused, its process is gone (a crash not yet noticed): said so, not the stale record.
 */
export function notRunningError(vm: VMRecord): BangerError {
  const why = vm.runtime.state === "running" || vm.runtime.state === "paused" ? "its process is gone" : `state: ${vm.runtime.state}`;
  return new BangerError("E_STATE", `vm ${vm.name} is not running (${why}); start it with \`banger vm start ${vm.name}\``);
}
