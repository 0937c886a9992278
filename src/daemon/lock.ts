/** One daemon per BANGER_HOME: an flock on daemon.lock (see src/host/flock.ts). */
export { tryLockFile } from "../host/flock.ts";
