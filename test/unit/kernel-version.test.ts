import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { bzImageRelease } from "../../src/shared/kernel-version.ts";

/** A bzImage setup header: "HdrS" at 0x202 and, at 0x20E, where (from 0x200) `version` sits. */
function header(version: string | null, at = 0x300): Uint8Array {
  const img = new Uint8Array(0x800);
  img.set([0x48, 0x64, 0x72, 0x53], 0x202);
  if (version !== null) {
    new DataView(img.buffer).setUint16(0x20e, at - 0x200, true);
    img.set(new TextEncoder().encode(version + "\0"), at);
  }
  return img;
}

test("the release comes from the setup header's version string; anything else is empty", () => {
  expect(bzImageRelease(header("6.1.0-28-amd64 (builder@example.test) #1 SMP PREEMPT_DYNAMIC"))).toBe("6.1.0-28-amd64");
  expect(bzImageRelease(header(null))).toBe("");
  expect(bzImageRelease(header("not a version"))).toBe("");
  expect(bzImageRelease(header("6.1\x1b[31m"))).toBe("");
  // no NUL before the end, an offset past the end, no "HdrS" (an ELF vmlinux), too short
  const open = header("6.1.0");
  open.fill(0x41, 0x300);
  expect(bzImageRelease(open)).toBe("");
  const past = header(null);
  new DataView(past.buffer).setUint16(0x20e, 0x900 - 0x200, true);
  expect(bzImageRelease(past)).toBe("");
  expect(bzImageRelease(new Uint8Array([0x7f, 0x45, 0x4c, 0x46, ...new Uint8Array(0x800)]))).toBe("");
  expect(bzImageRelease(new Uint8Array(16))).toBe("");
});

test("a real kernel's release matches its image manifest (when the test image is there)", () => {
  const dir = process.env.BANGER_TEST_IMAGE_DIR ?? join(import.meta.dir, "../../.cache/test-image-home/images/default");
  if (!existsSync(join(dir, "vmlinuz"))) return;
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { kernelVersion: string };
  expect(bzImageRelease(new Uint8Array(readFileSync(join(dir, "vmlinuz")).subarray(0, 65536)))).toBe(manifest.kernelVersion);
});
