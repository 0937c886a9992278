import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempHome } from "./cli.ts";
import { firstMissing, IS_ROOT, needs } from "./skip.ts";

/** The image scripts/test.sh built once for the run; e2e tests skip (saying why) without it. */
export const IMAGE_DIR = process.env.BANGER_TEST_IMAGE_DIR ?? "";
const _missing = firstMissing(
  [IS_ROOT, "needs root (real VMs: QEMU, disks, daemon state); `npm test` as root runs it"],
  [!!IMAGE_DIR, "needs BANGER_TEST_IMAGE_DIR with a built image; `npm test` as root provides it"],
  [existsSync(join(IMAGE_DIR, "rootfs.ext4")), `no rootfs.ext4 in BANGER_TEST_IMAGE_DIR=${IMAGE_DIR}`],
);
export const e2eReady = _missing === "";
/** `e2e.describe(...)`: runs with a real VM image, else skips saying why. VMs are made with `--vmm qemu`, so a host with Firecracker and KVM checks the same thing. */
export const e2e = needs(e2eReady, _missing);

/** A fresh home with the prebuilt image imported as "default" (a sparse copy: ~0.3 s instead of a rebuild). */
export function e2eHome(prefix: string) {
  const h = tempHome(prefix);
  const r = h.run(["image", "import", "--name", "default", "--kernel", join(IMAGE_DIR, "vmlinuz"), "--rootfs", join(IMAGE_DIR, "rootfs.ext4"), "--initrd", join(IMAGE_DIR, "initrd.img"), "--json"]);
  if (r.code !== 0) throw new Error(`image import failed: ${r.stderr}`);
  return h;
}

/** Every qemu process whose command line mentions this home: what a test must leave none of. */
export function qemuPidsUnder(home: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (cmd.startsWith("/usr/bin/qemu-system-x86_64") || cmd.startsWith("qemu-system-x86_64")) {
      if (cmd.includes(home)) pids.push(Number(name));
    }
  }
  return pids;
}
