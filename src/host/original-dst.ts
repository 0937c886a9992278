// SO_ORIGINAL_DST of an accepted TCP socket: where a connection that
// nftables redirected to us was going. Node has no getsockopt, so libc's is
// called through bun:ffi on the socket's descriptor (Bun keeps it at
// `_handle.fd`, not a public API: without it, or when the call fails, the
// answer is null and the caller falls back to the conntrack table).
import { dlopen, FFIType, ptr } from "bun:ffi";
import type { Socket } from "node:net";

const SOL_IP = 0;
const SO_ORIGINAL_DST = 80;
const AF_INET = 2;

type _Libc = { symbols: { getsockopt: (fd: number, level: number, name: number, val: unknown, len: unknown) => number } };
let libc: _Libc | null | undefined;

function _libc(): _Libc | null {
  if (libc !== undefined) return libc;
  try {
    libc = dlopen("libc.so.6", { getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } }) as never;
  } catch {
    libc = null;
  }
  return libc;
}

/** The redirected connection's original IPv4 destination, or null when the kernel (or Bun) will not say. */
export function socketOriginalDst(s: Socket): { ip: string; port: number } | null {
  const fd = (s as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  const c = _libc();
  if (typeof fd !== "number" || fd < 0 || !c) return null;
  const sa = new Uint8Array(16);
  const len = new Uint32Array([sa.length]);
  if (c.symbols.getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, ptr(sa), ptr(len)) !== 0) return null;
  if ((sa[0]! | (sa[1]! << 8)) !== AF_INET) return null;
  return { ip: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: (sa[2]! << 8) | sa[3]! };
}
