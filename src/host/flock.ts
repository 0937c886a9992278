import { dlopen, FFIType } from "bun:ffi";
import { closeSync, openSync } from "node:fs";
import type { FileLocks } from "./types.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;

let libc: { symbols: { flock: (fd: number, op: number) => number } } | null = null;
function flock(fd: number, op: number): number {
  libc ??= dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } }) as never;
  return libc!.symbols.flock(fd, op);
}

/**
 * Non-blocking exclusive flock(2) on `path` (created 0600 if missing). The
 * kernel drops it when the process dies, so a kill -9 never leaves a stale
 * lock. Locks belong to the open file, so two calls in one process conflict
 * just like two processes do. Returns a release function, or null when held.
 * Never blocking: a blocking flock would freeze the daemon's event loop.
 */
export function tryLockFile(path: string): (() => void) | null {
  const fd = openSync(path, "a", 0o600);
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    return null;
  }
  return () => closeSync(fd);
}

/** Real file locks (flock). */
export function createFileLocks(): FileLocks {
  return { tryLock: tryLockFile };
}
