/**
 * storage-dm's loop half on real loop devices (this machine has loops but no
 * device-mapper): real losetup/blockdev, only `dmsetup` answered by a
 * recording stand-in. Proves the commands' syntax and output parsing against
 * the installed util-linux. Needs root and /dev/loop-control; every loop it
 * attaches is detached by name in afterEach.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emptyHandles } from "../../src/shared/model.ts";
import { createExec } from "../../src/host/exec.ts";
import type { Exec } from "../../src/host/types.ts";
import { attachSnapshot, cowBytesFor, detachSnapshot } from "../../plugins/storage-dm/snapshot.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";

const noLoops = firstMissing(
  [IS_ROOT, "needs root (attaches loop devices)"],
  [existsSync("/dev/loop-control"), "needs /dev/loop-control (modprobe loop)"],
  [!!Bun.which("losetup", { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }), "needs losetup (util-linux)"],
);
const loops = needs(noLoops === "", noLoops);
const real = createExec();
const dirs: string[] = [];
const attached: string[] = [];
afterEach(async () => {
  for (const l of attached.splice(0)) await real.run("losetup", ["-d", l], { check: false });
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

/** Real exec, except dmsetup: recorded, answered as success. */
function loopsOnly(dm: string[]): Exec {
  return {
    ...real,
    async run(cmd, args, opts) {
      if (cmd === "dmsetup") {
        dm.push([cmd, ...args].join(" "));
        return { stdout: "", stderr: "", exitCode: 0 };
      }
      const r = await real.run(cmd, args, opts);
      if (cmd === "losetup" && args[0] === "--find") attached.push(r.stdout.trim());
      return r;
    },
  };
}

async function backFile(loop: string): Promise<{ file: string; ro: string }> {
  const col = async (c: string) => (await real.run("losetup", ["--list", "--noheadings", "--output", c, loop], { check: false })).stdout.trim();
  const file = await col("BACK-FILE");
  return { file, ro: file ? await col("RO") : "" };
}

loops.test("real loops: read-only base + COW, the table's size from blockdev, teardown detaches both", async () => {
  const dir = mkdtempSync(join(tmpdir(), "banger-dmloops-"));
  dirs.push(dir);
  const base = join(dir, "rootfs.ext4");
  const cow = join(dir, "system.cow");
  await real.run("truncate", ["-s", "16M", base]);
  await real.run("truncate", ["-s", String(cowBytesFor(16 * 1048576)), cow]);
  const dm: string[] = [];
  const exec = loopsOnly(dm);
  const h = emptyHandles();
  await attachSnapshot(exec, { vmId: "it1", baseFile: base, cowFile: cow }, h, async () => {});
  expect(h.baseLoop).toMatch(/^\/dev\/loop\d+$/);
  expect(h.cowLoop).toMatch(/^\/dev\/loop\d+$/);
  expect(await backFile(h.baseLoop)).toEqual({ file: base, ro: "1" });
  expect(await backFile(h.cowLoop)).toEqual({ file: cow, ro: "0" });
  expect(dm).toEqual([`dmsetup create banger-it1 --table 0 ${(16 * 1048576) / 512} snapshot ${h.baseLoop} ${h.cowLoop} P 8`]);
  expect(h.dmDev).toBe("/dev/mapper/banger-it1");

  const [b, c] = [h.baseLoop, h.cowLoop];
  expect(await detachSnapshot(exec, h)).toEqual([]);
  expect(dm.at(-1)).toBe("dmsetup remove --retry banger-it1");
  expect([h.baseLoop, h.cowLoop, h.dmName]).toEqual(["", "", ""]);
  expect((await backFile(b)).file).toBe("");
  expect((await backFile(c)).file).toBe("");
});

loops.test("a loop now attached to another file is left alone; an already detached one counts as gone", async () => {
  const dir = mkdtempSync(join(tmpdir(), "banger-dmloops-"));
  dirs.push(dir);
  const other = join(dir, "someone-else.img");
  await real.run("truncate", ["-s", "4M", other]);
  const theirs = (await real.run("losetup", ["--find", "--show", other])).stdout.trim();
  attached.push(theirs);
  const free = (await real.run("losetup", ["--find"])).stdout.trim(); // not attached to anything
  const h = { ...emptyHandles(), baseLoop: theirs, cowLoop: free, extra: { "dm.baseFile": join(dir, "rootfs.ext4"), "dm.cowFile": join(dir, "system.cow") } };
  const warnings: string[] = [];
  expect(await detachSnapshot(loopsOnly([]), h, (m) => warnings.push(m))).toEqual([]);
  expect((await backFile(theirs)).file).toBe(other);
  expect(warnings).toEqual([`${theirs} is no longer attached to ${join(dir, "rootfs.ext4")}; left alone`]);
});
