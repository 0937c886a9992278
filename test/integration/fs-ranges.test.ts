// FS.copyRanges and writeRanges on real files (src/host/fs.ts): what a save by RAM delta (plugins/qemu/ram-delta.ts) writes its
// pages with, from /proc/PID/mem into a copy of the RAM file (that read from a real QEMU: test/e2e/snapshot.test.ts).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFS } from "../../src/host/fs.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-copy-ranges-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("ranges of one file over the same-sized ranges of another, in place: the rest of it unchanged, no truncation", async () => {
  const from = join(dir, "from");
  const to = join(dir, "to");
  const big = 5 << 20; // past the 4 MiB buffer: one range read in two pieces
  const src = new Uint8Array(big + 100).map((_, i) => (i * 7) % 251);
  writeFileSync(from, src);
  writeFileSync(to, new Uint8Array(big + 8192));
  const copied = await createFS().copyRanges(from, to, [{ from: 10, to: 0, length: 3 }, { from: 100, to: 8192, length: big }]);
  expect(copied).toBe(big + 3);
  const out = new Uint8Array(readFileSync(to));
  expect(out.length).toBe(big + 8192);
  expect([...out.subarray(0, 4)]).toEqual([...src.subarray(10, 13), 0]);
  expect(out.subarray(8192).every((b, i) => b === src[100 + i])).toBe(true);
  expect(out.subarray(3, 8192).every((b) => b === 0)).toBe(true);
});

test("a range past the end of the source fails the call; a missing target fails it before anything is read", async () => {
  const from = join(dir, "short");
  writeFileSync(from, "abc");
  writeFileSync(join(dir, "t"), "xxxxxx");
  await expect(createFS().copyRanges(from, join(dir, "t"), [{ from: 1, to: 0, length: 5 }])).rejects.toThrow("2 of 5 bytes at 1");
  await expect(createFS().copyRanges(from, join(dir, "none"), [{ from: 0, to: 0, length: 1 }])).rejects.toThrow("ENOENT");
});

test("writeRanges: each piece at its offset, pieces that follow one another in one write, the rest of the file kept; a missing file is made", async () => {
  const fs = createFS();
  const path = join(dir, "ram");
  writeFileSync(path, new Uint8Array(64).fill(9));
  const piece = (b: number, n = 4) => new Uint8Array(n).fill(b);
  await fs.writeRanges(path, [{ offset: 4, data: piece(1) }, { offset: 8, data: piece(2) }, { offset: 40, data: piece(3) }, { offset: 80, data: piece(4) }]);
  const out = [...readFileSync(path)];
  expect(out.length).toBe(84);
  expect(out.slice(0, 12)).toEqual([9, 9, 9, 9, 1, 1, 1, 1, 2, 2, 2, 2]);
  expect(out.slice(40, 44)).toEqual([3, 3, 3, 3]);
  expect(out.slice(64, 80)).toEqual(new Array(16).fill(0));
  expect(out.slice(80)).toEqual([4, 4, 4, 4]);
  const fresh = join(dir, "fresh");
  await fs.writeRanges(fresh, [{ offset: 2, data: piece(7, 2) }]);
  expect([...readFileSync(fresh)]).toEqual([0, 0, 7, 7]);
});
