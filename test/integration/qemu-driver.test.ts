import { afterAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { emptyHandles, type VMHandles, type VMRecord } from "../../src/shared/model.ts";
import { createClock } from "../../src/host/clock.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";
import { createProcs } from "../../src/host/procs.ts";
import type { Host } from "../../src/host/types.ts";
import type { BootConfig } from "../../src/vmm/driver.ts";
import { createQemuDriver } from "../../plugins/qemu/driver.ts";
import { kvmUsable } from "../../src/vmm/kvm.ts";
import { allocateSshPort, netUserArgs } from "../../plugins/net-user/index.ts";
import { kvmLook } from "../helpers/host-kvm.ts";
import { needs } from "../helpers/skip.ts";

const qemu = Bun.which("qemu-system-x86_64");
const host: Host = {
  exec: createExec(),
  procs: createProcs(),
  clock: createClock(),
  fs: createFS(),
  ssh: { dial: async () => { throw new Error("not used"); } },
};
// TCG whatever the host has (PVM, none, real KVM), so these tests mean the same everywhere; one test checks the probed default
const driver = createQemuDriver(host, { accel: "tcg" });
const dirs: string[] = [];
const started: { vm: VMRecord; h: VMHandles }[] = [];

afterAll(async () => {
  // leave nothing behind, whatever failed
  for (const s of started) await driver.kill(s.vm, s.h).catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function makeVM(name: string): VMRecord {
  const dir = mkdtempSync("/tmp/banger-qemu-");
  dirs.push(dir);
  return {
    id: `it${Math.random().toString(36).slice(2, 10)}`,
    name,
    spec: { image: "test", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: "qemu", storage: "copy" },
    runtime: {
      state: "created", guestIP: "", apiSockPath: join(dir, "api.sock"), vsockPath: "", vsockCID: 0,
      logPath: join(dir, "serial.log"), metricsPath: "", dnsName: "", vmDir: dir, systemOverlay: "",
      workDiskPath: "", lastError: "", sshHost: "", sshPort: 0,
    },
    createdAt: "", updatedAt: "",
  };
}

async function waitFor(what: string, fn: () => boolean | Promise<boolean>, ms: number): Promise<number> {
  const t0 = performance.now();
  while (!(await fn())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
  return performance.now() - t0;
}

const serial = (vm: VMRecord) => (existsSync(vm.runtime.logPath) ? readFileSync(vm.runtime.logPath, "utf8") : "");

/**
 * A 72-byte multiboot "kernel": prints a marker on COM1 and halts. Lets the
 * real driver boot a real q35 guest in well under a second with no image.
 */
function tinyKernel(): Uint8Array {
  const base = 0x100000;
  const msg = "BANGER-MULTIBOOT-OK\n\0";
  const msgOff = 54;
  const buf = new ArrayBuffer(msgOff + msg.length);
  const v = new DataView(buf);
  const magic = 0x1badb002;
  const flags = 0x00010000; // address fields are valid (flat binary, not ELF)
  [magic, flags, (-(magic + flags)) >>> 0, base, base, 0, 0, base + 32].forEach((x, i) => v.setUint32(i * 4, x >>> 0, true));
  const code = [
    0xbe, ...[0, 8, 16, 24].map((s) => ((base + msgOff) >>> s) & 0xff), // mov esi, msg
    0xfc, // cld
    0xac, // loop: lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x07, // jz done
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xee, // out dx, al
    0xeb, 0xf4, // jmp loop
    0xfa, // done: cli
    0xf4, // hlt
    0xeb, 0xfd, // jmp hlt
  ];
  const u8 = new Uint8Array(buf);
  u8.set(code, 32);
  u8.set(new TextEncoder().encode(msg), msgOff);
  return u8;
}

needs(!!qemu, "needs qemu-system-x86_64 (apt-get install qemu-system-x86)").describe("qemu driver, real qemu under TCG (tiny multiboot kernel)", () => {
  test("launch → QMP answers → findProcess → stop (power button ignored → quit) → kill", async () => {
    const vm = makeVM("tiny");
    const dir = vm.runtime.vmDir;
    writeFileSync(join(dir, "kernel.bin"), tinyKernel());
    writeFileSync(join(dir, "disk.img"), new Uint8Array(1 << 20));
    const port = await allocateSshPort([], vm.id);
    const boot: BootConfig = {
      kernelPath: join(dir, "kernel.bin"),
      initrdPaths: [],
      kernelArgs: [],
      disks: [{ path: join(dir, "disk.img"), format: "raw" }],
      netArgs: netUserArgs(port),
    };
    // a stale socket file from an earlier run must not fool the readiness wait
    writeFileSync(vm.runtime.apiSockPath, "stale");

    const t0 = performance.now();
    const r = await driver.launch(vm, boot);
    const launchMs = performance.now() - t0;
    const h = { ...emptyHandles(), pid: r.pid, pidStartTime: r.pidStartTime };
    started.push({ vm, h });
    console.log(`[qemu-driver] tiny kernel: launch-to-QMP ${launchMs.toFixed(0)} ms`);

    expect(r.pid).toBeGreaterThan(0);
    expect((await host.procs.info(r.pid))?.cmdline[0]).toContain("qemu-system-x86_64");
    expect(await driver.apiAnswers(vm)).toBe(true);
    expect(await driver.findProcess(vm)).toEqual({ pid: r.pid, startTime: r.pidStartTime });
    await waitFor("the marker on the serial log", () => serial(vm).includes("BANGER-MULTIBOOT-OK"), 10_000);
    expect(readFileSync(join(dir, "qemu.pid"), "utf8").trim()).toBe(String(r.pid));

    // the loopback forward is up (slirp accepts even with nothing listening in the guest)
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port }, () => (s.destroy(), resolve()));
      s.once("error", reject);
    });

    // this "guest" ignores ACPI: stop waits the timeout, then QMP quit ends it
    const s0 = performance.now();
    await driver.stop(vm, h, 1000);
    const stopMs = performance.now() - s0;
    console.log(`[qemu-driver] tiny kernel: stop (powerdown ignored → quit) ${stopMs.toFixed(0)} ms`);
    expect(await host.procs.info(r.pid)).toBeNull();
    expect(await driver.apiAnswers(vm)).toBe(false);
    expect(await driver.findProcess(vm)).toBeNull();
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
    expect(stopMs).toBeLessThan(5000);

    // relaunch on the same VMDir, then kill
    const r2 = await driver.launch(vm, boot);
    const h2 = { ...emptyHandles(), pid: r2.pid, pidStartTime: r2.pidStartTime };
    started.push({ vm, h: h2 });
    expect(await driver.apiAnswers(vm)).toBe(true);
    await driver.kill(vm, h2);
    expect(await host.procs.info(r2.pid)).toBeNull();
    expect(await driver.findProcess(vm)).toBeNull();
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
  }, 30_000);

  test("unforced, the accelerator is the KVM probe's: -accel kvm only where an independent look finds usable KVM", async () => {
    // the real probe on this host, never a BANGER_ACCEL from whoever runs the tests
    const probed = createQemuDriver(host, { probe: () => kvmUsable(host, { env: {} }) });
    const vm = makeVM("probed");
    writeFileSync(join(vm.runtime.vmDir, "kernel.bin"), tinyKernel());
    const r = await probed.launch(vm, { kernelPath: join(vm.runtime.vmDir, "kernel.bin"), initrdPaths: [], kernelArgs: [], disks: [], netArgs: [] });
    const h = { ...emptyHandles(), pid: r.pid, pidStartTime: r.pidStartTime };
    started.push({ vm, h });
    const argv = (await host.procs.info(r.pid))!.cmdline;
    expect(argv[argv.indexOf("-accel") + 1]).toStartWith(kvmLook().usable ? "kvm" : "tcg");
    await probed.kill(vm, h);
  }, 20_000);

  test("a kernel qemu cannot load → launch fails fast with qemu's own message", async () => {
    const vm = makeVM("bad");
    const kernel = join(vm.runtime.vmDir, "garbage");
    writeFileSync(kernel, "this is not a kernel");
    const err = await driver
      .launch(vm, { kernelPath: kernel, initrdPaths: [], kernelArgs: [], disks: [], netArgs: [] })
      .then(() => new Error("launch unexpectedly succeeded"), (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain("qemu exited during launch");
    expect(err.message.toLowerCase()).toContain("kernel");
    expect(await driver.findProcess(vm)).toBeNull();
  }, 20_000);

  test("a port already bound makes hostfwd fail → launch reports it", async () => {
    const vm = makeVM("busy");
    const dir = vm.runtime.vmDir;
    writeFileSync(join(dir, "kernel.bin"), tinyKernel());
    const srv = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const err = await driver
        .launch(vm, { kernelPath: join(dir, "kernel.bin"), initrdPaths: [], kernelArgs: [], disks: [], netArgs: netUserArgs(srv.port) })
        .then(() => new Error("launch unexpectedly succeeded"), (e: Error) => e);
      expect(err.message).toContain("qemu exited during launch");
      expect(err.message).toMatch(/hostfwd|forward/i);
    } finally {
      srv.stop(true);
    }
  }, 20_000);
});

// ---- a real Debian guest (the image plugin's output) ----------------------------------------
const imageDir = process.env.BANGER_TEST_IMAGE_DIR ?? "";
const imageFiles = ["vmlinuz", "initrd.img", "rootfs.ext4"].map((f) => join(imageDir, f));
const haveImage = !!qemu && imageDir !== "" && imageFiles.every((f) => existsSync(f));
const noImage = !imageDir
  ? "needs BANGER_TEST_IMAGE_DIR: a dir with vmlinuz, initrd.img, rootfs.ext4 (`npm test` as root builds one)"
  : `BANGER_TEST_IMAGE_DIR=${imageDir} lacks one of vmlinuz, initrd.img, rootfs.ext4`;
needs(haveImage, qemu ? noImage : "needs qemu-system-x86_64 (apt-get install qemu-system-x86)").describe("qemu driver boots a real guest image under TCG", () => {
  test("boot to BANGER-READY + SSH banner, graceful stop, relaunch + kill", async () => {
    const vm = makeVM("real");
    const dir = vm.runtime.vmDir;
    const [kernel, baseInitrd, rootfs] = imageFiles as [string, string, string];
    await host.exec.run("cp", ["--sparse=always", rootfs, join(dir, "system.img")]);

    // Per-VM seed (hostname, keys) when the image plugin provides it; otherwise the bare image.
    let initrd = baseInitrd;
    let seeded = false;
    try {
      const seed = await import("../../plugins/guest/seed.ts");
      const keys = await seed.generateVMKeys({ fs: host.fs, dir });
      initrd = join(dir, "initrd.img");
      await seed.buildSeedInitrd({
        exec: host.exec, fs: host.fs, baseInitrd, out: initrd, hostname: vm.name, authorizedKey: keys.clientPublicKey, hostKeyPath: keys.hostKeyPath,
      });
      seeded = true;
    } catch (e) {
      console.log(`[qemu-driver] no per-VM seed (${(e as Error).message}); booting the bare image`);
      copyFileSync(baseInitrd, join(dir, "base-initrd.img"));
      initrd = join(dir, "base-initrd.img");
    }

    const port = await allocateSshPort([], vm.id);
    const boot: BootConfig = {
      kernelPath: kernel,
      initrdPaths: [initrd],
      kernelArgs: [],
      disks: [{ path: join(dir, "system.img"), format: "raw" }],
      netArgs: netUserArgs(port),
    };

    const t0 = performance.now();
    const r = await driver.launch(vm, boot);
    const launchMs = performance.now() - t0;
    const h = { ...emptyHandles(), pid: r.pid, pidStartTime: r.pidStartTime };
    started.push({ vm, h });
    expect(await driver.apiAnswers(vm)).toBe(true);
    expect(await driver.findProcess(vm)).toEqual({ pid: r.pid, startTime: r.pidStartTime });

    const readyMs = await waitFor(
      "BANGER-READY on the serial console",
      () => {
        const s = serial(vm);
        if (s.includes("BANGER-BOOT-FAILED")) throw new Error(`guest reported a failed boot:\n${s.slice(-2000)}`);
        return s.includes("BANGER-READY");
      },
      90_000,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n--- serial tail ---\n${serial(vm).slice(-2000)}`);
    });
    const banner = await new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port });
      s.setTimeout(10_000, () => (s.destroy(), reject(new Error("no SSH banner"))));
      s.once("data", (d) => (s.destroy(), resolve(String(d))));
      s.once("error", reject);
    });
    expect(banner).toStartWith("SSH-2.0-");
    if (seeded) expect(serial(vm)).not.toContain("no host key in the seed");

    const s0 = performance.now();
    await driver.stop(vm, h, 30_000);
    const stopMs = performance.now() - s0;
    expect(await host.procs.info(r.pid)).toBeNull();
    const graceful = /banger-init: poweroff/.test(serial(vm));
    console.log(
      `[qemu-driver] real guest: launch-to-QMP ${launchMs.toFixed(0)} ms, launch-to-READY ${(launchMs + readyMs).toFixed(0)} ms, ` +
        `stop ${(stopMs / 1000).toFixed(2)} s (${graceful ? "graceful poweroff" : "NOT graceful"}), seeded=${seeded}`,
    );
    expect(graceful).toBe(true);
    expect(stopMs).toBeLessThan(30_000);

    const r2 = await driver.launch(vm, boot);
    const h2 = { ...emptyHandles(), pid: r2.pid, pidStartTime: r2.pidStartTime };
    started.push({ vm, h: h2 });
    await driver.kill(vm, h2);
    expect(await host.procs.info(r2.pid)).toBeNull();
    expect(await driver.findProcess(vm)).toBeNull();
  }, 180_000);
});
