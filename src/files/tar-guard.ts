/**
 * A tar stream from a guest, made safe for the host to extract (as root,
 * with modes kept): device nodes are left out (with the long-name and pax
 * records that describe them), and set-user-ID and set-group-ID bits of
 * what is not a directory are cleared. A guest is not trusted: its tar could
 * otherwise put a world-writable `/dev/sda` twin or a setuid-root shell on
 * the host.
 *
 * The filter must read the stream exactly as GNU tar will, or a header it
 * took for data could reach tar. So anything it cannot be sure of ends the
 * copy instead of passing: a header whose checksum is wrong (tar would skip
 * ahead looking for another), an entry type it does not know (old GNU sparse
 * headers, multi-volume ones), a link, directory or device that claims data,
 * a lone zero block followed by more headers.
 */
import { BangerError } from "../shared/errors.ts";

const BLOCK = 512;
const _dec = new TextDecoder();
/** Long-name and pax records waiting for the entry they describe: small in any honest archive. */
const MAX_PENDING = 1 << 20;

export interface SkippedEntry {
  name: string;
  type: "block device" | "character device";
}

function _bad(why: string): BangerError {
  return new BangerError("E_STATE", `the guest's tar stream was refused: ${why}`);
}

function _octal(b: Uint8Array, off: number, len: number): number {
  if (b[off]! & 0x80) {
    // base-256 (GNU, for sizes past 8 GiB): big-endian, the first byte's top bit set
    let n = b[off]! & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + b[off + i]!;
    return n;
  }
  const s = _dec.decode(b.subarray(off, off + len)).replace(/[\0 ]+$/, "").trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw _bad(`a header field is not a number: ${JSON.stringify(s).slice(0, 40)}`);
  return parseInt(s, 8);
}

function _text(b: Uint8Array, off: number, len: number): string {
  const end = b.subarray(off, off + len).indexOf(0);
  return _dec.decode(b.subarray(off, end < 0 ? off + len : off + end));
}

