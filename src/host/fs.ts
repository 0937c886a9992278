import { constants } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { tempPathFor } from "../shared/temps.ts";
import type { DirEntry, FS } from "./types.ts";

/** Can this process open the path read-write (a device such as /dev/kvm)? A real open(2), closed at once. */
export async function canOpenRW(path: string): Promise<boolean> {
  try {
    const fh = await open(path, constants.O_RDWR);
    await fh.close();
    return true;
  } catch {
    return false;
  }
}

/** Write via temp file + fsync + rename so readers see the old or new content, never half. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = tempPathFor(path);
  const fh = await open(tmp, "w", mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    // a full disk fails the write, not the open: never leave the half-written temp file behind
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export function createFS(): FS {
  return {
    async readText(path) {
      try {
        return await readFile(path, "utf8");
      } catch {
        return null;
      }
    },
    async list(dir) {
      try {
        // withFileTypes reports what lstat would: a symlink stays a symlink
        return (await readdir(dir, { withFileTypes: true })).map(
          (e): DirEntry => ({ name: e.name, type: e.isSymbolicLink() ? "symlink" : e.isDirectory() ? "dir" : e.isFile() ? "file" : "other" }),
        );
      } catch {
        return [];
      }
    },
    writeAtomic: writeFileAtomic,
    exists: fileExists,
    async mkdirp(path, mode = 0o700) {
      await mkdir(path, { recursive: true, mode });
    },
    async rmrf(path) {
      await rm(path, { recursive: true, force: true });
    },
  };
}
