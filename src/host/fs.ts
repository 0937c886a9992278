import { closeSync, constants, createReadStream, openSync, readSync, writeSync, type Stats } from "node:fs";
import { appendFile, chmod, copyFile, link, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, stat, statfs, unlink, writeFile, type FileHandle } from "node:fs/promises";
import { tempPathFor } from "../shared/temps.ts";
import type { DirEntry, FifoEnd, FileStat, FS } from "./types.ts";

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

/** The first `length` bytes of `buf` at `position` of an open file, over as many writes as that takes. */
async function _writeAt(fh: FileHandle, buf: Uint8Array, length: number, position: number): Promise<void> {
  for (let w = 0; w < length; ) w += (await fh.write(buf, w, length - w, position + w)).bytesWritten;
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

/** The last `maxBytes` of a file as text (a serial console's end), through an FS; "" when it is empty, null when it is missing or unreadable. */
export async function fileTail(fs: Pick<FS, "stat" | "readRange">, path: string, maxBytes = 16384): Promise<string | null> {
  try {
    const size = (await fs.stat(path))?.size;
    if (size === undefined) return null;
    const len = Math.min(size, maxBytes);
    return new TextDecoder().decode(await fs.readRange(path, size - len, len));
  } catch {
    return null;
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

/** Free bytes (for an unprivileged user) on the filesystem holding an existing path, or null. statfs(2). */
export async function freeBytes(path: string): Promise<number | null> {
  try {
    const s = await statfs(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

function _fileStat(s: Stats): FileStat {
  const type = s.isSymbolicLink() ? "symlink" : s.isDirectory() ? "dir" : s.isFile() ? "file" : s.isSocket() ? "socket" : "other";
  return { type, size: s.size, allocated: s.blocks * 512, mode: s.mode & 0o7777 };
}

function _orNull(e: unknown): null {
  if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return null;
  throw e;
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
    async readBytes(path) {
      return new Uint8Array(await readFile(path));
    },
    async readRange(path, offset, length) {
      const fh = await open(path, "r");
      try {
        const buf = Buffer.alloc(length);
        const { bytesRead } = await fh.read(buf, 0, length, offset);
        return new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
      } finally {
        await fh.close();
      }
    },
    async *readStream(path, chunkBytes = 4 << 20) {
      for await (const chunk of createReadStream(path, { highWaterMark: chunkBytes })) yield chunk as Buffer;
    },
    async appendFile(path, data, mode = 0o600) {
      await appendFile(path, data, { mode });
    },
    async writeFile(path, data, mode = 0o600) {
      await writeFile(path, data, { mode });
    },
    rename,
    link,
    copyFile: (from, to) => copyFile(from, to),
    async writeRanges(path, ranges, mode = 0o600) {
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT, mode);
      try {
        // pieces that follow one another go out in one write
        for (let i = 0; i < ranges.length; ) {
          let j = i + 1;
          let end = ranges[i]!.offset + ranges[i]!.data.length;
          while (j < ranges.length && ranges[j]!.offset === end && end - ranges[i]!.offset < 4 << 20) end += ranges[j++]!.data.length;
          const buf = j - i === 1 ? ranges[i]!.data : Buffer.concat(ranges.slice(i, j).map((r) => r.data));
          await _writeAt(fh, buf, buf.length, ranges[i]!.offset);
          i = j;
        }
      } finally {
        await fh.close();
      }
    },
    async copyRanges(from, to, ranges) {
      const src = await open(from, "r");
      const dst = await open(to, "r+").catch(async (e: unknown) => {
        await src.close();
        throw e;
      });
      try {
        let copied = 0;
        const buf = Buffer.allocUnsafe(Math.min(4 << 20, Math.max(0, ...ranges.map((r) => r.length))));
        for (const r of ranges) {
          for (let done = 0; done < r.length; ) {
            const n = Math.min(buf.length, r.length - done);
            const { bytesRead } = await src.read(buf, 0, n, r.from + done);
            if (bytesRead !== n) throw Object.assign(new Error(`${from}: ${bytesRead} of ${n} bytes at ${r.from + done}`), { code: "EIO" });
            await _writeAt(dst, buf, n, r.to + done);
            done += n;
          }
          copied += r.length;
        }
        return copied;
      } finally {
        await src.close();
        await dst.close();
      }
    },
    chmod,
    async stat(path) {
      return stat(path).then(_fileStat, _orNull);
    },
    async lstat(path) {
      return lstat(path).then(_fileStat, _orNull);
    },
    async readlink(path) {
      return readlink(path).catch(() => null);
    },
    mkdtemp: (prefix) => mkdtemp(prefix),
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
    async listTree(dir) {
      try {
        return await readdir(dir, { recursive: true });
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
    async openFifo(path, end) {
      const st = await stat(path).catch(_orNull);
      if (!st?.isFIFO()) throw Object.assign(new Error(`not a FIFO: ${path}`), { code: st ? "EINVAL" : "ENOENT" });
      return _fifoEnd(openSync(path, (end === "read" ? constants.O_RDONLY : constants.O_WRONLY) | constants.O_NONBLOCK));
    },
  };
}

/** A non-blocking FIFO fd as a FifoEnd: EAGAIN is "nothing yet" or "full", not an error. */
function _fifoEnd(fd: number): FifoEnd {
  let open = true;
  const buf = Buffer.alloc(65536);
  const again = (e: unknown) => (e as { code?: string }).code === "EAGAIN";
  return {
    read() {
      const parts: Uint8Array[] = [];
      for (;;) {
        let n: number;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch (e) {
          if (again(e)) break;
          throw e;
        }
        if (n <= 0) break;
        parts.push(Uint8Array.from(buf.subarray(0, n)));
        if (n < buf.length) break;
      }
      return parts.length === 1 ? parts[0]! : new Uint8Array(Buffer.concat(parts));
    },
    write(data) {
      try {
        return writeSync(fd, data);
      } catch (e) {
        if (again(e)) return 0;
        throw e;
      }
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
