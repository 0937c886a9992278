/**
 * `banger doctor`'s judgement: pure functions from a recorded HostView to
 * findings, so every branch is unit-tested with a hand-written view.
 * Levels: "fail" means banger cannot run VMs until fixed; "warn" means a
 * feature is off (tap networking); "note" means a slower or simpler path is
 * used (TCG instead of KVM, copies instead of dm-snapshots, QEMU instead of
 * Firecracker). Every finding that is not "ok" carries the command that fixes
 * it, when one exists.
 */

import { TOOL_PACKAGES } from "../host/tools.ts";

export type Level = "ok" | "note" | "warn" | "fail";

export interface Finding {
  id: string;
  level: Level;
  /** One line: what was found. */
  message: string;
  /** The exact command (or step) that fixes it; "" when nothing can be done on this host. */
  fix: string;
}

export interface DeviceAccess {
  exists: boolean;
  /** Openable read-write by this process. */
  rw: boolean;
}

/** What doctor saw on the host: gathered once (src/doctor/view.ts), judged here. */
export interface HostView {
  home: string;
  uid: number;
  /** CAP_NET_ADMIN in the effective set (root has it too). */
  capNetAdmin: boolean;
  kvm: { exists: boolean; pvm: boolean; rw: boolean; forced: "" | "kvm" | "tcg" };
  /** Absolute path of each tool looked up, or null. */
  tools: Record<string, string | null>;
  /** First line of `<tool> --version`, or null when it did not run. */
  versions: { qemu: string | null; firecracker: string | null };
  /** kernel: /proc/misc lists device-mapper (dm_mod loaded); control: /dev/mapper/control exists. */
  dm: { kernel: boolean; control: boolean; versionOk: boolean; versionError: string };
  tun: DeviceAccess;
  loopControl: DeviceAccess;
  /** Free bytes on the filesystem holding the banger home (or its nearest existing parent). */
  disk: { path: string; freeBytes: number | null };
  image: { name: string; present: boolean; dir: string };
}

export interface DoctorReport {
  /** banger can run VMs here (no "fail" finding). */
  ok: boolean;
  findings: Finding[];
}

const GiB = 1024 ** 3;
/** Below this banger cannot hold an image plus a VM's disks. */
export const DISK_FAIL_BYTES = 1 * GiB;
/** Below this a couple of VMs with writes or an image rebuild may fill it. */
export const DISK_WARN_BYTES = 4 * GiB;

/** A tool, the Debian package that provides it, and whether running VMs (not only building images) needs it. */
export const HOST_TOOLS: { tool: string; pkg: string; what: string; runtime: boolean }[] = [
  { tool: "qemu-system-x86_64", pkg: TOOL_PACKAGES["qemu-system-x86_64"], what: "runs the VMs", runtime: true },
  { tool: "mkfs.ext4", pkg: TOOL_PACKAGES["mkfs.ext4"], what: "work disks", runtime: true },
  { tool: "resize2fs", pkg: TOOL_PACKAGES["resize2fs"], what: "grows system disks", runtime: true },
  { tool: "e2fsck", pkg: TOOL_PACKAGES["e2fsck"], what: "grows system disks", runtime: true },
  { tool: "socat", pkg: TOOL_PACKAGES["socat"], what: "egress relays of --net user VMs (QEMU guestfwd)", runtime: true },
  { tool: "qemu-img", pkg: TOOL_PACKAGES["qemu-img"], what: "disk images", runtime: false },
  { tool: "mmdebstrap", pkg: TOOL_PACKAGES["mmdebstrap"], what: "builds guest images", runtime: false },
  // a VM's own keys are made in-process (plugins/guest/ssh-keys.ts); an OCI image carries this one in for an unseeded boot
  { tool: "dropbearkey", pkg: TOOL_PACKAGES["dropbearkey"], what: "carried into OCI images (guest host key)", runtime: false },
  { tool: "cpio", pkg: TOOL_PACKAGES["cpio"], what: "guest image initramfs", runtime: false },
  { tool: "busybox", pkg: TOOL_PACKAGES["busybox"], what: "guest image initramfs", runtime: false },
];

/** Tools looked up for the device-mapper, networking and Firecracker checks. */
export const EXTRA_TOOLS = ["firecracker", "dmsetup", "losetup", "blockdev", "ip", "iptables", "nft"];

export function aptInstall(pkgs: string[]): string {
  return `sudo apt-get install -y --no-install-recommends ${[...new Set(pkgs)].join(" ")}`;
}

function _gib(bytes: number): string {
  return `${(bytes / GiB).toFixed(1)} GiB`;
}

function _privileged(v: HostView): boolean {
  return v.uid === 0 || v.capNetAdmin;
}

export function kvmUsableIn(v: HostView): boolean {
  if (v.kvm.forced) return v.kvm.forced === "kvm";
  return v.kvm.exists && !v.kvm.pvm && v.kvm.rw;
}

