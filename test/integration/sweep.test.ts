// The startup sweep through dist/banger: kill -9 the daemon mid-`image build`
// (a stand-in mmdebstrap on PATH writes a little, then works "forever"), see
// the temp build dir it leaves, and check the next daemon removes it, the
// process still writing into it, a VM dir with no row and atomic-write temps
// (and nothing else). No Debian build is needed.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempName } from "../../src/shared/temps.ts";
import { alive, FAKE_PLUGIN, tempHome, waitFor } from "../helpers/cli.ts";

const h = tempHome("banger-sweep-");
const stubs = join(h.home, "..", `${h.home.split("/").pop()}-stubs`);
const stray: number[] = [];

afterAll(async () => {
  for (const p of stray) {
    try {
      process.kill(p, "SIGKILL");
    } catch {}
  }
  await h.cleanup();
  Bun.spawnSync(["rm", "-rf", stubs]);
});

function stub(name: string, body: string) {
  mkdirSync(stubs, { recursive: true });
  writeFileSync(join(stubs, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(stubs, name), 0o755);
}

const daemonLog = () => (existsSync(join(h.home, "daemon.log")) ? readFileSync(join(h.home, "daemon.log"), "utf8") : "");
const pidsIn = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map(Number) : []);

describe("startup sweep", () => {
  test("a build cut short by kill -9: the next daemon removes its temp dir and the mmdebstrap still writing into it", async () => {
    const pids = join(stubs, "pids");
    // mmdebstrap ... SUITE ROOTDIR SOURCES: write into ROOTDIR, then keep going (a loop of short sleeps, so nothing outlives a kill for long)
    stub("mmdebstrap", `eval "root=\\\${$(($# - 1))}"\nmkdir -p "$root/etc" && echo banger > "$root/etc/hostname"\necho $$ >> ${pids}\nwhile :; do sleep 0.2; done`);
    // the kernel download runs alongside: keep it busy too (its argv names no build dir, so the test kills it)
    stub("apt-cache", `echo $$ >> ${pids}.apt\nwhile :; do sleep 0.2; done`);
    const env = { ...h.env, PATH: `${stubs}:${process.env.PATH}` };
    const build = Bun.spawn([join(import.meta.dir, "../../dist/banger"), "image", "build", "--name", "sweepme"], { env, stdout: "pipe", stderr: "pipe" });
    const images = join(h.home, "images");
    const tmpDir = () => (existsSync(images) ? readdirSync(images).filter((n) => n.startsWith(".sweepme.build-")) : []);
    expect(await waitFor(() => tmpDir().length === 1 && existsSync(join(images, tmpDir()[0]!, ".build/rootfs/etc/hostname")), 30_000, 50)).toBe(true);
    const dir = join(images, tmpDir()[0]!);
    const [mm] = pidsIn(pids);
    stray.push(...pidsIn(pids), ...pidsIn(`${pids}.apt`));
    expect(alive(mm!)).toBe(true);

    const daemon = h.daemonPid();
    process.kill(daemon, "SIGKILL");
    expect(await waitFor(() => !alive(daemon), 5000)).toBe(true);
    await build.exited;
    expect(build.exitCode).not.toBe(0);
    expect(existsSync(dir)).toBe(true); // what the crash left
    for (const p of pidsIn(`${pids}.apt`)) process.kill(p, "SIGKILL");

    // any CLI call auto-starts a daemon (this one with the ordinary PATH), which sweeps before it answers
    const list = h.run(["image", "list", "--json"]);
    expect(list.code).toBe(0);
    expect(list.json()).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(images)).toEqual([]);
    expect(alive(mm!)).toBe(false);
    expect(daemonLog()).toContain(`sweep: killed pid ${mm} (/bin/sh ${join(stubs, "mmdebstrap")} --variant=essential) still working in ${dir}`);
    expect(daemonLog()).toContain(`sweep: removed ${dir} (image build dir of pid ${daemon}, gone)`);
  });

  test("a VM dir with no row and atomic-write temps go; the VMs, images and files with rows stay", async () => {
    const fenv = { BANGER_PLUGINS: FAKE_PLUGIN };
    // the daemon from the first test runs without the fake VMM: the next call starts one with it
    const first = h.daemonPid();
    if (first) process.kill(first, "SIGKILL");
    await waitFor(() => !alive(first), 5000);
    const scratch = `${stubs}/img`;
    mkdirSync(scratch, { recursive: true });
    writeFileSync(join(scratch, "vk"), "kernel");
    writeFileSync(join(scratch, "vr"), "rootfs");
    expect(h.run(["image", "import", "--name", "tiny", "--kernel", join(scratch, "vk"), "--rootfs", join(scratch, "vr")], fenv).code).toBe(0);
    const vm = h.run(["vm", "create", "keep", "--image", "tiny", "--driver", "fake", "--json"], fenv);
    expect(vm.code).toBe(0);
    const vmDir: string = vm.json().runtime.vmDir;
    const before = readdirSync(vmDir).sort();

    const daemon = h.daemonPid();
    process.kill(daemon, "SIGKILL");
    expect(await waitFor(() => !alive(daemon), 5000)).toBe(true);
    // what a daemon killed at the wrong moment leaves (the pid in each name is the dead daemon's)
    const orphan = join(h.home, "vms", "0123456789abcdef");
    mkdirSync(join(orphan, "keys"), { recursive: true });
    writeFileSync(join(orphan, "system.img"), "half a disk");
    const temps = [
      join(vmDir, tempName("handles.json", "tmp", daemon)),
      join(h.home, "images", "tiny", tempName("manifest.json", "tmp", daemon)),
      join(h.home, tempName("config.json", "tmp", daemon)),
    ];
    for (const t of temps) writeFileSync(t, "half");
    const importDir = join(h.home, "images", tempName("other", "import", daemon));
    mkdirSync(importDir);
    writeFileSync(join(importDir, "rootfs.ext4"), "half");

    const list = h.run(["vm", "list", "--json"], fenv);
    expect(list.code).toBe(0);
    expect(list.json<{ name: string }[]>().map((v) => v.name)).toEqual(["keep"]);
    for (const p of [orphan, importDir, ...temps]) expect(existsSync(p)).toBe(false);
    expect(readdirSync(vmDir).sort()).toEqual(before);
    expect(readdirSync(join(h.home, "vms"))).toEqual([vmDir.split("/").pop()!]);
    expect(readdirSync(join(h.home, "images"))).toEqual(["tiny"]);
    const log = daemonLog();
    expect(log).toContain(`sweep: removed ${orphan} (VM dir with no row)`);
    for (const t of temps) expect(log).toContain(`sweep: removed ${t} (temp file of `);
    expect(log).toContain(`sweep: removed ${importDir} (image import dir of pid ${daemon}, gone)`);

    // a clean home: the next start finds nothing to sweep
    const again = h.daemonPid();
    process.kill(again, "SIGKILL");
    expect(await waitFor(() => !alive(again), 5000)).toBe(true);
    const mark = daemonLog().length;
    expect(h.run(["vm", "list", "--json"], fenv).code).toBe(0);
    expect(daemonLog().slice(mark)).not.toContain("sweep:");
  });
});
