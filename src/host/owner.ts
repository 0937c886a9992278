import { lstatSync, statSync } from "node:fs";
import { BangerError } from "../shared/errors.ts";

/**
 * Refuse a state dir or socket that belongs to another user: their daemon
 * could read our requests (keys, payloads), and as root we would otherwise
 * chmod or delete their files. A missing path is fine (we create it).
 */
export function refuseForeign(path: string, what: string, opts: { follow?: boolean } = {}): void {
  let uid: number;
  try {
    uid = (opts.follow ? statSync(path) : lstatSync(path)).uid;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  const me = process.getuid?.() ?? uid;
  if (uid !== me) {
    throw new BangerError("E_DAEMON", `${what} ${path} belongs to uid ${uid}, not to you (uid ${me}): refusing to use it; set BANGER_HOME to a directory of your own`);
  }
}
