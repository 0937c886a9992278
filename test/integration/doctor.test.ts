/**
 * dist/banger doctor on the real host. Expectations come from independent
 * looks at the same host (not from banger's code): no /dev/kvm (kvm_pvm
 * loaded or not), a PVM /dev/kvm, one we cannot open, or usable KVM; QEMU,
 * Firecracker and device-mapper there or not.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { kvmUsable } from "../../src/vmm/kvm.ts";
import { createFS } from "../../src/host/fs.ts";
import { tempHome } from "../helpers/cli.ts";
import { firecrackerOnHost, KVM_REASON, kvmLook } from "../helpers/host-kvm.ts";
import { needs } from "../helpers/skip.ts";

const IMAGE = process.env.BANGER_TEST_IMAGE_DIR ?? "";
// the real probe, never a BANGER_ACCEL from whoever runs the tests
const PROBE_ENV = { BANGER_ACCEL: "" };
const homes: ReturnType<typeof tempHome>[] = [];
afterEach(async () => {
  while (homes.length) await homes.pop()!.cleanup();
});

interface Report {
  ok: boolean;
  kvm: { usable: boolean; reason: string };
  findings: { id: string; level: string; message: string; fix: string }[];
}
const byId = (r: Report, id: string) => r.findings.find((f) => f.id === id)!;

test("no image yet: exit 1, the image check fails with `banger image build`; the host findings are this machine's", () => {
  const h = tempHome("banger-doctor-");
  homes.push(h);
  const mapperBefore = existsSync("/dev/mapper/control");
  const r = h.run(["doctor", "--json"], PROBE_ENV);
  expect(r.code).toBe(1);
  const rep = r.json<Report>();
  expect(rep.ok).toBe(false);
  expect(byId(rep, "image")).toMatchObject({ level: "fail", fix: "banger image build" });

  const qemu = Bun.spawnSync(["qemu-system-x86_64", "--version"]);
  if (qemu.exitCode === 0) {
    const first = qemu.stdout.toString().split("\n")[0]!;
    expect(byId(rep, "qemu")).toMatchObject({ level: "ok" });
    expect(byId(rep, "qemu").message.startsWith(first)).toBe(true);
  } else {
    expect(byId(rep, "qemu").level).toBe("fail");
  }
  const kvm = kvmLook();
  expect(rep.kvm.usable).toBe(kvm.usable);
  expect(byId(rep, "kvm").level).toBe(kvm.usable ? "ok" : "note");
  expect(byId(rep, "kvm").message).toContain(KVM_REASON[kvm.case]);
  if (!/\bdevice-mapper\b/.test(readFileSync("/proc/misc", "utf8"))) {
    expect(byId(rep, "device-mapper")).toMatchObject({ level: "note", fix: "sudo modprobe dm_mod dm_snapshot" });
  }
  const fc = firecrackerOnHost();
  if (!fc) expect(byId(rep, "firecracker").level).toBe(qemu.exitCode === 0 ? "note" : "warn");
  else if (Bun.spawnSync([fc, "--version"]).exitCode !== 0) expect(byId(rep, "firecracker").level).toBe("warn");
  else expect(byId(rep, "firecracker").level).toBe(kvm.usable ? "ok" : "note");
  // doctor only looks: dmsetup would create /dev/mapper/control if asked without one
  expect(existsSync("/dev/mapper/control")).toBe(mapperBefore);
  // human output: one line per finding plus the fix lines, and the verdict
  const human = h.run(["doctor"], PROBE_ENV);
  expect(human.code).toBe(1);
  expect(human.stdout).toContain("FAIL  image");
  expect(human.stdout).toContain("fix: banger image build");
  expect(human.stdout).toContain("banger cannot run VMs here: 1 failing check above");
});

test("the KVM probe says what an independent look at /dev/kvm and /sys/module/kvm_pvm says", async () => {
  const kvm = kvmLook();
  const probe = await kvmUsable({ fs: createFS() }, { env: {} });
  expect(probe.usable).toBe(kvm.usable);
  expect(probe.reason).toContain(KVM_REASON[kvm.case]);
});

const haveImage = IMAGE !== "" && existsSync(join(IMAGE, "rootfs.ext4"));
needs(haveImage, IMAGE ? `no rootfs.ext4 in BANGER_TEST_IMAGE_DIR=${IMAGE}` : "needs BANGER_TEST_IMAGE_DIR (a built image; `npm test` as root provides it)").test("with the default image in place: exit 0 when the host can run VMs", () => {
  const h = tempHome("banger-doctor-");
  homes.push(h);
  mkdirSync(join(h.home, "images", "default"), { recursive: true });
  symlinkSync(join(IMAGE, "rootfs.ext4"), join(h.home, "images", "default", "rootfs.ext4")); // a link: never write into the shared image dir
  const r = h.run(["doctor", "--json"], PROBE_ENV);
  const rep = r.json<Report>();
  expect(byId(rep, "image").level).toBe("ok");
  const fails = rep.findings.filter((f) => f.level === "fail");
  expect(r.code).toBe(fails.length ? 1 : 0);
  expect(rep.ok).toBe(fails.length === 0);
  if (Bun.spawnSync(["qemu-system-x86_64", "--version"]).exitCode === 0) expect(fails).toEqual([]);
});
