// Disk full: BANGER_HOME on a 24 MiB loop-mounted ext4. An image write that
// does not fit (image import, the same tmp-dir-then-rename path as a build), a
// VM create whose disk copy does not fit, and a start on a completely full disk
// (handles.json, the store) each end in a clear error with the previous state
// intact and the store consistent; with space back, the same operations work.
// Needs root (losetup/mount); the loop device is detached by name in afterAll.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseTempName } from "../../src/shared/temps.ts";
import { emptyHandles } from "../../src/shared/model.ts";
import { readHandlesFile, writeHandlesFile } from "../../src/handles/file.ts";
import { createFS } from "../../src/host/fs.ts";
import { alive, BANGER, FAKE_PLUGIN, waitFor } from "../helpers/cli.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";

const MISSING = firstMissing(
  [IS_ROOT, "needs root (losetup, mount)"],
  [Bun.which("losetup") !== null, "needs losetup (util-linux)"],
  [Bun.which("mkfs.ext4") !== null, "needs mkfs.ext4 (e2fsprogs)"],
);
const ROOT = MISSING === "";
const work = mkdtempSync(join(tmpdir(), "banger-full-"));
const img = join(work, "fs.img");
const mnt = join(work, "mnt");
const home = join(mnt, "home");
let loopDev = "";
const vmPids = new Set<number>();

const sh = (cmd: string[]) => {
  const p = Bun.spawnSync(cmd);
  return { code: p.exitCode, out: p.stdout.toString().trim(), err: p.stderr.toString().trim() };
};
const run = (args: string[]) => {
  const p = Bun.spawnSync([BANGER, ...args], { env: { ...process.env, BANGER_HOME: home, BANGER_PLUGINS: FAKE_PLUGIN, NO_COLOR: "1" } });
  const stdout = p.stdout.toString();
  return { code: p.exitCode, stdout, stderr: p.stderr.toString(), json: <T = any>() => JSON.parse(stdout) as T };
};
const random = (path: string, mib: number) => writeFileSync(path, Buffer.from(crypto.getRandomValues(new Uint8Array(mib << 20)).buffer));

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** The store and the disk agree: each row's dir exists, no dir without a row, no temp file, no stray image dir. */
function consistent(wantVMs: string[], wantImages: string[]) {
  const vms = run(["vm", "list", "--json"]).json<{ name: string; alive: boolean; pid: number; runtime: { state: string; vmDir: string } }[]>();
  expect(vms.map((v) => v.name).sort()).toEqual([...wantVMs].sort());
  for (const v of vms) {
    expect(existsSync(v.runtime.vmDir)).toBe(true);
    expect(v.alive).toBe(v.runtime.state === "running");
  }
  expect(readdirSync(join(home, "vms")).length).toBe(vms.length);
  const images = run(["image", "list", "--json"]).json<{ name: string }[]>();
  expect(images.map((i) => i.name).sort()).toEqual([...wantImages].sort());
  expect(readdirSync(join(home, "images")).sort()).toEqual([...wantImages].sort());
  expect(walk(home).filter((f) => parseTempName(basename(f)) !== null)).toEqual([]);
}

beforeAll(() => {
  if (!ROOT) return;
  expect(sh(["truncate", "-s", "24M", img]).code).toBe(0);
  expect(sh(["mkfs.ext4", "-q", "-F", "-m", "0", img]).code).toBe(0);
  mkdirSync(mnt);
  loopDev = sh(["losetup", "--find", "--show", img]).out;
  expect(loopDev).toMatch(/^\/dev\/loop\d+$/);
  const m = sh(["mount", loopDev, mnt]);
  expect(m.err).toBe("");
  mkdirSync(home, { mode: 0o700 });
});

afterAll(() => {
  if (!loopDev) return rmSync(work, { recursive: true, force: true });
  if (existsSync(join(home, "daemon.pid"))) run(["daemon", "stop"]);
  // every VM process serving a socket under this home, by pid (a failed assertion may have skipped recording some)
  for (const d of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(home)) vmPids.add(Number(d));
    } catch {}
  }
  for (const p of vmPids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {}
  }
  Bun.sleepSync(300);
  const um = sh(["umount", mnt]);
  if (sh(["losetup", "-l", "-n", "-O", "NAME", loopDev]).out === loopDev) sh(["losetup", "-d", loopDev]);
  // never rm -r through a mount that is still there
  if (um.code === 0) rmSync(work, { recursive: true, force: true });
  else console.error(`diskfull: could not unmount ${mnt}: ${um.err}`);
});

