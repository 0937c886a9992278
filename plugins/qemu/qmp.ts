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
