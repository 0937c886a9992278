import { dlopen, FFIType } from "bun:ffi";
import { closeSync, openSync } from "node:fs";

const LOCK_EX = 2;
const LOCK_NB = 4;

let libc: { symbols: { flock: (fd: number, op: number) => number } } | null = null;
function flock(fd: number, op: number): number {
  libc ??= dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } }) as never;
  return libc!.symbols.flock(fd, op);
}

/**
 * One daemon per BANGER_HOME: an flock on daemon.lock. The kernel drops it
 * when the process dies, so a kill -9'd daemon never leaves a stale lock.
 * Returns a release function, or null when another process holds it.
 */
export function tryLockFile(path: string): (() => void) | null {
  const fd = openSync(path, "a", 0o600);
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    return null;
  }
  return () => closeSync(fd);
}
