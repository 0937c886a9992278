import type { VMHandles, VMRecord } from "../shared/model.ts";
import type { Host } from "../host/types.ts";

/** What a driver needs to boot a VM, assembled by the engine and plugins. */
export interface BootConfig {
  kernelPath: string;
  initrdPaths: string[];
  /** Kernel command line extras appended by plugins. */
  kernelArgs: string[];
  disks: { path: string; format: "raw" | "qcow2"; readOnly?: boolean }[];
  /** Driver-specific arguments contributed by plugins (e.g. QEMU -netdev). */
  netArgs: string[];
  /** Files for the guest's / (absolute path → text), laid down by its init at boot (the guest plugin's seed): e.g. net-user's resolver and proxy settings. */
  guestFiles?: Record<string, string>;
  /** Tap devices to attach, filled by the net-tap plugin. */
  nics?: { tap: string; mac: string }[];
}

export interface LaunchOptions {
  /** Start from saved memory and device state (a file `saveState` wrote) instead of booting: the guest runs on from that instant. */
  restoreFrom?: string;
}

export interface SaveOptions {
  /**
   * The VM runs on after the save (it ran when the snapshot began, and is stopped now with its disks taken):
   * the driver may let it run again before its save has finished (QEMU: background-snapshot), returning once
   * it runs; `finish` then waits for the rest. Otherwise the VM stays stopped until the caller resumes it.
   */
  runOn?: boolean;
}

/** What a state save gives back: how long the VM stood still, and the rest of the save for after its resume. */
export type SaveResult = void | { frozenMs: number; finish?: () => Promise<void> };

/** A state save made ready before the freeze (see VMMDriver.prepareSave). */
export interface PreparedSave {
  /** The save itself, as saveState would do it (same options, same result). Once. */
  save(opts?: SaveOptions): Promise<SaveResult>;
  /** Undo the preparation (a snapshot that fails before or during its save); a no-op once the save has finished. */
  abandon(): Promise<void>;
}

export interface LaunchResult {
  pid: number;
  pidStartTime: number;
}

/**
 * A VMM backend. Drivers are registered by plugins; the engine picks one by
 * VMSpec.driver. A "VM" is a detached host process reachable by its API
 * socket (Firecracker API socket, QEMU QMP socket).
 */
export interface VMMDriver {
  readonly name: string;
  /** The most vCPUs it runs a VM with: a create asking more is refused up front, not at its first start. */
  readonly maxCpus?: number;
  /** Launch the VM process detached from the daemon. Must not block on guest boot. */
  launch(vm: VMRecord, boot: BootConfig, opts?: LaunchOptions): Promise<LaunchResult>;
  /** Does the API socket answer? (One probe, short timeout.) */
  apiAnswers(vm: VMRecord): Promise<boolean>;
  /** Find the live VM process by what identifies it (API socket path in its cmdline). */
  findProcess(vm: VMRecord): Promise<{ pid: number; startTime: number } | null>;
  /** Ask the guest to shut down, wait up to timeoutMs, then kill. */
  stop(vm: VMRecord, handles: VMHandles, timeoutMs: number): Promise<void>;
  /** Kill now. */
  kill(vm: VMRecord, handles: VMHandles): Promise<void>;
  /** Stop the guest's vCPUs, the VMM process staying up (QMP `stop`, Firecracker `PATCH /vm` Paused). Absent: the VMM cannot pause. */
  pause?(vm: VMRecord, handles: VMHandles): Promise<void>;
  /** Let a paused guest run on. */
  resume?(vm: VMRecord, handles: VMHandles): Promise<void>;
  /** Whether the guest's vCPUs run, as the VMM says; reconcile records it, so a daemon that died between the VMM's answer and the store's write ends up telling the truth. */
  runState?(vm: VMRecord): Promise<"running" | "paused">;
  /**
   * Write the memory and device state of a VM whose vCPUs are stopped (pause) to `path` (and, for a VMM that
   * keeps RAM in its own file, beside it in the same dir); it may resume afterwards. With `liveSave`, the VM
   * may be given running: the driver stops it itself at the instant it saves, returns with it stopped, and
   * says how long it has stood still. `finish`, when returned, is the rest of the save that needs the VM no
   * more: the caller runs it once after resuming the VM (or while unwinding a failed snapshot). Absent: the
   * VMM cannot snapshot.
   */
  saveState?(vm: VMRecord, handles: VMHandles, path: string, opts?: SaveOptions): Promise<SaveResult>;
  /**
   * What saveState would do, in two steps: what can be made ready while the VM still runs (QEMU: the receiver
   * process the RAM streams into, started and listening), then the save. The caller prepares before its freeze,
   * so the freeze holds the save alone. Absent: saveState does it all.
   */
  prepareSave?(vm: VMRecord, handles: VMHandles, path: string): Promise<PreparedSave>;
  /**
   * The live VM's disk `index` (its place in BootConfig.disks) writes to `overlay` from now on: a qcow2 the caller
   * made with the disk's current file as its backing, which the VMM keeps open read-only (QEMU:
   * `blockdev-snapshot-sync` mode existing). Lets a snapshot keep the old file as it is instead of copying it.
   * Absent: the VMM cannot (the storage copies the disk instead).
   */
  switchDisk?(vm: VMRecord, handles: VMHandles, index: number, overlay: string): Promise<void>;
  /**
   * The live VM's disk `index` takes in every layer of its chain above `base` (a file of that chain), then reads
   * through `base` directly, named `base.name` in its header: a shorter chain with the same bytes, the guest
   * running on (QEMU: `block-stream`). Resolves once done; `signal` cancels it, leaving the chain as it was.
   * Absent: the VMM cannot (a live VM's chain then stays as long as it is).
   */
  streamDisk?(vm: VMRecord, handles: VMHandles, index: number, base: { path: string; name: string }, signal?: AbortSignal): Promise<void>;
  /** saveState takes a running VM and stops it only as long as it must (see saveState). */
  readonly liveSave?: boolean;
  /**
   * At daemon start, before any VM is reconciled (nothing of this daemon's is at work yet): end what a killed
   * daemon left running of the driver's own helpers (QEMU: a snapshot's receiver) for these VMs and for any
   * dir under `vmsDir` no VM owns, and remove their files. One line per thing done. Absent: it leaves none.
   */
  reapLeftovers?(scope: { vms: readonly VMRecord[]; vmsDir: string }): Promise<string[]>;
  /**
   * Why this live VM, its VMM answering, can never run its guest again, or null: reconcile, and a live snapshot
   * that failed, stop such a VM with this as its lastError rather than keep it as running (QEMU 7.2 after a
   * background save that failed: see the qemu driver). Absent: never.
   */
  guestStuck?(vm: VMRecord, handles: VMHandles): Promise<string | null>;
  /**
   * Why the VMM itself has stopped this live VM's guest, which runs on once the cause is gone and `resume` is
   * asked (QEMU stops a guest whose disk write failed, e.g. on a full host disk, rather than fail the write in
   * the guest), or null while it runs. Said as the cause alone ("a write to its disk … found no space left …").
   * Absent: the VMM never does.
   */
  haltedBy?(vm: VMRecord): Promise<string | null>;
  /** Can this host run it, and why not? Absent means always. Picks the default VMM and refuses one that cannot run. */
  usable?(): Promise<{ usable: boolean; reason: string }>;
  /** Network modes this VMM can attach, the first being its default. Absent means ["user", "tap"]. */
  readonly nets?: readonly string[];
}

export type DriverFactory = (host: Host) => VMMDriver;