export function checkKvm(v: HostView): Finding {
  const id = "kvm";
  if (v.kvm.forced === "tcg") return { id, level: "note", message: "BANGER_ACCEL=tcg: VMs run under software emulation (TCG)", fix: "unset BANGER_ACCEL" };
  if (v.kvm.forced === "kvm") return { id, level: "ok", message: "BANGER_ACCEL=kvm forces KVM (not probed)", fix: "" };
  if (!v.kvm.exists) {
    return { id, level: "note", message: "/dev/kvm does not exist: VMs run under TCG (slower)", fix: "sudo modprobe kvm_intel || sudo modprobe kvm_amd  (needs hardware virtualization enabled in the firmware, or nested virtualization on a cloud VM)" };
  }
  if (v.kvm.pvm) {
    return { id, level: "note", message: "/dev/kvm is kvm_pvm (/sys/module/kvm_pvm): it only runs PVM guest kernels, so VMs run under TCG (slower)", fix: "" };
  }
  if (!v.kvm.rw) {
    return { id, level: "note", message: "/dev/kvm cannot be opened read-write: VMs run under TCG (slower)", fix: "sudo usermod -aG kvm \"$USER\"  (then log in again)" };
  }
  return { id, level: "ok", message: "/dev/kvm is usable", fix: "" };
}

export function checkQemu(v: HostView): Finding {
  const id = "qemu";
  if (!v.tools["qemu-system-x86_64"]) {
    // Firecracker alone is enough where KVM works
    const fcOnly = !!v.tools.firecracker && kvmUsableIn(v);
    return { id, level: fcOnly ? "warn" : "fail", message: `qemu-system-x86_64 not found${fcOnly ? " (Firecracker can still run VMs)" : ": nothing can run VMs"}`, fix: aptInstall([TOOL_PACKAGES["qemu-system-x86_64"]]) };
  }
  if (!v.versions.qemu) return { id, level: "fail", message: `${v.tools["qemu-system-x86_64"]} --version failed: the binary is broken`, fix: `sudo apt-get install --reinstall -y ${TOOL_PACKAGES["qemu-system-x86_64"]}` };
  return { id, level: "ok", message: `${v.versions.qemu} (${v.tools["qemu-system-x86_64"]})`, fix: "" };
}

export function checkFirecracker(v: HostView): Finding {
  const id = "firecracker";
  const qemuOk = !!v.tools["qemu-system-x86_64"] && !!v.versions.qemu;
  if (!v.tools.firecracker) {
    return { id, level: qemuOk ? "note" : "warn", message: `firecracker not found${qemuOk ? ": VMs use QEMU" : ""}`, fix: "install the firecracker release binary as /usr/local/bin/firecracker (README: Firecracker)" };
  }
  if (!v.versions.firecracker) return { id, level: "warn", message: `${v.tools.firecracker} --version failed`, fix: "reinstall the firecracker release binary (README: Firecracker)" };
  if (!kvmUsableIn(v)) return { id, level: "note", message: `${v.versions.firecracker}: present but unusable without KVM; VMs use QEMU`, fix: "" };
  return { id, level: "ok", message: `${v.versions.firecracker} (${v.tools.firecracker})`, fix: "" };
}

export function checkTools(v: HostView): Finding[] {
  const out: Finding[] = [];
  for (const t of HOST_TOOLS) {
    if (t.tool === "qemu-system-x86_64") continue; // its own check
    const path = v.tools[t.tool];
    if (path) {
      out.push({ id: `tool:${t.tool}`, level: "ok", message: `${t.tool} (${path})`, fix: "" });
      continue;
    }
    // build-only tools matter only while there is no image to run
    const level: Level = t.runtime || !v.image.present ? "fail" : "warn";
    out.push({ id: `tool:${t.tool}`, level, message: `${t.tool} not found (${t.what})`, fix: aptInstall([t.pkg]) });
  }
  return out;
}

export function checkDeviceMapper(v: HostView): Finding {
  const id = "device-mapper";
  const fallback = "VM disks are sparse copies instead of dm-snapshots";
  if (!v.dm.kernel) return { id, level: "note", message: `device-mapper is not in the kernel (/proc/misc has no device-mapper): ${fallback}`, fix: "sudo modprobe dm_mod dm_snapshot" };
  if (!v.dm.control) return { id, level: "note", message: `/dev/mapper/control does not exist: ${fallback}`, fix: "sudo dmsetup mknodes" };
  const missing = ["dmsetup", "losetup", "blockdev"].filter((t) => !v.tools[t]);
  if (missing.length) {
    return { id, level: "note", message: `${missing.join(", ")} not found: ${fallback}`, fix: aptInstall(missing.map((t) => (t === "dmsetup" ? "dmsetup" : "util-linux"))) };
  }
  if (!v.dm.versionOk) {
    const why = v.dm.versionError ? ` (${v.dm.versionError})` : "";
    const fix = v.uid === 0 ? "sudo modprobe dm_mod dm_snapshot" : "run banger as root (device-mapper needs it)";
    return { id, level: "note", message: `dmsetup version failed${why}: ${fallback}`, fix };
  }
  if (!v.loopControl.exists || !v.loopControl.rw) return { id, level: "note", message: `device-mapper works but loop devices do not: ${fallback}`, fix: "sudo modprobe loop" };
  return { id, level: "ok", message: "device-mapper usable: VM disks are dm-snapshots of the image", fix: "" };
}

