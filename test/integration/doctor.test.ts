/**
 * dist/banger doctor on the real host. Expectations come from independent
 * looks at the same host (not from banger's code), so on this machine (PVM
 * /dev/kvm, no device-mapper, QEMU installed) it checks exactly those findings.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { tempHome } from "../helpers/cli.ts";

const IMAGE = process.env.BANGER_TEST_IMAGE_DIR ?? "/work/.cache/images/default";
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
  const r = h.run(["doctor", "--json"]);
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
  if (existsSync("/sys/module/kvm_pvm")) {
    expect(rep.kvm.usable).toBe(false);
    expect(byId(rep, "kvm").level).toBe("note");
    expect(byId(rep, "kvm").message).toContain("kvm_pvm");
  }
  if (!/\bdevice-mapper\b/.test(readFileSync("/proc/misc", "utf8"))) {
    expect(byId(rep, "device-mapper")).toMatchObject({ level: "note", fix: "sudo modprobe dm_mod dm_snapshot" });
  }
  if (!Bun.which("firecracker", { PATH: `${process.env.PATH}:/usr/sbin:/sbin` })) expect(byId(rep, "firecracker").level).toBe("note");
  // doctor only looks: dmsetup would create /dev/mapper/control if asked without one
  expect(existsSync("/dev/mapper/control")).toBe(mapperBefore);
  // human output: one line per finding plus the fix lines, and the verdict
  const human = h.run(["doctor"]);
  expect(human.code).toBe(1);
  expect(human.stdout).toContain("FAIL  image");
  expect(human.stdout).toContain("fix: banger image build");
  expect(human.stdout).toContain("banger cannot run VMs here: 1 failing check above");
});

test("with the default image in place: exit 0 when the host can run VMs", () => {
  if (!existsSync(join(IMAGE, "rootfs.ext4"))) throw new Error(`no prebuilt image in ${IMAGE}`);
  const h = tempHome("banger-doctor-");
  homes.push(h);
  mkdirSync(join(h.home, "images", "default"), { recursive: true });
  symlinkSync(join(IMAGE, "rootfs.ext4"), join(h.home, "images", "default", "rootfs.ext4")); // a link: never write into the shared image dir
  const r = h.run(["doctor", "--json"]);
  const rep = r.json<Report>();
  expect(byId(rep, "image").level).toBe("ok");
  const fails = rep.findings.filter((f) => f.level === "fail");
  expect(r.code).toBe(fails.length ? 1 : 0);
  expect(rep.ok).toBe(fails.length === 0);
  if (Bun.spawnSync(["qemu-system-x86_64", "--version"]).exitCode === 0) expect(fails).toEqual([]);
});
