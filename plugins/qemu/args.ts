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
  /** The guest agent's port on a pipe chardev at this path (`.in`/`.out` FIFOs made beforehand), or none. */
  agentPipe?: string;
  /** The exec agent's port (plugins/image/exec-agent.pl, plugins/guest/exec-agent.ts), likewise, or none. */
  execPipe?: string;
}

/** The virtio-serial port the guest's init looks for by name (plugins/image/init.sh, plugins/guest/agent.ts). */
export const AGENT_PORT_NAME = "banger.agent";
const _AGENT_PORT_DEVICE = `virtserialport,bus=agentbus.0,chardev=agent,name=${AGENT_PORT_NAME}`;

/** The exec agent's port, on the same bus, after the guest agent's (a port's number is its place on the bus). */
export const EXEC_PORT_NAME = "banger.exec";
const _EXEC_PORT_DEVICE = `virtserialport,bus=agentbus.0,chardev=exec,name=${EXEC_PORT_NAME}`;

/**
 * The agents' ports: their devices must be in a restore's argv exactly when they were in the saved VM's (QEMU
 * will not load a device state it has no device for, nor leave one out), so this is what the driver looks for.
 */
export function savedPorts(argv: readonly string[]): { agent: boolean; exec: boolean } {
  return { agent: argv.includes(_AGENT_PORT_DEVICE), exec: argv.includes(_EXEC_PORT_DEVICE) };
}

/** A pipe chardev never reports the host side closed: the guest's reads wait for data rather than return EOF. */
function agentPortArgs(agentPipe: string | undefined, execPipe: string | undefined): string[] {
  if (!agentPipe && !execPipe) return [];
  const out = ["-device", "virtio-serial-pci,id=agentbus"];
  if (agentPipe) out.push("-chardev", `pipe,id=agent,path=${qemuEscape(agentPipe)}`, "-device", _AGENT_PORT_DEVICE);
  if (execPipe) out.push("-chardev", `pipe,id=exec,path=${qemuEscape(execPipe)}`, "-device", _EXEC_PORT_DEVICE);
  return out;
}

/**
 * Guest RAM mapped from a file: `share: true` writes go to the file (a
 * snapshot's receiver fills it), `share: false` maps it copy-on-write (a
 * clone or rollback runs on it and the file never changes, so every clone
 * of one snapshot shares its pages in the page cache).
 */
export interface RamFile {
  path: string;
  share: boolean;
}

/**
 * The backend's id is the machine's default RAM id (pc.ram): the RAM block
 * keeps the name plain `-m` gives it, so a VM with anonymous RAM migrates
 * into one with file-backed RAM and back.
 */
export const RAM_ID = "pc.ram";

export function memoryBackendArgs(memoryMiB: number, ram: RamFile): string[] {
  return [
    "-object", `memory-backend-file,id=${RAM_ID},size=${memoryMiB}M,mem-path=${qemuEscape(ram.path)},share=${ram.share ? "on" : "off"}`,
    "-machine", `memory-backend=${RAM_ID}`,
  ];
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
  args.push("-device", "virtio-rng-pci");
  // last of the devices: a VM launched before it existed keeps every other device's PCI address
  args.push(...agentPortArgs(o.agentPipe, o.execPipe));
  args.push(
    "-qmp", qmpArg(o.qmpSock),
    "-pidfile", o.pidfile,
  );
  return args;
}

/** Where a snapshot's receiver QEMU keeps its own files (see receiverArgs). */
export interface ReceiverOptions {
  qmpSock: string;
  memoryMiB: number;
  /** One sparse stand-in per -drive, in order: the receiver never reads a disk, and must not lock the VM's. */
  placeholders: string[];
}

/**
 * The argv of a snapshot's receiver: the running VM's own launch argv
 * (same machine, devices and kernel, so its device state loads) with
 * everything the VM holds exclusively swapped out: its QMP socket, serial
 * file and pidfile, its disks (sparse stand-ins of the same size), its
 * forwarded SSH port (slirp binds port 0 instead); a VM on a tap has no
 * stand-in (refused). RAM is a shared memfd (shmem pages fault in at a
 * third of the cost of a shared mapping of an ext4 file: a 256 MiB guest's
 * stream loads in ~170 ms instead of ~450 ms), copied to the snapshot's RAM
 * file afterwards; the receiver waits for the stream (-incoming defer)
 * without ever running (-S).
 */
export function receiverArgs(launchArgs: readonly string[], o: ReceiverOptions): string[] {
  const out: string[] = [];
  let disk = 0;
  for (let i = 0; i < launchArgs.length; i++) {
    const opt = launchArgs[i]!;
    const val = launchArgs[i + 1];
    if (val === undefined || _RECEIVER_FLAGS.has(opt)) {
      out.push(opt);
      continue;
    }
    i++;
    switch (opt) {
      case "-name":
        out.push(opt, `${val}-snapshot`);
        break;
      case "-serial":
        out.push(opt, "null");
        break;
      case "-qmp":
        out.push(opt, qmpArg(o.qmpSock));
        break;
      case "-pidfile":
      case "-incoming":
        break;
      case "-chardev":
        // the guest agent's FIFOs are the VM's: the receiver's port only has to exist for its state to load
        out.push(opt, val.startsWith("pipe,") ? `null,id=${/(?:^|,)id=([^,]+)/.exec(val)?.[1] ?? "agent"}` : val);
        break;
      case "-object":
      case "-machine":
        // the VM's own RAM backend (a clone's private mapping) gives way to the receiver's shared one
        if (!val.startsWith("memory-backend")) out.push(opt, val);
        break;
      case "-drive": {
        const id = /^id=([^,]+),/.exec(val)?.[1];
        const ph = o.placeholders[disk++];
        if (!id || !ph) throw new Error(`receiverArgs: no stand-in for -drive ${val}`);
        out.push(opt, [`id=${id}`, `file=${qemuEscape(ph)}`, "format=raw", "if=none", "cache=unsafe", "discard=unmap", ...(/,readonly=on(,|$)/.test(val) ? ["readonly=on"] : [])].join(","));
        break;
      }
      case "-netdev":
        // virtio-net's saved state needs a tap to load into when its VM had one (vnet_hdr), and the VM holds it
        if (!val.startsWith("user,")) throw new Error(`receiverArgs: no stand-in for -netdev ${val.split(",")[0]}`);
        out.push(opt, val.replace(/,hostfwd=([a-z]+):([^,:]*):\d+-/g, ",hostfwd=$1:$2:0-"));
        break;
      default:
        out.push(opt, val);
    }
  }
  if (disk !== o.placeholders.length) throw new Error(`receiverArgs: ${o.placeholders.length} stand-ins for ${disk} disks`);
  out.push("-object", `memory-backend-memfd,id=${RAM_ID},size=${o.memoryMiB}M,share=on`, "-machine", `memory-backend=${RAM_ID}`, "-incoming", "defer", "-S");
  return out;
}

// the options in banger's argv that take no value
const _RECEIVER_FLAGS = new Set(["-nodefaults", "-no-user-config", "-no-reboot", "-S"]);
