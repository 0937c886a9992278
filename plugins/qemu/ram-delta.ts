/**
 * A snapshot of a VM whose RAM is a snapshot's RAM file mapped private (a
 * clone, a warm start, a rollback), without streaming its RAM: QEMU 7.2
 * cannot background-snapshot such RAM (userfaultfd write-protect takes
 * anonymous memory only), so the receiver's way stops the guest while all of
 * it streams (~0.55 s for 256 MiB here). The pages such a VM has written are
 * the only ones that differ from the file it maps, and the kernel says which
 * they are (/proc/PID/pagemap: present and not a file page, or swapped):
 * their copy over a copy of that file is the new RAM file. The device state
 * comes from QMP xen-save-devices-state (every section but RAM's, ~5 ms),
 * spliced into the mapped snapshot's own stream in place of its device
 * sections, after its RAM sections (the small blocks: ROMs and ACPI tables,
 * which the guest does not write, and the mapped block, ignored), so that a
 * restore loads it as any other x-ignore-shared stream. QEMU 7.2's
 * xen-load-devices-state is no way back: it asserts on its exit (its
 * migration yank instance was never registered).
 *
 * The stream format read here is QEMU's (migration/savevm.c, ram.c):
 * sections START 1, PART 2, END 3, FULL 4, each ended by a footer 0x7e + id;
 * EOF 0; the JSON description 6 last. Anything else is refused and the
 * caller streams as before.
 */

/** Page size of the guest's RAM in the stream and in pagemap (x86_64). */
export const PAGE = 4096;

const _SECTION_START = 1;
const _SECTION_PART = 2;
const _SECTION_END = 3;
const _SECTION_FULL = 4;
const _VMDESCRIPTION = 6;
const _FOOTER = 0x7e;
const _EOF = 0;
const _MAGIC = [0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3]; // "QEVM", version 3
// RAM record flags (ram.c)
const _ZERO = 0x02;
const _MEM_SIZE = 0x04;
const _PAGE = 0x08;
const _EOS = 0x10;
const _CONTINUE = 0x20;
/** The capability's name as the configuration lists it: its length, then its name. */
const _IGNORE_SHARED = new Uint8Array([15, ...new TextEncoder().encode("x-ignore-shared")]);
/** The RAM section's start after its id: "ram" by its length, instance 0, version 4. */
const _RAM_SECTION_NAME = new Uint8Array([3, 0x72, 0x61, 0x6d, 0, 0, 0, 0, 0, 0, 0, 4]);

/** A stream this splicer does not take: the caller saves the way it did before. */
export class StreamNotSpliceable extends Error {}

/**
 * The RAM file a QEMU maps private (`memory-backend-file,…,mem-path=P,share=off`
 * in its argv), or null: anonymous RAM, or RAM it writes through to its file.
 */
export function privateRamFile(cmdline: readonly string[]): string | null {
  for (let i = 1; i < cmdline.length; i++) {
    if (cmdline[i - 1] !== "-object" || !cmdline[i]!.startsWith("memory-backend-file,")) continue;
    // QEMU option syntax: fields split at single commas; ",," is a literal comma
    const fields = cmdline[i]!.replaceAll(",,", "\0").split(",").map((f) => f.replaceAll("\0", ","));
    const path = fields.find((f) => f.startsWith("mem-path="))?.slice("mem-path=".length);
    const shared = fields.find((f) => f.startsWith("share="))?.slice("share=".length);
    if (path && shared !== "on") return path;
  }
  return null;
}

/** One mapping of a file in a process: its address range and the file offset it starts at. */
export interface Mapping {
  start: number;
  end: number;
  fileOffset: number;
}

/** Every mapping of `path` in a /proc/PID/maps text (QEMU may split one RAM block into several). */
export function mappingsOf(maps: string, path: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of maps.split("\n")) {
    // address perms offset dev inode path: the path is the rest of the line, after the padding
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (m && m[4] === path) out.push({ start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), fileOffset: parseInt(m[3]!, 16) });
  }
  return out;
}

