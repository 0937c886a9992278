import { existsSync, lstatSync, readdirSync } from "node:fs";
import type { DirEntry } from "./types.ts";

/**
 * Synchronous lstat/readdir for the walks over every file of a repo (a
 * workspace push and its manifest): thousands of calls in a row, where one
 * syscall each beats as many awaited promises. Symlinks are never followed
 * except by existsSync.
 */

/** lstat's exact numbers (bigint: nanosecond times, inode), for "did this file change?". */
export interface ExactStat {
  mode: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
}

/** Is anything (a dangling symlink too) at this path? */
export function lexistsSync(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Does the path exist, symlinks followed? */
export { existsSync };

/** lstat(2) of the path, or null when it cannot be had. */
export function lstatExactSync(path: string): ExactStat | null {
  try {
    const s = lstatSync(path, { bigint: true });
    return { mode: s.mode, size: s.size, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, ino: s.ino };
  } catch {
    return null;
  }
}

/** A dir's entries typed as lstat sees them, or null when it cannot be read. */
export function readDirSync(dir: string): DirEntry[] | null {
  try {
    return readdirSync(dir, { withFileTypes: true }).map(
      (e): DirEntry => ({ name: e.name, type: e.isSymbolicLink() ? "symlink" : e.isDirectory() ? "dir" : e.isFile() ? "file" : "other" }),
    );
  } catch {
    return null;
  }
}

/** What lstat says is at the path (a symlink is a symlink), or null when nothing is. */
export function lstatTypeSync(path: string): DirEntry["type"] | null {
  try {
    const s = lstatSync(path);
    return s.isSymbolicLink() ? "symlink" : s.isDirectory() ? "dir" : s.isFile() ? "file" : "other";
  } catch {
    return null;
  }
}
