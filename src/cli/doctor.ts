import { defineCommand } from "citty";
import { createExec } from "../host/exec.ts";
import { createFS } from "../host/fs.ts";
import { kvmUsable } from "../vmm/kvm.ts";
import { jsonArg, out } from "./context.ts";

/** Host tools banger runs, and the Debian package that provides each. */
export const HOST_TOOLS: [tool: string, pkg: string, what: string][] = [
  ["qemu-system-x86_64", "qemu-system-x86", "runs the VMs"],
  ["qemu-img", "qemu-utils", "disk images"],
  ["mmdebstrap", "mmdebstrap", "builds guest images"],
  ["mkfs.ext4", "e2fsprogs", "makes root and work filesystems"],
  ["resize2fs", "e2fsprogs", "grows system disks"],
  ["cpio", "cpio", "guest image initramfs"],
  ["busybox", "busybox-static", "guest image initramfs"],
  ["dropbearkey", "dropbear-bin", "guest SSH host keys"],
  ["ssh-keygen", "openssh-client", "per-VM client keys"],
];

export default defineCommand({
  meta: { name: "doctor", description: "Check the host: tools, KVM, what to install" },
  args: { ...jsonArg },
  async run({ args }) {
    const exec = createExec();
    const tools = await Promise.all(HOST_TOOLS.map(async ([tool, pkg, what]) => ({ tool, pkg, what, path: await exec.which(tool) })));
    const missing = tools.filter((t) => !t.path);
    const kvm = await kvmUsable({ fs: createFS() });
    const pkgs = [...new Set(missing.map((m) => m.pkg))];
    const report = { ok: missing.length === 0, tools, kvm, install: pkgs.length ? `apt-get install -y --no-install-recommends ${pkgs.join(" ")}` : "" };
    out(report, !!args.json, () =>
      [
        ...tools.map((t) => `${t.path ? "ok     " : "MISSING"} ${t.tool.padEnd(20)} ${t.path ?? `(package ${t.pkg}: ${t.what})`}`),
        `${kvm.usable ? "ok     " : "note   "} kvm                  ${kvm.usable ? "usable" : `not usable: ${kvm.reason}; VMs run under TCG (slower)`}`,
        ...(pkgs.length ? ["", `install the missing tools: sudo ${report.install}`] : []),
      ].join("\n"),
    );
    if (missing.length) process.exit(1);
  },
});