export function checkLoop(v: HostView): Finding {
  const id = "loop";
  if (!v.loopControl.exists) return { id, level: "note", message: "/dev/loop-control does not exist (only dm-snapshot storage needs loop devices)", fix: "sudo modprobe loop" };
  if (!v.loopControl.rw) return { id, level: "note", message: "/dev/loop-control cannot be opened read-write (only dm-snapshot storage needs loop devices)", fix: "run banger as root" };
  return { id, level: "ok", message: "/dev/loop-control usable", fix: "" };
}

export function checkTun(v: HostView): Finding {
  const id = "tun";
  const off = "tap networking is off; VMs use QEMU user networking";
  if (!v.tun.exists) return { id, level: "warn", message: `/dev/net/tun does not exist: ${off}`, fix: "sudo modprobe tun" };
  if (!v.tun.rw) return { id, level: "warn", message: `/dev/net/tun cannot be opened read-write: ${off}`, fix: "run banger as root" };
  return { id, level: "ok", message: "/dev/net/tun usable", fix: "" };
}

export function checkBridgeNat(v: HostView): Finding {
  const id = "bridge-nat";
  const off = "no bridge/NAT for tap networking; VMs use QEMU user networking";
  if (!v.tools.ip) return { id, level: "warn", message: `ip not found: ${off}`, fix: aptInstall([TOOL_PACKAGES.ip]) };
  if (!v.tools.iptables && !v.tools.nft) return { id, level: "warn", message: `neither iptables nor nft found: ${off}`, fix: aptInstall([TOOL_PACKAGES.nft]) };
  if (!_privileged(v)) {
    return { id, level: "warn", message: `not root and no CAP_NET_ADMIN: ${off}`, fix: "run banger as root, or: sudo setcap cap_net_admin+ep \"$(command -v banger)\"" };
  }
  const nat = v.tools.nft ? "nft" : "iptables";
  return { id, level: "ok", message: `${v.uid === 0 ? "root" : "CAP_NET_ADMIN"}, ip and ${nat} present`, fix: "" };
}

export function checkDisk(v: HostView): Finding {
  const id = "disk";
  if (v.disk.freeBytes === null) return { id, level: "warn", message: `cannot read free space under ${v.disk.path}`, fix: `df -h ${v.disk.path}` };
  const free = `${_gib(v.disk.freeBytes)} free under ${v.disk.path}`;
  const fix = `free space there (banger vm delete <name>, banger image rm <name>) or point BANGER_HOME at a larger filesystem`;
  if (v.disk.freeBytes < DISK_FAIL_BYTES) return { id, level: "fail", message: `${free} (need at least ${_gib(DISK_FAIL_BYTES)})`, fix };
  if (v.disk.freeBytes < DISK_WARN_BYTES) return { id, level: "warn", message: `${free} (below ${_gib(DISK_WARN_BYTES)}: an image build or a few VMs may fill it)`, fix };
  return { id, level: "ok", message: free, fix: "" };
}

export function checkImage(v: HostView): Finding {
  const id = "image";
  const build = v.image.name === "default" ? "banger image build" : `banger image build --name ${v.image.name}`;
  // image build runs mmdebstrap --mode=root and chroots: not root, the image comes from elsewhere
  const elsewhere = "import one built by root: banger image import NAME --kernel K --rootfs R --initrd I";
  if (!v.image.present) {
    return { id, level: "fail", message: `image "${v.image.name}" not found in ${v.image.dir}`, fix: v.uid === 0 ? build : `${build} needs root: run it as root, or ${elsewhere}` };
  }
  if (v.uid !== 0) return { id, level: "note", message: `image "${v.image.name}" present (${v.image.dir}); image build and vm commit need root here`, fix: `run them as root, or ${elsewhere}` };
  return { id, level: "ok", message: `image "${v.image.name}" present (${v.image.dir})`, fix: "" };
}

export function diagnose(v: HostView): DoctorReport {
  const findings = [
    checkQemu(v),
    checkFirecracker(v),
    checkKvm(v),
    ...checkTools(v),
    checkDeviceMapper(v),
    checkLoop(v),
    checkTun(v),
    checkBridgeNat(v),
    checkDisk(v),
    checkImage(v),
  ];
  return { ok: findings.every((f) => f.level !== "fail"), findings };
}
