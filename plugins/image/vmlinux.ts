import { BangerError } from "../../src/plugin-api.ts";
import type { Exec, FS } from "../../src/plugin-api.ts";

/**
 * Compressed-kernel formats a bzImage may carry, with the host tool that
 * undoes each (the same list and tools as the kernel's scripts/extract-vmlinux).
 */
export const KERNEL_PAYLOAD_FORMATS = [
  { name: "gzip", magic: [0x1f, 0x8b, 0x08], tool: ["gzip", "-dc"] },
  { name: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], tool: ["xz", "-dc"] },
  { name: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd], tool: ["zstd", "-dc"] },
  { name: "lz4", magic: [0x02, 0x21, 0x4c, 0x18], tool: ["lz4", "-dc"] },
  { name: "bzip2", magic: [0x42, 0x5a, 0x68], tool: ["bzip2", "-dc"] },
  { name: "lzma", magic: [0x5d, 0x00, 0x00, 0x00], tool: ["xz", "--format=lzma", "-dc"] },
] as const;

export type PayloadFormat = (typeof KERNEL_PAYLOAD_FORMATS)[number]["name"];

export interface PayloadCandidate {
  format: PayloadFormat;
  offset: number;
}

/**
 * Where the compressed kernel may start: the offset the boot header names
 * (setup sectors + payload_offset, boot protocol >= 2.08) first when a magic
 * is there, then every magic in file order. Magic bytes also occur by
 * chance, so each candidate is only a guess until it decompresses to an ELF.
 */
export function payloadCandidates(img: Uint8Array): PayloadCandidate[] {
  const out: PayloadCandidate[] = [];
  const at = (i: number, magic: readonly number[]) => magic.every((b, k) => img[i + k] === b);
  const formatAt = (i: number) => KERNEL_PAYLOAD_FORMATS.find((f) => at(i, f.magic));
  if (img.length > 0x250 && img[0x202] === 0x48 && img[0x203] === 0x64 && img[0x204] === 0x72 && img[0x205] === 0x53) {
    // "HdrS": a real bzImage header
    const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
    const setupSects = img[0x1f1] || 4;
    const hinted = (setupSects + 1) * 512 + dv.getUint32(0x248, true);
    const f = hinted < img.length ? formatAt(hinted) : undefined;
    if (f) out.push({ format: f.name, offset: hinted });
  }
  // native substring search per format: a byte-by-byte loop in JS takes seconds on a 14 MB kernel
  const buf = Buffer.from(img.buffer, img.byteOffset, img.byteLength);
  const hits: PayloadCandidate[] = [];
  for (const f of KERNEL_PAYLOAD_FORMATS) {
    const magic = Buffer.from(f.magic);
    for (let i = buf.indexOf(magic); i >= 0; i = buf.indexOf(magic, i + 1)) {
      if (!out.some((c) => c.offset === i)) hits.push({ format: f.name, offset: i });
    }
  }
  out.push(...hits.sort((a, b) => a.offset - b.offset));
  return out;
}

/**
 * Is this a complete x86-64 ELF executable? Checks the magic, class,
 * machine, and that every PT_LOAD segment lies inside the file (a truncated
 * decompression fails here).
 */
export function checkVmlinuxElf(head: Uint8Array, fileSize: number): string | null {
  if (!(head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46)) return "no ELF magic";
  if (head[4] !== 2 || head[5] !== 1) return "not a 64-bit little-endian ELF";
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (dv.getUint16(18, true) !== 0x3e) return "not an x86-64 ELF";
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phnum === 0) return "no program headers";
  if (phoff + phnum * phentsize > head.length) return "program headers beyond the bytes read";
  let loads = 0;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== 1) continue; // PT_LOAD
    loads++;
    const off = Number(dv.getBigUint64(p + 8, true));
    const filesz = Number(dv.getBigUint64(p + 32, true));
    if (off + filesz > fileSize) return `segment ${i} ends at ${off + filesz} but the file has ${fileSize} bytes (truncated)`;
  }
  return loads > 0 ? null : "no loadable segments";
}

/** The first `n` bytes of a file and its size (nothing and 0 when there is no file). */
async function _readHead(fs: FS, path: string, n: number): Promise<{ head: Uint8Array; size: number }> {
  const st = await fs.stat(path);
  if (!st) return { head: new Uint8Array(), size: 0 };
  return { head: await fs.readRange(path, 0, Math.min(n, st.size)), size: st.size };
}

/**
 * Extract the uncompressed ELF vmlinux Firecracker boots from a bzImage:
 * find the compressed payload by its magic, decompress from there with the
 * host's tool (trailing bytes after the stream make some tools exit non-zero,
 * so the ELF check, not the exit code, decides), and keep the first candidate
 * that yields a complete x86-64 ELF.
 */
export async function extractVmlinux(exec: Exec, fs: FS, bzImage: string, out: string): Promise<PayloadCandidate & { size: number }> {
  const img = await fs.readBytes(bzImage);
  const candidates = payloadCandidates(img);
  const tried: string[] = [];
  for (const c of candidates.slice(0, 16)) {
    const f = KERNEL_PAYLOAD_FORMATS.find((x) => x.name === c.format)!;
    const r = await exec.run(
      "sh",
      ["-c", 'off=$1 src=$2 out=$3; shift 3; tail -c +"$off" -- "$src" | "$@" > "$out"', "sh", String(c.offset + 1), bzImage, out, ...f.tool],
      { check: false },
    );
    const { head, size } = await _readHead(fs, out, 64 * 1024).catch(() => ({ head: new Uint8Array(), size: 0 }));
    const why = checkVmlinuxElf(head, size);
    if (!why) return { ...c, size };
    // what the shell or the decompressor said (e.g. "gzip: not found") is the likelier reason than the bytes
    const said = r.stderr.trim().split("\n").at(-1)?.trim();
    tried.push(`${c.format}@${c.offset}: ${why}${said ? ` (${said})` : ""}`);
  }
  await exec.run("rm", ["-f", "--", out], { check: false });
  throw new BangerError(
    "E_INTERNAL",
    `no ELF vmlinux inside ${bzImage} (${candidates.length ? `tried ${tried.join("; ")}` : "no compressed payload magic found"}); is ${KERNEL_PAYLOAD_FORMATS.map((f) => f.tool[0]).filter((t, i, a) => a.indexOf(t) === i).join("/")} installed?`,
  );
}
