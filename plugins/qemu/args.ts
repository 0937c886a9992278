import { type VMRecord, type BootConfig } from "../../src/plugin-api.ts";

export type Accel = "kvm" | "tcg";

export interface QemuArgsOptions {
  accel: Accel;
  /** QMP unix socket: the VM's API socket (VMRuntime.apiSockPath). */
  qmpSock: string;
  pidfile: string;
  serialLog: string;
  /** The single initrd to pass (the driver concatenates several into one first). */
  initrd?: string;
}

/** Kernel arguments every banger guest gets, before the plugins' ones. */
export const BASE_KERNEL_ARGS = ["console=ttyS0", "quiet", "panic=-1", "mitigations=off", "nokaslr"];

/** QEMU option values are comma separated; a literal comma is written twice. */
export function qemuEscape(value: string): string {
  return value.replaceAll(",", ",,");
}

/** The exact `-qmp` value, also the needle that identifies a VM's process. */
export function qmpArg(qmpSock: string): string {
  return `unix:${qemuEscape(qmpSock)},server=on,wait=off`;
}

/**
 * The qemu-system-x86_64 argv (without the binary) for a VM, following
 * guest/NOTES.md: q35 (microvm hangs under TCG), serial to a file, virtio
 * disks, plugin network args, virtio-rng (entropy stalls the first SSH
 * handshake without it), QMP on the API socket. No -daemonize: the driver
 * spawns qemu in its own session, so the pid it gets is qemu's.
 */
export function qemuArgs(vm: VMRecord, boot: BootConfig, o: QemuArgsOptions): string[] {
  const args: string[] = ["-name", `banger-${vm.id}`, "-M", "q35"];
  if (o.accel === "kvm") args.push("-accel", "kvm", "-cpu", "host");
  // tb-size=64 lowers RSS from ~298 MB to ~245 MB (NOTES.md)
  else args.push("-accel", "tcg,tb-size=64");
  args.push(
    "-m", String(vm.spec.memoryMiB),
    "-smp", String(vm.spec.cpus),
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    "-serial", `file:${o.serialLog}`,
    "-kernel", boot.kernelPath,
  );
  const initrd = o.initrd ?? (boot.initrdPaths.length === 1 ? boot.initrdPaths[0] : undefined);
  if (boot.initrdPaths.length > 1 && o.initrd === undefined) {
    throw new Error("qemuArgs: several initrds need concatenating into one first (the driver does this)");
  }
  if (initrd) args.push("-initrd", initrd);
  args.push("-append", [...BASE_KERNEL_ARGS, ...boot.kernelArgs].join(" "));

  boot.disks.forEach((d, i) => {
    const drive = [
      `id=disk${i}`,
      `file=${qemuEscape(d.path)}`,
      `format=${d.format}`,
      "if=none",
      // raw disks are banger's own per-VM copies: losing writes on a host crash is acceptable
      d.format === "raw" ? "cache=unsafe" : "cache=writeback",
      "discard=unmap",
    ];
    if (d.readOnly) drive.push("readonly=on");
    args.push("-drive", drive.join(","), "-device", `virtio-blk-pci,drive=disk${i}`);
  });

  args.push(...boot.netArgs);
  (boot.nics ?? []).forEach((nic, i) => {
    // script=no: the tap is made and bridged by the net-tap plugin, not by qemu-ifup
    args.push(
      "-netdev", `tap,id=tap${i},ifname=${qemuEscape(nic.tap)},script=no,downscript=no`,
      "-device", `virtio-net-pci,netdev=tap${i},mac=${qemuEscape(nic.mac)}`,
    );
  });
  args.push(
    "-device", "virtio-rng-pci",
    "-qmp", qmpArg(o.qmpSock),
    "-pidfile", o.pidfile,
  );
  return args;
}