/** A run of pages: `count` pages from page `first` (of the file). */
export interface PageRun {
  first: number;
  count: number;
}

/**
 * The pages of one mapping that no longer are the file's (present and not a
 * file page: written, so copied on write; or swapped out, which only
 * anonymous pages are), from its pagemap entries (8 bytes each, little
 * endian), as runs of file pages. Runs less than `mergeGap` pages apart are
 * one run: a page between them is the file's own, which a copy writes back
 * unchanged, and fewer reads cost less than the pages they carry.
 */
export function writtenRuns(pagemap: Uint8Array, m: Mapping, mergeGap = 16): PageRun[] {
  const view = new DataView(pagemap.buffer, pagemap.byteOffset, pagemap.byteLength);
  const firstPage = m.fileOffset / PAGE;
  const runs: PageRun[] = [];
  for (let i = 0; i < pagemap.byteLength / 8; i++) {
    const hi = view.getUint32(i * 8 + 4, true);
    const present = (hi & 0x80000000) !== 0;
    const swapped = (hi & 0x40000000) !== 0;
    const filePage = (hi & 0x20000000) !== 0;
    if (!((present && !filePage) || swapped)) continue;
    const last = runs.at(-1);
    if (last && firstPage + i - (last.first + last.count) <= mergeGap) last.count = firstPage + i + 1 - last.first;
    else runs.push({ first: firstPage + i, count: 1 });
  }
  return runs;
}

function _be32(b: Uint8Array, o: number): number {
  if (o + 4 > b.length) throw new StreamNotSpliceable("the stream ends inside a field");
  return ((b[o]! << 24) >>> 0) + (b[o + 1]! << 16) + (b[o + 2]! << 8) + b[o + 3]!;
}

function _be64(b: Uint8Array, o: number): bigint {
  return (BigInt(_be32(b, o)) << 32n) + BigInt(_be32(b, o + 4));
}

function _startsWithMagic(b: Uint8Array): boolean {
  return b.length > _MAGIC.length && _MAGIC.every((x, i) => b[i] === x);
}

function _indexOf(b: Uint8Array, needle: Uint8Array, from: number): number {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).indexOf(needle, from);
}

/**
 * One piece of the RAM sections, as ram.c writes them, with where it starts and ends in the stream: a section's
 * header or footer; the block list's total, or one of its blocks (name and used length, then with x-ignore-shared
 * its guest address); a page record (its block, its offset in the block, where its bytes start: 4096 of them, or
 * for a ZERO record the one byte the page is filled with); the end of a section's records.
 */
type _RamPiece =
  | { kind: "header" | "footer" | "list" | "block" | "end-of-records"; start: number; end: number }
  | { kind: "page"; start: number; end: number; block: string; offset: number; at: number; zero: boolean };

/**
 * The RAM sections of a stream from `at` (the START section's first byte), piece by piece; returns where the
 * device sections begin. `addresses`: the stream was saved with x-ignore-shared (each listed block carries its
 * address). Throws StreamNotSpliceable for anything else among them.
 */
