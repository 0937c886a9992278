import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import type { FS } from "./types.ts";

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
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
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
