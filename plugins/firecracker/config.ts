import { BangerError, type VMRecord, type BootConfig, vmPaths } from "../../src/plugin-api.ts";
import { basename, dirname, join } from "node:path";
import type { FcCall } from "./api.ts";

/**
 * Kernel arguments a Firecracker guest needs: the serial console is ttyS0,
 * `reboot=k` makes a guest reboot a keyboard-controller reset (Firecracker
 * exits on it, which is how SendCtrlAltDel ends a VM), `panic=1` turns a
 * panic into that same exit, `pci=off` because every device is virtio-mmio.
 * The i8042 options are Firecracker's own defaults: they skip probing the
 * parts of the keyboard controller it does not emulate (seconds of boot).
 */
export const FC_KERNEL_ARGS = [
  "console=ttyS0",
  "reboot=k",
  "panic=1",
  "pci=off",
  "i8042.noaux",
  "i8042.nomux",
  "i8042.nopnp",
  "i8042.dumbkbd",
  "quiet",
  "mitigations=off",
];

/** Firecracker ids (drive_id, iface_id) are [A-Za-z0-9_], at most 64 characters. */
export const FC_ID_RE = /^[A-Za-z0-9_]{1,64}$/;

/** vCPU range Firecracker accepts (MachineConfiguration.vcpu_count). */
export const FC_MAX_VCPUS = 32;

/** Any CID >= 3 works: Firecracker's vsock is per-VM (a unix socket on the host), not the host's vsock namespace. */
export const FC_DEFAULT_CID = 3;

/** Per-VM files the Firecracker driver uses, derived from VMDir / VMRuntime. */
export function fcPaths(vm: VMRecord) {
  const dir = vm.runtime.vmDir;
  const p = vmPaths(dir);
  return {
    apiSock: vm.runtime.apiSockPath || p.apiSock,
    /** Firecracker's stdout is the guest's serial console. */
    serialLog: vm.runtime.logPath || p.serialLog,
    fcLog: join(dir, "firecracker.log"),
    metrics: vm.runtime.metricsPath || join(dir, "firecracker.metrics"),
    vsock: vm.runtime.vsockPath || join(dir, "vsock.sock"),
    initrd: join(dir, "initrd.img"),
  };
}

/**
 * Firecracker on x86 boots an uncompressed ELF vmlinux, not a bzImage. Images
 * keep one next to vmlinuz (same dir), so the image record needs no new field.
 */
export function vmlinuxFor(kernelPath: string): string {
  return basename(kernelPath).startsWith("vmlinuz") ? join(dirname(kernelPath), "vmlinux") : kernelPath;
}

export function fcDriveId(index: number): string {
  return index === 0 ? "rootfs" : `disk${index}`;
}

export interface FcPlanPaths {
  fcLog: string;
  metrics: string;
  vsock: string;
  /** The single initrd to hand over (several are concatenated into one first). */
  initrd?: string;
}

/**
 * Every API call that configures and boots a VM, in the order the
 * firecracker-go-sdk uses (logging first so later failures are logged, then
 * machine, boot source, drives, network, vsock, and InstanceStart last).
 */
export function fcConfigCalls(vm: VMRecord, boot: BootConfig, p: FcPlanPaths): FcCall[] {
  if (vm.spec.cpus < 1 || vm.spec.cpus > FC_MAX_VCPUS) {
    throw new BangerError("E_BAD_REQUEST", `firecracker runs 1 to ${FC_MAX_VCPUS} vCPUs, not ${vm.spec.cpus}`);
  }
  if (boot.netArgs.length > 0) {
    // QEMU-only arguments (user networking): silently dropping them would leave a VM without the network it was promised
    throw new BangerError("E_BAD_REQUEST", `firecracker cannot use QEMU network arguments (${boot.netArgs.join(" ")}); use tap networking (nics)`);
  }
  const calls: FcCall[] = [
    { method: "PUT", path: "/logger", body: { log_path: p.fcLog, level: "Info", show_level: true, show_log_origin: false } },
    { method: "PUT", path: "/metrics", body: { metrics_path: p.metrics } },
    { method: "PUT", path: "/machine-config", body: { vcpu_count: vm.spec.cpus, mem_size_mib: vm.spec.memoryMiB, smt: false } },
  ];
  const bootSource: Record<string, string> = {
    kernel_image_path: boot.kernelPath,
    // boot_args replace Firecracker's default command line entirely, so ours carries everything the guest needs
    boot_args: [...FC_KERNEL_ARGS, ...boot.kernelArgs].join(" "),
  };
  if (p.initrd) bootSource.initrd_path = p.initrd;
  calls.push({ method: "PUT", path: "/boot-source", body: bootSource });

  boot.disks.forEach((d, i) => {
    if (d.format !== "raw") {
      throw new BangerError("E_BAD_REQUEST", `firecracker drives must be raw images; ${d.path} is ${d.format}`);
    }
    const id = fcDriveId(i);
    calls.push({
      method: "PUT",
      path: `/drives/${id}`,
      body: { drive_id: id, path_on_host: d.path, is_root_device: i === 0, is_read_only: !!d.readOnly, cache_type: "Unsafe" },
    });
  });

  (boot.nics ?? []).forEach((n, i) => {
    const id = `eth${i}`;
    if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(n.mac)) throw new BangerError("E_BAD_REQUEST", `bad MAC address for ${n.tap}: ${JSON.stringify(n.mac)}`);
    calls.push({ method: "PUT", path: `/network-interfaces/${id}`, body: { iface_id: id, host_dev_name: n.tap, guest_mac: n.mac } });
  });

  calls.push({
    method: "PUT",
    path: "/vsock",
    body: { guest_cid: vm.runtime.vsockCID >= 3 ? vm.runtime.vsockCID : FC_DEFAULT_CID, uds_path: p.vsock },
  });
  calls.push({ method: "PUT", path: "/actions", body: { action_type: "InstanceStart" } });
  return calls;
}

/** Where a Firecracker snapshot's guest memory goes: beside its state file (one path is what the engine hands a driver). */
export function fcMemFile(statePath: string): string {
  return `${statePath}.mem`;
}

/** Save a paused VM: a full snapshot (device state to `statePath`, guest memory beside it). */
export function fcSnapshotCreateCall(statePath: string): FcCall {
  return { method: "PUT", path: "/snapshot/create", body: { snapshot_type: "Full", snapshot_path: statePath, mem_file_path: fcMemFile(statePath) } };
}

/**
 * A restore instead of a boot: logging first, then the snapshot, loaded and
 * resumed, with this start's taps and vsock socket in place of the saved
 * ones (boot-specific resources may not be configured before a load).
 */
export function fcRestoreCalls(boot: BootConfig, p: FcPlanPaths, statePath: string): FcCall[] {
  const load: Record<string, unknown> = {
    snapshot_path: statePath,
    mem_backend: { backend_type: "File", backend_path: fcMemFile(statePath) },
    resume_vm: true,
    vsock_override: { uds_path: p.vsock },
  };
  if (boot.nics?.length) load.network_overrides = boot.nics.map((n, i) => ({ iface_id: `eth${i}`, host_dev_name: n.tap }));
  return [
    { method: "PUT", path: "/logger", body: { log_path: p.fcLog, level: "Info", show_level: true, show_log_origin: false } },
    { method: "PUT", path: "/metrics", body: { metrics_path: p.metrics } },
    { method: "PUT", path: "/snapshot/load", body: load },
  ];
}