function* _ramPieces(b: Uint8Array, at: number, addresses: boolean): Generator<_RamPiece, number> {
  if (b[at] !== _SECTION_START || b[at + 5] !== 3 || b[at + 6] !== 0x72 || b[at + 7] !== 0x61 || b[at + 8] !== 0x6d) throw new StreamNotSpliceable("no RAM section where it should start");
  const sectionId = _be32(b, at + 1);
  let o = at;
  let block = "";
  for (;;) {
    const kind = b[o];
    if (kind !== _SECTION_START && kind !== _SECTION_PART && kind !== _SECTION_END) break;
    if (_be32(b, o + 1) !== sectionId) throw new StreamNotSpliceable("a section other than RAM's among RAM's");
    const head = kind === _SECTION_START ? 5 + 1 + 3 + 8 : 5;
    yield { kind: "header", start: o, end: o + head };
    o += head;
    for (;;) {
      const start = o;
      const word = _be64(b, o);
      o += 8;
      const flags = Number(word & 0xfffn);
      if (flags & _MEM_SIZE) {
        yield { kind: "list", start, end: o };
        for (let left = word & ~0xfffn; left > 0n; ) {
          const n = b[o];
          if (n === undefined) throw new StreamNotSpliceable("the stream ends inside the RAM block list");
          const length = _be64(b, o + 1 + n);
          if (length === 0n) throw new StreamNotSpliceable("a RAM block of no length");
          const end = o + 1 + n + 8 + (addresses ? 8 : 0);
          yield { kind: "block", start: o, end };
          o = end;
          left -= length;
        }
        continue;
      }
      if (flags & _EOS) {
        yield { kind: "end-of-records", start, end: o };
        break;
      }
      if (!(flags & (_ZERO | _PAGE)) || flags & ~(_ZERO | _PAGE | _CONTINUE)) throw new StreamNotSpliceable(`a RAM record with flags ${flags.toString(16)} (compressed or another format)`);
      if (!(flags & _CONTINUE)) {
        const n = b[o] ?? 0;
        block = new TextDecoder().decode(b.subarray(o + 1, o + 1 + n));
        o += 1 + n;
      }
      const dataAt = o;
      o += flags & _ZERO ? 1 : PAGE;
      if (o > b.length) throw new StreamNotSpliceable("the stream ends inside a page");
      yield { kind: "page", start, end: o, block, offset: Number(word & ~0xfffn), at: dataAt, zero: (flags & _ZERO) !== 0 };
    }
    if (b[o] !== _FOOTER || _be32(b, o + 1) !== sectionId) throw new StreamNotSpliceable("a RAM section without its footer");
    yield { kind: "footer", start: o, end: o + 5 };
    o += 5;
    if (kind === _SECTION_END) break;
  }
  if (b[o] !== _SECTION_FULL) throw new StreamNotSpliceable("no device sections after the RAM sections");
  return o;
}

/** Where the device sections begin: past every RAM piece. */
function _afterRam(b: Uint8Array, at: number, addresses: boolean): number {
  const walk = _ramPieces(b, at, addresses);
  for (let r = walk.next(); ; r = walk.next()) if (r.done) return r.value;
}

/** A snapshot's stream as spliceDeviceState takes it: its bytes, where its device sections begin and where its description does. */
export interface SpliceableStream {
  bytes: Uint8Array;
  devicesAt: number;
  descriptionAt: number;
}

/**
 * `mapped` (an x-ignore-shared save: header, configuration, RAM sections,
 * device sections, EOF, description) read for spliceDeviceState: where its
 * device sections begin. Throws StreamNotSpliceable for anything else.
 */
export function spliceable(mapped: Uint8Array): SpliceableStream {
  if (!_startsWithMagic(mapped)) throw new StreamNotSpliceable("not a QEMU migration stream of version 3");
  // its configuration names x-ignore-shared: the RAM block list then carries each block's address, and the mapped block no pages
  if (_indexOf(mapped, _IGNORE_SHARED, _MAGIC.length) < 0) throw new StreamNotSpliceable("the snapshot's stream was not saved with x-ignore-shared");
  // the RAM section's start: START, id, "ram", instance 0, version 4
  const at = _indexOf(mapped, _RAM_SECTION_NAME, _MAGIC.length) - 5;
  if (at < 0 || mapped[at] !== _SECTION_START) throw new StreamNotSpliceable("no RAM section");
  const devicesAt = _afterRam(mapped, at, true);
  // the description, last: 6, its length, JSON (kept for tools that read it; the loader asks for it)
  let descriptionAt = mapped.length;
  for (let i = mapped.length - 6; i > devicesAt; i--) {
    if (mapped[i] === _VMDESCRIPTION && mapped[i - 1] === _EOF && _be32(mapped, i + 1) === mapped.length - i - 5 && mapped[i + 5] === 0x7b) {
      descriptionAt = i;
      break;
    }
  }
  return { bytes: mapped, devicesAt, descriptionAt };
}

