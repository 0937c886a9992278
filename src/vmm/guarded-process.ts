import type { VMHandles } from "../shared/model.ts";
import type { Host, ProcInfo } from "../host/types.ts";
import { sameProcess } from "../host/procs.ts";

/** A VM process as a driver acts on it: the pid and the start time that proves it is still the same process. */
export interface ProcTarget {
  pid: number;
  startTime: number;
}

/**
 * Process handling every VMM driver shares. A pid is only acted on while its
 * start time still matches, so a reused pid (a stranger) is never signalled.
 */
export function guardedProcesses(host: Host, pollMs: number) {
  /** The recorded process, only if it is still the same one (start time matches). */
  async function owned(handles: VMHandles | null): Promise<ProcInfo | null> {
    if (!handles || handles.pid <= 0) return null;
    return sameProcess(host.procs, handles.pid, handles.pidStartTime);
  }

  /** The live process to act on: the recorded one if still ours, else what `find` discovers (e.g. by its API socket). */
  async function target(handles: VMHandles | null, find: () => Promise<ProcTarget | null>): Promise<ProcTarget | null> {
    const o = await owned(handles);
    if (o) return { pid: o.pid, startTime: o.startTime };
    return find();
  }

  async function gone(t: ProcTarget): Promise<boolean> {
    return !(await sameProcess(host.procs, t.pid, t.startTime));
  }

  async function waitGone(t: ProcTarget, ms: number): Promise<boolean> {
    const deadline = host.clock.now().getTime() + ms;
    for (;;) {
      if (await gone(t)) return true;
      if (host.clock.now().getTime() >= deadline) return false;
      await host.clock.sleep(pollMs);
    }
  }

  /** SIGKILL only a process whose pid and start time are what we expect (pid reuse guard). */
  async function killGuarded(t: ProcTarget): Promise<void> {
    if (await gone(t)) return;
    host.procs.kill(t.pid, "SIGKILL");
  }

  return { owned, target, gone, waitGone, killGuarded };
}
