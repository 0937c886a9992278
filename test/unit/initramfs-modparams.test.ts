import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

// The initramfs /init hands kernel-command-line module parameters to insmod
// (Firecracker's virtio_mmio.device=… would otherwise never reach the module).
const INIT = readFileSync(join(import.meta.dir, "../../plugins/image/initramfs-init.sh"), "utf8");
const fn = /^modparams\(\) \{\n[\s\S]*?\n\}\n/m.exec(INIT)![0];
const shell = ["/bin/busybox", "/usr/bin/busybox"].find((p) => Bun.file(p).size > 0) ? ["busybox", "sh"] : ["sh"];

/** Run modparams MODULE CMDLINE under busybox sh (as the initramfs does, set -f included); one output word per line. */
function modparams(mod: string, cmdline: string): string[] {
  const script = `${fn}set -f\nfor p in $(modparams "$1" "$2"); do printf '%s\\n' "$p"; done\n`;
  const p = Bun.spawnSync([...shell, "-c", script, "sh", mod, cmdline]);
  expect(p.stderr.toString()).toBe("");
  return p.stdout.toString().split("\n").filter(Boolean);
}

describe("initramfs modparams", () => {
  test("picks this module's parameters from the command line, nothing else", () => {
    const cmd = "console=ttyS0 reboot=k virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 virtio_blk.x=1 root=/dev/vda";
    expect(modparams("virtio_mmio", cmd)).toEqual(["device=4K@0xd0000000:5", "device=4K@0xd0001000:6"]);
    expect(modparams("virtio_blk", cmd)).toEqual(["x=1"]);
    expect(modparams("evdev", cmd)).toEqual([]);
  });

  test("module file names with '-' match the '_' form the kernel uses", () => {
    expect(modparams("virtio-rng", "virtio_rng.foo=bar")).toEqual(["foo=bar"]);
  });

  test("hostile words are passed as inert words: no globbing, no command substitution", () => {
    const cmd = "virtio_mmio.a=* virtio_mmio.b=$(touch${IFS}/tmp/pwned) virtio_mmio.c=`id` virtio_mmio.d=';'";
    expect(modparams("virtio_mmio", cmd)).toEqual(["a=*", "b=$(touch${IFS}/tmp/pwned)", "c=`id`", "d=';'"]);
  });
});
