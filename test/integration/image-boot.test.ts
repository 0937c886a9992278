/**
 * Boots the real guest image under QEMU (q35, TCG) with a per-VM seed
 * initrd and checks what the rest of banger relies on: the BANGER-READY
 * marker, SSH as root with a pinned host key (no TOFU), the seeded
 * hostname, git, and clean shutdown by QMP system_powerdown and by
 * `poweroff` in the guest.
 *
 * Needs an image: BANGER_TEST_IMAGE_DIR=<dir with vmlinuz, initrd.img,
 * rootfs.ext4> uses a prebuilt one; BANGER_E2E=1 builds one first (root,
 * about a minute). Otherwise skipped.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildImage } from "../../plugins/image/build.ts";
import { buildSeedInitrd, generateVMKeys } from "../../plugins/guest/seed.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";
import { needs } from "../helpers/skip.ts";

const prebuilt = process.env.BANGER_TEST_IMAGE_DIR;
const e2e = process.env.BANGER_E2E === "1";
const qemu = Bun.which("qemu-system-x86_64");
const ssh = Bun.which("ssh");
let skip = "";
if (!prebuilt && !e2e) skip = "set BANGER_TEST_IMAGE_DIR=<image dir> or BANGER_E2E=1 (builds the image, root, ~1 min)";
else if (prebuilt && !["vmlinuz", "initrd.img", "rootfs.ext4"].every((f) => existsSync(join(prebuilt, f)))) {
  skip = `BANGER_TEST_IMAGE_DIR=${prebuilt} has no vmlinuz/initrd.img/rootfs.ext4`;
} else if (!qemu || !ssh) skip = "qemu-system-x86_64 and ssh are needed (scripts/host-deps.sh)";
else if (e2e && !prebuilt && process.getuid?.() !== 0) skip = "building the image needs root";

const exec = createExec();

async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** One QMP command on a fresh connection (greeting, qmp_capabilities, cmd). */
function qmp(sock: string, execute: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = connect(sock);
    let buf = "";
    let step = 0;
    c.on("data", (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (msg.error) return reject(new Error(JSON.stringify(msg.error)));
        if (msg.QMP && step === 0) {
          step = 1;
          c.write(`${JSON.stringify({ execute: "qmp_capabilities" })}\n`);
        } else if (msg.return !== undefined && step === 1) {
          step = 2;
          c.write(`${JSON.stringify({ execute })}\n`);
        } else if (msg.return !== undefined && step === 2) {
          c.end();
          resolve();
        }
      }
    });
    c.on("error", reject);
  });
}

interface VM {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
  serial: string;
  qmpSock: string;
  startedAt: number;
}