function _checksumOk(h: Uint8Array): boolean {
  const want = _octal(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 32 : h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return want === unsigned || want === signed;
}

function _setChecksum(h: Uint8Array): void {
  h.fill(32, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
}

/** pax records ("LEN key=value\n"…): the ones the layout depends on. */
function _pax(data: Uint8Array): { size?: number; path?: string } {
  const out: { size?: number; path?: string } = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(32, i);
    if (sp < 0) break;
    const len = Number(_dec.decode(data.subarray(i, sp)));
    if (!Number.isInteger(len) || len <= sp - i || i + len > data.length) throw _bad("a pax record is malformed");
    const rec = _dec.decode(data.subarray(sp + 1, i + len - 1));
    const eq = rec.indexOf("=");
    const key = rec.slice(0, eq);
    const value = rec.slice(eq + 1);
    if (key === "size") {
      if (!/^\d+$/.test(value)) throw _bad("a pax size is not a number");
      out.size = Number(value);
    } else if (key === "path") out.path = value;
    i += len;
  }
  return out;
}

const _DATA_TYPES = new Set(["0", "\0", "7"]);
const _NO_DATA_TYPES = new Set(["1", "2", "5", "6"]);
const _DEVICES: Record<string, SkippedEntry["type"]> = { "3": "character device", "4": "block device" };

/** The filter: bytes of a tar in, the same tar without devices or set-id bits out; `onSkip` hears each device left out. */
export function guardGuestTar(onSkip: (e: SkippedEntry) => void = () => {}): TransformStream<Uint8Array, Uint8Array> {
  let buf: Uint8Array = new Uint8Array(0);
  /** Bytes of the current entry's data (and padding) still to pass (or drop). */
  let dataLeft = 0;
  let keepData = true;
  /** Metadata entries (L, K, x) not yet sent, and what they said. */
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let meta: { size?: number; path?: string; longName?: string } = {};
  /** The metadata entry whose data is being collected (its header already in pending). */
  let collecting: { type: string; left: number; padded: number; parts: Uint8Array[] } | null = null;
  let zeros = 0;
  let ended = false;

  const take = (n: number): Uint8Array => {
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };

  const header = (h: Uint8Array, emit: (b: Uint8Array) => void): void => {
    if (h.every((b) => b === 0)) {
      if (pending.length || collecting) throw _bad("it ends between a long-name or pax record and its entry");
      zeros++;
      emit(h.slice());
      if (zeros === 2) ended = true;
      return;
    }
    if (zeros) throw _bad("a lone zero block is followed by more entries");
    if (!_checksumOk(h)) throw _bad("a header's checksum is wrong");
    const type = String.fromCharCode(h[156]!);
    const size = _octal(h, 124, 12);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L" || type === "K" || type === "x") {
      if (pendingBytes + BLOCK + padded > MAX_PENDING) throw _bad("its long-name or pax records are too long");
      pending.push(h.slice());
      pendingBytes += BLOCK + padded;
      collecting = { type, left: padded, padded: size, parts: [] };
      return;
    }
    if (type === "g") {
      // a global pax header: kept as is, but one that sets every entry's size would move the layout
      emit(h.slice());
      collecting = { type, left: padded, padded: size, parts: [] };
      return;
    }
    const name = meta.path ?? meta.longName ?? _text(h, 0, 100);
    const dataSize = meta.size ?? size;
    if (_DEVICES[type] !== undefined || _NO_DATA_TYPES.has(type)) {
      if (dataSize !== 0) throw _bad(`${JSON.stringify(name).slice(0, 80)} (type ${type}) claims ${dataSize} bytes of data`);
    } else if (!_DATA_TYPES.has(type)) {
      throw _bad(`${JSON.stringify(name).slice(0, 80)} has an entry type this copy does not extract (${JSON.stringify(type)})`);
    }
    const device = _DEVICES[type];
    if (device) {
      onSkip({ name, type: device });
      keepData = false;
    } else {
      for (const p of pending) emit(p);
      const mode = _octal(h, 100, 8);
      let out = h;
      if (type !== "5" && mode & 0o6000) {
        out = h.slice();
        out.set(new TextEncoder().encode((mode & ~0o6000).toString(8).padStart(7, "0") + "\0"), 100);
        _setChecksum(out);
      }
      emit(out.slice());
      keepData = true;
    }
    pending = [];
    pendingBytes = 0;
    meta = {};
    dataLeft = Math.ceil(dataSize / BLOCK) * BLOCK;
  };

  const pump = (emit: (b: Uint8Array) => void): void => {
    for (;;) {
      if (ended) {
        if (buf.length) emit(take(buf.length).slice());
        return;
      }
      if (collecting) {
        if (collecting.left === 0) {
          const data = new Uint8Array(Buffer.concat(collecting.parts).subarray(0, collecting.padded));
          if (collecting.type === "g") {
            if (_pax(data).size !== undefined) throw _bad("a global pax header sets a size");
          } else if (collecting.type === "x") Object.assign(meta, _pax(data));
          else if (collecting.type === "L") meta.longName = _dec.decode(data).replace(/\0.*$/s, "");
          collecting = null;
          continue;
        }
        if (!buf.length) return;
        const part = take(Math.min(collecting.left, buf.length)).slice();
        collecting.left -= part.length;
        collecting.parts.push(part);
        if (collecting.type === "g") emit(part);
        else pending.push(part);
        continue;
      }
      if (dataLeft > 0) {
        if (!buf.length) return;
        const part = take(Math.min(dataLeft, buf.length));
        dataLeft -= part.length;
        if (keepData) emit(part.slice());
        continue;
      }
      if (buf.length < BLOCK) return;
      header(take(BLOCK), emit);
    }
  };

  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      buf = buf.length ? new Uint8Array(Buffer.concat([buf, chunk])) : chunk;
      pump((b) => c.enqueue(b));
    },
    flush(c) {
      pump((b) => c.enqueue(b));
      if (!ended && (buf.length || dataLeft || collecting || pending.length)) throw _bad("it ends in the middle of an entry");
    },
  });
}
