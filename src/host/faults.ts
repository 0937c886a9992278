/**
 * Crash fault injection, for tests only. When BANGER_FAULT names a step
 * (e.g. `create:after-disk`), the daemon SIGKILLs itself the first time it
 * reaches that step, so tests can check that a daemon dying at any step
 * leaves banger consistent and the operation retryable. Unset (always, in
 * normal use) it does nothing. `BANGER_FAULT_SKIP=n` lets the first n hits
 * pass, to reach a later occurrence of the same step.
 */

import { writeOut } from "./stdio.ts";
import { config } from "./config.ts";

/** Every step a fault can be armed at; tests iterate over this list. */
export const FAULT_POINTS = [
  "create:after-row",
  "create:after-disk",
  "create:before-commit",
  "start:after-starting",
  "start:after-launch",
  "start:after-handles",
  "start:before-running",
  "session:after-row",
  "session:after-launch",
  "send:before-exec",
  "send:mid-upload",
  "send:after-exec",
  "workspace:before-extract",
  "workspace:after-extract",
  "stop:after-stopping",
  "stop:after-kill",
  "delete:after-deleting",
  "delete:after-rmrf",
  "pause:after-vmm",
  "resume:after-vmm",
  "snapshot:after-row",
  "snapshot:after-state",
  "snapshot:after-disks",
  "snapshot:before-commit",
  "snapshot:after-commit",
  "rollback:after-stop",
  "rollback:after-disks",
  "snapshot-rm:after-mark",
  "clone:after-disks",
  "snapshot:in-receiver",
  "snapshot:streaming",
  "snapshot:ram-streaming",
  "e2b:after-vm",
  "e2b:after-pause",
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Steps inside the QEMU driver's own work, which the fake VMM never reaches: test/e2e/faults.test.ts crashes there. */
export const QEMU_ONLY_FAULT_POINTS: readonly FaultPoint[] = ["snapshot:in-receiver", "snapshot:streaming", "snapshot:ram-streaming"];
/** Steps reached only through the E2B endpoint (no CLI command gets there): test/integration/e2b.test.ts crashes there. */
export const E2B_FAULT_POINTS: readonly FaultPoint[] = ["e2b:after-vm", "e2b:after-pause"];

let _hits = 0;

/**
 * A payload as stdin for a guest command; when BANGER_FAULT names this step,
 * the daemon dies after sending the first half (a crash mid-upload).
 */
export function faultMidStream(point: FaultPoint, payload: Uint8Array): Uint8Array | AsyncIterable<Uint8Array> {
  if (config.fault !== point) return payload;
  return (async function* () {
    yield payload.subarray(0, Math.floor(payload.length / 2));
    await Bun.sleep(200); // let the half reach the guest before we die
    await faultPoint(point);
    yield payload.subarray(Math.floor(payload.length / 2));
  })();
}

/** Die here (SIGKILL, no cleanup of any kind) when BANGER_FAULT names this step. */
export async function faultPoint(point: FaultPoint): Promise<void> {
  if (config.fault !== point) return;
  if (_hits++ < config.faultSkip) return;
  // synchronous: a queued stderr write dies with the SIGKILL below (seen under load)
  writeOut(2, `${new Date().toISOString()} WARN fault injection: SIGKILL at ${point}\n`);
  process.kill(process.pid, "SIGKILL");
  await new Promise(() => {}); // never resume: the signal is on its way
}
