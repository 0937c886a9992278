/**
 * The release of a Linux bzImage (`6.1.0-28-amd64`), from its setup header:
 * "HdrS" at 0x202, and at 0x20E the offset (from 0x200) of the version string
 * `make` wrote there. "" for anything else (an ELF vmlinux, a truncated head).
 * Needs the file's first 64 KiB at most.
 */
export function bzImageRelease(head: Uint8Array): string {
  if (head.length < 0x210 || new TextDecoder().decode(head.subarray(0x202, 0x206)) !== "HdrS") return "";
  const off = head[0x20e]! | (head[0x20f]! << 8);
  if (off === 0) return "";
  const start = 0x200 + off;
  const end = head.indexOf(0, start);
  if (start >= head.length || end < 0) return "";
  const release = new TextDecoder().decode(head.subarray(start, Math.min(end, start + 256))).split(" ")[0] ?? "";
  return /^[0-9][\x21-\x7e]*$/.test(release) ? release : "";
}
