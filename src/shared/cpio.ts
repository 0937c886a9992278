
/** One member of a newc ("070701") cpio archive, as the kernel's initramfs unpacker reads it. */
export interface CpioEntry {
  /** Path without a leading slash, e.g. "banger-seed/hostname". */
  path: string;
  type: "file" | "dir" | "symlink";
  /** Permission bits, e.g. 0o755. */
  mode: number;
  /** File contents, or the symlink target. */
  data?: Uint8Array | string;
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

const _enc = new TextEncoder();

function _hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function _pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/**
 * Serialize entries as a newc cpio archive (owner root, mtime 0, so the
 * bytes depend only on the input). Parents must come before children.
 */
export function writeCpio(entries: CpioEntry[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  let ino = 1;
  const push = (name: string, mode: number, data: Uint8Array, nlink: number) => {
    const nameBytes = _enc.encode(`${name}\0`);
    const header =
      "070701" +
      _hex8(ino++) +
      _hex8(mode) +
      _hex8(0) + // uid
      _hex8(0) + // gid
      _hex8(nlink) +
      _hex8(0) + // mtime
      _hex8(data.length) +
      _hex8(0) + // devmajor
      _hex8(0) + // devminor
      _hex8(0) + // rdevmajor
      _hex8(0) + // rdevminor
      _hex8(nameBytes.length) +
      _hex8(0); // check
    chunks.push(_enc.encode(header), nameBytes, new Uint8Array(_pad4(110 + nameBytes.length)));
    chunks.push(data, new Uint8Array(_pad4(data.length)));
  };
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, "");
    if (!path || path.split("/").some((s) => s === "" || s === "." || s === "..")) {
      throw new Error(`cpio: bad path ${JSON.stringify(e.path)}`);
    }
    const data = typeof e.data === "string" ? _enc.encode(e.data) : (e.data ?? new Uint8Array());
    const type = e.type === "dir" ? S_IFDIR : e.type === "symlink" ? S_IFLNK : S_IFREG;
    push(path, type | (e.mode & 0o7777), e.type === "dir" ? new Uint8Array() : data, e.type === "dir" ? 2 : 1);
  }
  push("TRAILER!!!", 0, new Uint8Array(), 1);
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** gzip'd newc cpio, the form the kernel unpacks (and concatenates) as initramfs. */
export function writeCpioGz(entries: CpioEntry[]): Uint8Array {
  // Bun's own gzip: importing node:zlib at plugin load cost every daemon start ~8 ms
  return Bun.gzipSync(writeCpio(entries) as Uint8Array<ArrayBuffer>, { level: 9 });
}

/** Parse a newc archive (tests and debugging). */
export function readCpio(bytes: Uint8Array): { path: string; mode: number; data: Uint8Array }[] {
  const dec = new TextDecoder();
  const out: { path: string; mode: number; data: Uint8Array }[] = [];
  let off = 0;
  for (;;) {
    const header = dec.decode(bytes.subarray(off, off + 110));
    if (!header.startsWith("070701")) throw new Error(`cpio: bad magic at ${off}`);
    const field = (i: number) => parseInt(header.slice(6 + i * 8, 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = dec.decode(bytes.subarray(off + 110, off + 110 + nameSize - 1));
    off += 110 + nameSize;
    off += _pad4(off);
    const data = bytes.subarray(off, off + size);
    off += size;
    off += _pad4(off);
    if (name === "TRAILER!!!") return out;
    out.push({ path: name, mode, data });
  }
}

/** Split concatenated gzip members and parse each as a cpio archive. */
export function readConcatenatedCpioGz(bytes: Uint8Array): { path: string; mode: number; data: Uint8Array }[][] {
  const archives: { path: string; mode: number; data: Uint8Array }[][] = [];
  // gunzipSync decodes all members into one stream; cpio archives end at
  // their trailer, possibly followed by zero padding, so parse sequentially.
  // node:zlib here (loaded on use), not Bun.gunzipSync, which stops after the first member
  const { gunzipSync } = require("node:zlib") as typeof import("node:zlib");
  const all = gunzipSync(bytes);
  let off = 0;
  while (off < all.length) {
    while (off < all.length && all[off] === 0) off++;
    if (off >= all.length) break;
    const rest = all.subarray(off);
    const entries = readCpio(rest);
    archives.push(entries);
    off += _cpioLength(rest);
  }
  return archives;
}

function _cpioLength(bytes: Uint8Array): number {
  const dec = new TextDecoder();
  let off = 0;
  for (;;) {
    const header = dec.decode(bytes.subarray(off, off + 110));
    const field = (i: number) => parseInt(header.slice(6 + i * 8, 14 + i * 8), 16);
    const size = field(6);
    const nameSize = field(11);
    const name = dec.decode(bytes.subarray(off + 110, off + 110 + nameSize - 1));
    off += 110 + nameSize;
    off += _pad4(off);
    off += size;
    off += _pad4(off);
    if (name === "TRAILER!!!") return off;
  }
}
