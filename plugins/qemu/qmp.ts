import { BangerError, QmpClient, QmpError, qmpExecute } from "../../src/plugin-api.ts";

// the QMP client itself is the plugin API's (net-user talks to the same socket); these are the driver's uses of it
export { QmpClient, QmpError, qmpExecute };

/** Does a QEMU answer on this QMP socket (query-status)? Never throws. */
export async function qmpPing(path: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const status = (await qmpExecute(path, "query-status", undefined, timeoutMs)) as { status?: unknown } | undefined;
    return typeof status?.status === "string";
  } catch {
    return false;
  }
}

/** Ask the guest to power off (ACPI power button). True when QEMU accepted the request. */
export async function qmpPowerdown(path: string, timeoutMs = 1000): Promise<boolean> {
  try {
    await qmpExecute(path, "system_powerdown", undefined, timeoutMs);
    return true;
  } catch {
    return false;
  }
}

/**
 * Tell QEMU to exit now. QEMU may close the socket before its reply arrives,
 * so a close after the request was sent counts as accepted.
 */
export async function qmpQuit(path: string, timeoutMs = 1000): Promise<boolean> {
  let client: QmpClient;
  try {
    client = await QmpClient.connect(path, timeoutMs);
  } catch {
    return false;
  }
  try {
    await client.execute("quit", undefined, timeoutMs);
    return true;
  } catch (e) {
    return !(e instanceof QmpError) && !(e instanceof BangerError);
  } finally {
    client.close();
  }
}

/** A migration stream is bounded by the disk, not by QEMU's default 32 MiB/s cap. */
export const MAX_MIGRATE_BANDWIDTH = 16 * 1024 * 1024 * 1024;

/** Poll query-migrate until the migration completes; its failure (QEMU's own words) or the deadline is an error. */
async function _untilMigrated(c: QmpClient, what: string, timeoutMs: number): Promise<void> {
  for (let waited = 0; ; waited += 5) {
    const r = (await c.execute("query-migrate", undefined, timeoutMs)) as { status?: string; "error-desc"?: string };
    if (r.status === "completed") return;
    if (r.status === "failed" || r.status === "cancelled") throw new BangerError("E_INTERNAL", `qemu ${what} ${r.status}${r["error-desc"] ? `: ${r["error-desc"]}` : ""}`);
    if (waited >= timeoutMs) throw new BangerError("E_TIMEOUT", `qemu ${what} did not finish within ${timeoutMs} ms (status ${r.status ?? "none"})`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Migration options: capabilities to set first (x-ignore-shared on or off). */
export interface MigrateOptions {
  capabilities?: Record<string, boolean>;
}

async function _setCapabilities(c: QmpClient, capabilities: Record<string, boolean> | undefined): Promise<void> {
  // in QEMU 7.2 only QMP sets x-ignore-shared (-global migration.x-ignore-shared is refused)
  const list = Object.entries(capabilities ?? {}).map(([capability, state]) => ({ capability, state }));
  if (list.length) await c.execute("migrate-set-capabilities", { capabilities: list });
}

/**
 * Migrate a VM's memory and device state to `uri` (an exec: command) and
 * wait until it is written; the VM is left stopped (postmigrate) until `cont`.
 */
export async function qmpMigrateOut(path: string, uri: string, timeoutMs: number, o: MigrateOptions = {}): Promise<void> {
  const c = await QmpClient.connect(path, 2000);
  try {
    await _setCapabilities(c, o.capabilities);
    await c.execute("migrate-set-parameters", { "max-bandwidth": MAX_MIGRATE_BANDWIDTH });
    await c.execute("migrate", { uri });
    await _untilMigrated(c, "state save", timeoutMs);
  } finally {
    c.close();
  }
}

/** Load memory and device state into a QEMU started with `-incoming defer` and wait until it is in. */
export async function qmpMigrateIn(path: string, uri: string, timeoutMs: number, o: MigrateOptions = {}): Promise<void> {
  const c = await QmpClient.connect(path, 2000);
  try {
    await _setCapabilities(c, o.capabilities);
    await c.execute("migrate-incoming", { uri });
    await _untilMigrated(c, "state restore", timeoutMs);
  } finally {
    c.close();
  }
}