needs(skip === "", skip).describe("guest image boots under QEMU", () => {
  let work: string;
  let imageDir: string;
  let keys: Awaited<ReturnType<typeof generateVMKeys>>;
  let disk: string;
  let initrd: string;
  const vms: VM[] = [];

  function boot(tag: string, port: number): VM {
    const serial = join(work, `serial-${tag}.log`);
    const qmpSock = join(work, `qmp-${tag}.sock`);
    // prettier-ignore
    const args = [
      "-M", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-serial", `file:${serial}`,
      "-kernel", join(imageDir, "vmlinuz"), "-initrd", initrd,
      "-append", "console=ttyS0 quiet panic=-1 mitigations=off nokaslr",
      "-drive", `id=root,file=${disk},format=raw,if=none,cache=unsafe`, "-device", "virtio-blk-pci,drive=root",
      "-netdev", `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:22`, "-device", "virtio-net-pci,netdev=n0",
      "-device", "virtio-rng-pci",
      "-qmp", `unix:${qmpSock},server,nowait`,
    ];
    const vm = { proc: Bun.spawn([qemu!, ...args], { stdio: ["ignore", "ignore", "inherit"] }), port, serial, qmpSock, startedAt: performance.now() };
    vms.push(vm);
    return vm;
  }

  async function waitReady(vm: VM): Promise<number> {
    await waitFor("BANGER-READY on the serial console", 90_000, async () => {
      const log = existsSync(vm.serial) ? await readFile(vm.serial, "utf8") : "";
      if (log.includes("BANGER-BOOT-FAILED")) throw new Error(`guest boot failed:\n${log.slice(-2000)}`);
      if (vm.proc.exitCode !== null) throw new Error(`qemu exited ${vm.proc.exitCode}:\n${log.slice(-2000)}`);
      return log.includes("BANGER-READY") ? true : undefined;
    });
    return (performance.now() - vm.startedAt) / 1000;
  }

  async function sshRun(vm: VM, command: string, knownHosts = join(work, "known_hosts")) {
    // prettier-ignore
    return exec.run("ssh", [
      "-i", keys.clientKeyPath, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
      "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "ConnectTimeout=15", "-p", String(vm.port), "root@127.0.0.1", command,
    ], { check: false, timeoutMs: 30_000 });
  }

  async function waitExit(vm: VM, timeoutMs: number): Promise<number> {
    const t = performance.now();
    const code = await Promise.race([vm.proc.exited, Bun.sleep(timeoutMs).then(() => null)]);
    if (code === null) throw new Error(`qemu still running ${timeoutMs} ms after shutdown was requested`);
    return (performance.now() - t) / 1000;
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "banger-image-boot-"));
    if (prebuilt) imageDir = prebuilt;
    else {
      imageDir = join(work, "image");
      await mkdir(imageDir);
      const t = performance.now();
      await buildImage({ name: "test", dir: imageDir, exec, fs: createFS(), progress: (m) => console.log(`image: ${m}`) });
      console.log(`image-boot: image built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    keys = await generateVMKeys({ fs: createFS(), dir: join(work, "keys") });
    initrd = join(work, "initrd.img");
    await buildSeedInitrd({
      exec,
      fs: createFS(),
      baseInitrd: join(imageDir, "initrd.img"),
      out: initrd,
      hostname: "seedtest",
      authorizedKey: keys.clientPublicKey,
      hostKeyPath: keys.hostKeyPath,
    });
    disk = join(work, "root.ext4");
    await exec.run("cp", ["--sparse=always", join(imageDir, "rootfs.ext4"), disk]);
  }, 300_000);

  afterAll(async () => {
    for (const vm of vms) if (vm.proc.exitCode === null) vm.proc.kill("SIGKILL");
    await Promise.all(vms.map((vm) => vm.proc.exited));
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("boots, pins the host key, seeds the hostname, powers down on system_powerdown", async () => {
    const port = await freePort();
    await writeFile(join(work, "known_hosts"), `[127.0.0.1]:${port} ${keys.hostPublicKey}\n`);
    const vm = boot("a", port);
    const ready = await waitReady(vm);

    const hostname = await sshRun(vm, "cat /etc/hostname");
    expect(hostname.stderr).toBe("");
    expect(hostname.stdout.trim()).toBe("seedtest");
    const firstSsh = (performance.now() - vm.startedAt) / 1000;
    const git = await sshRun(vm, "git --version && hostname && id -u");
    expect(git.stdout).toMatch(/^git version 2\.\d+/);
    expect(git.stdout).toContain("seedtest\n0\n");

    // No TOFU: a different pinned key must make the client refuse.
    const wrong = join(work, "known_hosts.wrong");
    await writeFile(wrong, `[127.0.0.1]:${port} ${keys.clientPublicKey}\n`);
    const refused = await sshRun(vm, "true", wrong);
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/host key|HOST IDENTIFICATION/i);

    await qmp(vm.qmpSock, "system_powerdown");
    const down = await waitExit(vm, 30_000);
    console.log(`image-boot: READY ${ready.toFixed(2)} s, first ssh ${firstSsh.toFixed(2)} s, system_powerdown ${down.toFixed(2)} s`);
    const log = await readFile(vm.serial, "utf8");
    expect(log).toContain("banger-init: poweroff");

    // Unmounted cleanly: the filesystem needs no recovery.
    const fsck = await exec.run("e2fsck", ["-fn", disk], { check: false });
    expect(fsck.exitCode).toBe(0);
  }, 180_000);

  test("`poweroff` in the guest ends the VM", async () => {
    const port = await freePort();
    await writeFile(join(work, "known_hosts"), `[127.0.0.1]:${port} ${keys.hostPublicKey}\n`);
    const vm = boot("b", port);
    await waitReady(vm);
    const r = await sshRun(vm, "echo persisted >/root/marker && poweroff");
    expect(r.exitCode === 0 || r.exitCode === 255).toBe(true); // the connection may drop as dropbear is stopped
    const down = await waitExit(vm, 30_000);
    console.log(`image-boot: in-guest poweroff ${down.toFixed(2)} s`);
    const fsck = await exec.run("e2fsck", ["-fn", disk], { check: false });
    expect(fsck.exitCode).toBe(0);
    const cat = await exec.run("debugfs", ["-R", "cat /root/marker", disk], { check: false });
    expect(cat.stdout).toContain("persisted");
  }, 180_000);
});
