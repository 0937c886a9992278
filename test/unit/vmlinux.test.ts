import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkVmlinuxElf, extractVmlinux, payloadCandidates } from "../../plugins/image/vmlinux.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";
import { minimalElf } from "../helpers/elf.ts";
import { needs } from "../helpers/skip.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-vmlinux-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A bzImage-shaped file: "HdrS" boot header with setup_sects and payload_offset pointing at `payload`. */
function bzImage(payload: Uint8Array, opts: { decoy?: Uint8Array; hint?: boolean } = {}): Uint8Array<ArrayBuffer> {
  const setupSects = 1;
  const pm = (setupSects + 1) * 512;
  const decoy = opts.decoy ?? new Uint8Array();
  const img = new Uint8Array(pm + decoy.length + payload.length + 64);
  img[0x1f1] = setupSects;
  img.set([0x48, 0x64, 0x72, 0x53], 0x202); // "HdrS"
  if (opts.hint !== false) new DataView(img.buffer).setUint32(0x248, decoy.length, true);
  img.set(decoy, pm);
  img.set(payload, pm + decoy.length);
  img.fill(0xee, pm + decoy.length + payload.length); // trailing bytes after the stream, as in a real bzImage
  return img;
}

describe("payloadCandidates", () => {
  test("the boot header's payload offset comes first, then every magic in file order", () => {
    const gz = Bun.gzipSync(minimalElf(1000));
    const xzDecoy = new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]);
    const img = bzImage(gz, { decoy: xzDecoy });
    const c = payloadCandidates(img);
    expect(c[0]).toEqual({ format: "gzip", offset: 1024 + xzDecoy.length });
    expect(c).toContainEqual({ format: "xz", offset: 1024 });
    const noHint = payloadCandidates(bzImage(gz, { decoy: xzDecoy, hint: false }));
    expect(noHint[0]).toEqual({ format: "xz", offset: 1024 });
  });
});

describe("checkVmlinuxElf", () => {
  test("accepts a complete x86-64 ELF; names what is wrong otherwise", () => {
    const elf = minimalElf(10);
    expect(checkVmlinuxElf(elf, elf.length)).toBeNull();
    expect(checkVmlinuxElf(elf, elf.length - 1)).toContain("truncated");
    expect(checkVmlinuxElf(new Uint8Array(64), 64)).toBe("no ELF magic");
    const arm = minimalElf();
    new DataView(arm.buffer).setUint16(18, 0xb7, true);
    expect(checkVmlinuxElf(arm, arm.length)).toBe("not an x86-64 ELF");
  });
});

describe("extractVmlinux (real decompressors)", () => {
  test("skips a decoy magic, decompresses the real payload despite trailing bytes, checks the ELF", async () => {
    const elf = minimalElf(50_000);
    const src = join(dir, "vmlinuz-synthetic");
    writeFileSync(src, bzImage(Bun.gzipSync(elf), { decoy: new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 9, 9, 9]), hint: false }));
    const out = join(dir, "vmlinux-synthetic");
    const r = await extractVmlinux(createExec(), createFS(), src, out);
    expect(r).toEqual({ format: "gzip", offset: 1024 + 7, size: elf.length });
    expect(new Uint8Array(readFileSync(out))).toEqual(elf);
  });

  test("no payload → one error saying so, and no half-written output left", async () => {
    const src = join(dir, "not-a-kernel");
    writeFileSync(src, "just text, no compressed stream in here");
    const out = join(dir, "vmlinux-none");
    await expect(extractVmlinux(createExec(), createFS(), src, out)).rejects.toThrow("no compressed payload magic found");
    expect(existsSync(out)).toBe(false);
  });

  // the test image scripts/test.sh builds for root runs
  const imageDir = process.env.BANGER_TEST_IMAGE_DIR ?? "";
  const real = join(imageDir, "vmlinuz");
  const why = !imageDir ? "needs BANGER_TEST_IMAGE_DIR (a built image; `npm test` as root provides it)" : `no vmlinuz in BANGER_TEST_IMAGE_DIR=${imageDir}`;
  needs(imageDir !== "" && existsSync(real), why).test("the real Debian cloud kernel's bzImage yields an x86-64 ELF vmlinux", async () => {
    const out = join(dir, "vmlinux-debian");
    const t0 = performance.now();
    const r = await extractVmlinux(createExec(), createFS(), real, out);
    const ms = performance.now() - t0;
    console.log(`vmlinux from ${real}: ${r.format} payload at ${r.offset}, ${r.size} bytes, ${ms.toFixed(0)} ms`);
    expect(r.size).toBe(statSync(out).size);
    expect(r.size).toBeGreaterThan(statSync(real).size);
    const head = new Uint8Array(readFileSync(out).subarray(0, 65536));
    expect(checkVmlinuxElf(head, r.size)).toBeNull();
    rmSync(out);
  }, 60_000);
});