needs(ROOT, MISSING).describe("BANGER_HOME on a full 24 MiB filesystem", () => {
  test("image write, VM create and start on a full disk: clear errors, previous state intact, store consistent; space back → they work", async () => {
    const src = join(work, "src");
    mkdirSync(src);
    writeFileSync(join(src, "k"), "k");
    random(join(src, "small"), 1);
    random(join(src, "mid"), 9);
    random(join(src, "big"), 40);
    expect(run(["image", "import", "--name", "tiny", "--kernel", join(src, "k"), "--rootfs", join(src, "small")]).code).toBe(0);
    expect(run(["vm", "create", "a", "--image", "tiny", "--driver", "fake"]).code).toBe(0);
    expect(run(["vm", "create", "b", "--image", "tiny", "--driver", "fake"]).code).toBe(0);
    const before = run(["vm", "show", "a", "--json"]).json();

    // 1. an image that does not fit
    const big = run(["image", "import", "--name", "big", "--kernel", join(src, "k"), "--rootfs", join(src, "big")]);
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/^banger: the host's disk is full \(cp failed \(exit 1\): .*No space left on device\): free space on it and try again\n$/);
    expect(big.stderr.trim().split("\n").length).toBe(1);
    consistent(["a", "b"], ["tiny"]);

    // 2. a VM whose disk copy does not fit
    expect(run(["image", "import", "--name", "mid", "--kernel", join(src, "k"), "--rootfs", join(src, "mid")]).code).toBe(0);
    const c = run(["vm", "create", "c", "--image", "mid", "--driver", "fake"]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/^banger: vm create c: the host's disk is full \(.*No space left on device\); what it did was undone: free space on it and try again$/m);
    expect(run(["vm", "create", "c", "--image", "mid", "--driver", "fake", "--json"]).json()).toMatchObject({ error: { code: "E_NO_SPACE" } });
    consistent(["a", "b"], ["mid", "tiny"]);
    expect(run(["vm", "show", "a", "--json"]).json()).toEqual(before);

    // 3. a completely full disk: start cannot record its handles (or its state)
    // handles.json for a scratch dir on this filesystem: the real atomic writer, before and after the disk fills
    const scratchDir = join(mnt, "scratch-vm");
    mkdirSync(scratchDir);
    const fs = createFS();
    const old = { ...emptyHandles(), pid: 4242, tapDevice: "tap-old" };
    await writeHandlesFile(fs, scratchDir, old);
    // ext4 keeps a few blocks back from a big write: mop them up with small ones
    const fillers = ["filler", "filler1", "filler2"].map((f) => join(mnt, f));
    for (const [i, f] of fillers.entries()) {
      sh(["dd", "if=/dev/zero", `of=${f}`, i === 0 ? "bs=64k" : "bs=1k"]);
      sh(["sync"]);
    }
    const bigHandles = { ...emptyHandles(), pid: 4343, extra: { note: "x".repeat(64 << 10) } };
    const werr = await writeHandlesFile(fs, scratchDir, bigHandles).then(() => null, (e: Error) => e);
    expect(werr?.message).toContain("ENOSPC");
    expect(readdirSync(scratchDir)).toEqual(["handles.json"]); // no half-written temp file
    expect((await readHandlesFile(fs, scratchDir)).handles).toEqual(old); // the previous state, intact
    const s = run(["vm", "start", "a"]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/^banger: (vm start a: )?the host's disk is full \((.*No space left on device.*|database or disk is full)\)/);
    console.log(`disk full: start said: ${s.stderr.trim()}`);
    // no VM process survives a start that failed, nothing half-written stays
    const procs = sh(["pgrep", "-f", join(home, "vms")]).out.split("\n").filter(Boolean).map(Number);
    for (const p of procs) vmPids.add(p);
    expect(await waitFor(() => procs.every((p) => !alive(p)), 5000)).toBe(true);
    for (const f of fillers) rmSync(f);
    rmSync(scratchDir, { recursive: true });
    consistent(["a", "b"], ["mid", "tiny"]);
    expect(statSync(join(before.runtime.vmDir, "system.img")).size).toBe(1 << 20);

    // 4. with space back, everything works again
    const started = run(["vm", "start", "a", "--json"]);
    expect(started.stderr).not.toContain("banger:");
    expect(started.code).toBe(0);
    vmPids.add(run(["vm", "show", "a", "--json"]).json().pid);
    expect(run(["vm", "create", "c", "--image", "tiny", "--driver", "fake"]).code).toBe(0); // a copy that fits
    consistent(["a", "b", "c"], ["mid", "tiny"]);
    expect(run(["vm", "delete", "a", "--force"]).code).toBe(0);
  }, 120_000);
});
