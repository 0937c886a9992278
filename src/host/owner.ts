import { BangerError } from "../shared/errors.ts";
import { ownedByMe, ownerUid } from "./owner-uid.ts";

/**
 * Refuse a path of another user's (uid from ownerUid; null, nothing there, is fine): their daemon
 * could read our requests (keys, payloads), and as root we would otherwise chmod or delete their files.
 */
export function refuseOwner(path: string, what: string, uid: number | null): void {
  if (!ownedByMe(uid)) {
    throw new BangerError("E_DAEMON", `${what} ${path} belongs to uid ${uid}, not to you (uid ${process.getuid?.()}): refusing to use it; set BANGER_HOME to a directory of your own`);
  }
}

/**
 * Refuse a state dir or socket that belongs to another user (refuseOwner).
 * A missing path is fine (we create it).
 */
export function refuseForeign(path: string, what: string, opts: { follow?: boolean } = {}): void {
  // required here, not imported: the CLI's hot path uses refuseForeignAsync and must not load node:fs (~1 ms)
  const fs = require("node:fs") as typeof import("node:fs");
  let uid: number;
  try {
    uid = (opts.follow ? fs.statSync(path) : fs.lstatSync(path)).uid;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  refuseOwner(path, what, uid);
}

/** refuseForeign for the CLI: the same refusal, following symlinks, without loading node:fs. */
export async function refuseForeignAsync(path: string, what: string): Promise<void> {
  refuseOwner(path, what, await ownerUid(path));
}
