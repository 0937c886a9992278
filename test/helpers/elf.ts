/** The smallest x86-64 ELF executable header a vmlinux check accepts: one PT_LOAD segment covering the whole file. */
export function minimalElf(extra = 0): Uint8Array<ArrayBuffer> {
  const size = 64 + 56 + extra;
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0); // magic, 64-bit, little-endian, version
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 0x3e, true); // x86-64
  dv.setBigUint64(32, 64n, true); // e_phoff
  dv.setUint16(54, 56, true); // e_phentsize
  dv.setUint16(56, 1, true); // e_phnum
  dv.setUint32(64, 1, true); // PT_LOAD
  dv.setBigUint64(64 + 8, 0n, true); // p_offset
  dv.setBigUint64(64 + 32, BigInt(size), true); // p_filesz
  return b;
}
