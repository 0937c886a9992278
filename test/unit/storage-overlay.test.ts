// The overlay helpers of the copy storage against the real qemu-img (what clones and rollbacks on QEMU run on).
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { activeDisk, backingOf, copyDisk, createOverlay, overlayPathFor } from "../../plugins/storage/overlay.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS, fileExists } from "../../src/host/fs.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-overlay-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const exec = createExec();
const fs = createFS();

test("an overlay over a raw disk: picked by its name, backed by the snapshot's file, flattened to the same bytes; the base is never written", async () => {
  const base = join(dir, "snap-system.img");
  const data = Buffer.alloc(1 << 20);
  data.write("base data", 4096);
  writeFileSync(base, data);
  const raw = join(dir, "system.img");
  expect(overlayPathFor(raw)).toBe(join(dir, "system.qcow2"));
  expect(await activeDisk(fileExists, raw)).toEqual({ path: raw, format: "raw" });
  await createOverlay(exec, base, overlayPathFor(raw));
  expect(await activeDisk(fileExists, raw)).toEqual({ path: join(dir, "system.qcow2"), format: "qcow2" });
  expect(await backingOf(fs, join(dir, "system.qcow2"))).toBe(base);
  // a write through the overlay lands in the overlay only
  await exec.run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x41 8192 512", join(dir, "system.qcow2")]);
  expect(readFileSync(base).equals(data)).toBe(true);
  const flat = join(dir, "flat.img");
  await copyDisk(exec, { path: join(dir, "system.qcow2"), format: "qcow2" }, flat);
  const out = readFileSync(flat);
  expect(out.length).toBe(data.length);
  expect(out.subarray(4096, 4105).toString()).toBe("base data");
  expect(out.subarray(8192, 8704).equals(Buffer.alloc(512, 0x41))).toBe(true);
  expect(await backingOf(fs, flat)).toBeNull();
});

test("a raw disk whose guest wrote a qcow2 header naming a host file stays raw: the format comes from the file's name, not its bytes", async () => {
  const evil = join(dir, "evil.img");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow", evil, "1M"]);
  expect(readFileSync(evil).subarray(0, 4).toString("latin1")).toBe("QFI\xfb");
  expect(await activeDisk(fileExists, evil)).toEqual({ path: evil, format: "raw" });
  expect(existsSync(overlayPathFor(evil))).toBe(false);
});

test("backingOf reads the name from the overlay's header as qemu-img reports it: relative names resolve beside the overlay, absolute ones stay; no backing, a short or foreign file, or a missing one is null", async () => {
  const sub = join(dir, "hdr it's; $(x)");
  await exec.run("mkdir", ["-p", sub]);
  const layer = join(sub, "system-aa.img");
  writeFileSync(layer, Buffer.alloc(1 << 20));
  const rel = join(sub, "system-bb.qcow2");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "system-aa.img", rel]);
  const info = JSON.parse((await exec.run("qemu-img", ["info", "-U", "--output=json", rel])).stdout) as { "full-backing-filename": string };
  expect(await backingOf(fs, rel)).toBe(info["full-backing-filename"]);
  expect(await backingOf(fs, rel)).toBe(layer);
  const abs = join(sub, "abs.qcow2");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", layer, abs]);
  expect(await backingOf(fs, abs)).toBe(layer);
  const none = join(sub, "none.qcow2");
  await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", none, "1M"]);
  expect(await backingOf(fs, none)).toBeNull();
  const short = join(sub, "short.qcow2");
  writeFileSync(short, Buffer.from("QFI\xfb\0\0\0\x03", "latin1"));
  expect(await backingOf(fs, short)).toBeNull();
  // a header naming more than QEMU allows, or a name past the file's end, is no backing
  const bogus = Buffer.alloc(64);
  bogus.write("QFI\xfb", 0, "latin1");
  bogus.writeBigUInt64BE(48n, 8);
  bogus.writeUInt32BE(4096, 16);
  writeFileSync(join(sub, "long.qcow2"), bogus);
  expect(await backingOf(fs, join(sub, "long.qcow2"))).toBeNull();
  bogus.writeUInt32BE(100, 16);
  writeFileSync(join(sub, "past.qcow2"), bogus);
  expect(await backingOf(fs, join(sub, "past.qcow2"))).toBeNull();
  expect(await backingOf(fs, join(sub, "missing.qcow2"))).toBeNull();
});