/**
 * `mapped`'s stream with its device sections and EOF replaced by those of
 * `devices` (xen-save-devices-state: header, device sections, EOF). Throws
 * StreamNotSpliceable for a device stream of another shape.
 */
export function spliceDeviceState(mapped: SpliceableStream, devices: Uint8Array): Uint8Array {
  if (!_startsWithMagic(devices)) throw new StreamNotSpliceable("not a QEMU migration stream of version 3");
  if (devices[devices.length - 1] !== _EOF || devices[_MAGIC.length] !== _SECTION_FULL) throw new StreamNotSpliceable("the device state is not whole device sections");
  return Buffer.concat([mapped.bytes.subarray(0, mapped.devicesAt), devices.subarray(_MAGIC.length), mapped.bytes.subarray(mapped.descriptionAt)]);
}

/** One page of a RAM block as a whole stream carries it: its offset in the block, and where its bytes are in the stream (or the byte it is filled with). */
export interface StreamPage {
  offset: number;
  at: number;
  fill?: number;
}

/** The configuration's subsection naming capability x-ignore-shared: version 1, one capability, then _IGNORE_SHARED. */
const _IGNORE_SHARED_CAPABILITY = Buffer.concat([new Uint8Array([0x05, 26]), new TextEncoder().encode("configuration/capabilities"), new Uint8Array([0, 0, 0, 1, 0, 0, 0, 1]), _IGNORE_SHARED]);

/**
 * A whole stream (a VM saved stopped, RAM and all: one on `--net tap`) split
 * into the pages of one RAM block (`block`, the guest's RAM: pc.ram) and the
 * stream a restore that maps those pages from a file takes: the same
 * sections, with x-ignore-shared named in its configuration, each RAM
 * block's guest address in the block list (0: checked only for a block
 * the restoring QEMU shares, and it shares none), and no record of `block`.
 * Its zero pages are left out (holes in the file); a page filled with
 * another byte (a record of flag ZERO with that byte) keeps it as `fill`.
 * Throws StreamNotSpliceable for a stream of another shape (already
 * x-ignore-shared, compressed, other sections among RAM's).
 */
export function splitWholeStream(whole: Uint8Array, block = "pc.ram"): { stream: Uint8Array; pages: StreamPage[] } {
  if (!_startsWithMagic(whole)) throw new StreamNotSpliceable("not a QEMU migration stream of version 3");
  // the configuration section: 7, the machine type's length and name; then no subsection (no capability named)
  let at = _MAGIC.length;
  if (whole[at] !== 0x07) throw new StreamNotSpliceable("no configuration section first");
  at += 5 + _be32(whole, at + 1);
  if (whole[at] !== _SECTION_START) throw new StreamNotSpliceable("the configuration names capabilities (already x-ignore-shared?), or RAM's section is not next");
  const parts: Uint8Array[] = [whole.subarray(0, at), _IGNORE_SHARED_CAPABILITY];
  const pages: StreamPage[] = [];
  const walk = _ramPieces(whole, at, false);
  let r = walk.next();
  for (; !r.done; r = walk.next()) {
    const x = r.value;
    if (x.kind === "page" && x.block === block) {
      // the guest's RAM: a page to the file, or a zero page left a hole; no record of it in the stream
      if (!x.zero) pages.push({ offset: x.offset, at: x.at });
      else if (whole[x.at] !== 0) pages.push({ offset: x.offset, at: x.at, fill: whole[x.at] });
      continue;
    }
    parts.push(whole.subarray(x.start, x.end));
    // the block's guest address, as an x-ignore-shared save lists it (0: see above)
    if (x.kind === "block") parts.push(new Uint8Array(8));
  }
  parts.push(whole.subarray(r.value));
  return { stream: Buffer.concat(parts), pages };
}
