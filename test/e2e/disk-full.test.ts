// A real QEMU guest whose disk write finds the host's disk full: BANGER_HOME on a
// 700 MiB loop-mounted ext4, filled to a few MiB, then a guest `dd … conv=fsync`.
// QEMU stops the guest (werror=enospc, its default) rather than fail the write in
// it; banger must say so, end the exec that was writing, refuse what needs the
// guest in one line, and let `vm resume` run it on once there is space again,
// the guest's filesystem intact. The loop device is detached by name in afterAll.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { tempHome } from "../helpers/cli.ts";
import { e2e, e2eReady, IMAGE_DIR, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 300_000;
const h = e2eReady ? tempHome("banger-e2e-full-") : (null as never);
const img = `${h?.home ?? ""}.img`;
let loopDev = "";

const sh = (cmd: string[]) => {
  const p = Bun.spawnSync(cmd);
  return { code: p.exitCode, out: p.stdout.toString().trim(), err: p.stderr.toString().trim() };
};
const run = (args: string[]) => h.run(args, { BANGER_AUTO_WARM: "0" });
const freeMiB = () => {
  const s = statfsSync(h.home);
  return (s.bavail * s.bsize) / (1 << 20);
};

beforeAll(() => {
  if (!e2eReady) return;
  expect(sh(["truncate", "-s", "700M", img]).code).toBe(0);
  expect(sh(["mkfs.ext4", "-q", "-F", "-m", "0", img]).code).toBe(0);
  loopDev = sh(["losetup", "--find", "--show", img]).out;
  expect(loopDev).toMatch(/^\/dev\/loop\d+$/);
  expect(sh(["mount", loopDev, h.home]).err).toBe("");
  const r = run(["image", "import", "--name", "default", "--kernel", join(IMAGE_DIR, "vmlinuz"), "--rootfs", join(IMAGE_DIR, "rootfs.ext4"), "--initrd", join(IMAGE_DIR, "initrd.img")]);
  expect(r.stderr).toBe("");
});

afterAll(async () => {
  if (!e2eReady) return;
  if (loopDev) {
    run(["vm", "delete", "full", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home)).catch(() => {});
  }
  const um = loopDev ? sh(["umount", h.home]) : { code: 0, err: "" };
  if (loopDev && sh(["losetup", "-l", "-n", "-O", "NAME", loopDev]).out === loopDev) sh(["losetup", "-d", loopDev]);
  // never rm -r through a mount that is still there
  if (um.code === 0) rmSync(h.home, { recursive: true, force: true });
  else console.error(`disk-full: could not unmount ${h.home}: ${um.err}`);
  rmSync(img, { force: true });
});

e2e.describe("a guest write on a full host disk (QEMU)", () => {
  test(
    "QEMU halts the guest: the writing exec ends saying why, list/show say halted, exec is refused naming vm resume; resume while full says so; with space back it runs on, its filesystem intact; stop of a halted VM lets it run on and shut down",
    async () => {
      expect(run(["vm", "create", "full", "--vmm", "qemu", "--start"]).code).toBe(0);
      expect(run(["vm", "exec", "full", "--", "sh", "-c", "echo before > /root/before && sync"]).code).toBe(0);
      const filler = join(h.home, "filler");
      expect(sh(["fallocate", "-l", `${Math.floor(freeMiB()) - 6}M`, filler]).code).toBe(0);
      console.log(`host filesystem: ${freeMiB().toFixed(1)} MiB free`);

      const started = Date.now();
      const w = run(["vm", "exec", "full", "--", "dd", "if=/dev/urandom", "of=/root/big", "bs=1M", "count=64", "conv=fsync"]);
      const tookMs = Date.now() - started;
      console.log(`the writing exec ended after ${tookMs} ms: exit ${w.code}, ${JSON.stringify(w.stderr.split("\n").filter((l) => l.startsWith("banger:")))}`);
      expect(w.code).toBe(1);
      const halted = /^banger: vm full is halted: QEMU stopped its guest: a write to its disk \((\S+)\) found no space left on the host's filesystem; free space there, then `banger vm resume full`: it runs on from where it stopped$/m.exec(w.stderr);
      expect(halted).not.toBeNull();
      expect(halted![1]!.startsWith(join(h.home, "vms"))).toBe(true);
      // one 2 s look after the halt, not the exec agent's 30 s ping
      expect(tookMs).toBeLessThan(20_000);

      const vm = run(["vm", "show", "full", "--json"]).json<{ alive: boolean; runtime: { state: string }; halted?: string }>();
      expect(vm).toMatchObject({ alive: true, runtime: { state: "running" } });
      expect(vm.halted).toContain("no space left");
      expect(run(["vm", "list"]).stdout).toMatch(/^full +halted +yes /m);
      const refused = run(["vm", "exec", "full", "--", "true"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toBe(`${halted![0]}\n`);
      // still full: QEMU retries the write and halts again at once
      expect(run(["vm", "resume", "full"])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^banger: vm full is halted again at once: .*no space left.*\n$/) });

      rmSync(filler);
      expect(run(["vm", "resume", "full"])).toMatchObject({ code: 0, stdout: "full is running\n" });
      expect(run(["vm", "list", "--json"]).json<{ name: string; halted?: string }[]>().find((v) => v.name === "full")?.halted).toBeUndefined();
      // the guest's filesystem took no error: writable, the earlier file there
      const after = run(["vm", "exec", "full", "--", "sh", "-c", "echo after > /root/after && sync && cat /root/before /root/after && grep -c ' / ext4 rw' /proc/mounts"]);
      expect(after).toMatchObject({ code: 0, stdout: "before\nafter\n1\n" });
      expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("vm full: resuming it, halted by its VMM (QEMU stopped its guest: a write to its disk");

      // halted again, then stopped once there is room: it runs on and shuts down by its power button, no 20 s wait on a
      // button a halted guest cannot press (one still halted is killed at once: the unit test; and a disk too full for the
      // store's own write of the stop refuses it as E_NO_SPACE, as seen here with 3 MiB left: the guest's flush took them)
      expect(sh(["fallocate", "-l", `${Math.floor(freeMiB()) - 6}M`, filler]).code).toBe(0);
      expect(run(["vm", "exec", "full", "--", "dd", "if=/dev/urandom", "of=/root/big2", "bs=1M", "count=64", "conv=fsync"]).code).toBe(1);
      expect(run(["vm", "show", "full", "--json"]).json<{ halted?: string }>().halted).toContain("no space left");
      rmSync(filler);
      const stopAt = Date.now();
      expect(run(["vm", "stop", "full", "--json"]).json()).toMatchObject({ alive: false, runtime: { state: "stopped" } });
      console.log(`vm stop of a halted VM, space back: ${Date.now() - stopAt} ms`);
      expect(Date.now() - stopAt).toBeLessThan(15_000);
      expect(readFileSync(join(h.home, "daemon.log"), "utf8").match(/vm full: resuming it, halted by its VMM/g)).toHaveLength(3);

      expect(run(["vm", "delete", "full"]).code).toBe(0);
      expect(qemuPidsUnder(h.home)).toEqual([]);
      expect(existsSync(join(h.home, "vms")) ? readdirSync(join(h.home, "vms")) : []).toEqual([]);
    },
    BOOT,
  );
});
