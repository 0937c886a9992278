/** Lifecycle states of a VM. */
/** "creating": the row claims the name while create runs; a crash leaves it for reconcile to remove. "paused": the VMM runs but the guest's vCPUs are stopped (`vm pause`). */
export type VMState = "creating" | "created" | "starting" | "running" | "paused" | "stopping" | "stopped" | "error" | "deleting";

export const VM_NAME_RULE = "[a-z0-9][a-z0-9-]{0,62}";
export const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * What a VM *is*: durable, lives in the `vms` row. Paths are derived from
 * VMDir and never change while the VM exists.
 */
export interface VMRuntime {
  state: VMState;
  guestIP: string;
  apiSockPath: string;
  vsockPath: string;
  vsockCID: number;
  logPath: string;
  metricsPath: string;
  dnsName: string;
  vmDir: string;
  systemOverlay: string;
  workDiskPath: string;
  lastError: string;
  /** Where the host reaches the guest's SSH server (loopback port forward by default). */
  sshHost: string;
  sshPort: number;
}

export interface VMSpec {
  image: string;
  cpus: number;
  memoryMiB: number;
  /** Size of the system disk in MiB (0 = the image's size). */
  diskMiB: number;
  /** Size of an extra work disk in MiB (0 = none). */
  workDiskMiB: number;
  driver: string;
  /** The network provider that serves it (`--net`): "user" (QEMU user net, loopback SSH forward; plugins/net-user) or "tap" (bridge + tap, plugins/net-tap), or a plugin's own. */
  net?: string;
  /** The storage provider that made its disks and attaches them (`--storage`): "dm" (plugins/storage-dm), "copy" (plugins/storage), or a plugin's own. */
  storage: string;
  /** Published ports (`--publish`, `vm port add`), re-applied at every start and after a daemon restart. */
  ports?: PublishedPort[];
  /** Egress policy (`--egress`, `banger vm egress`): "none", "all" or a comma-separated allowlist (src/shared/egress.ts). */
  egress?: string;
}

/**
 * The spec fields that make a VM what it is, with the create flag that sets each: a clone has its snapshot's, a
 * warm start matches its template on them, and `vm run --name` of an existing VM refuses other ones.
 */
export const SHAPE_FIELDS = [
  { key: "image", flag: "--image" },
  { key: "cpus", flag: "--cpus" },
  { key: "memoryMiB", flag: "--memory" },
  { key: "diskMiB", flag: "--disk" },
  { key: "workDiskMiB", flag: "--work-disk" },
  { key: "driver", flag: "--vmm" },
  { key: "net", flag: "--net" },
  { key: "storage", flag: "--storage" },
] as const;

export type ShapeKey = (typeof SHAPE_FIELDS)[number]["key"];

/** A guest port the host can reach: `[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]` as asked, and how it is reached now. */
export interface PublishedPort {
  proto: "tcp" | "udp";
  /** The host address a forward listens on (default 127.0.0.1). */
  hostIP: string;
  /** As asked: 0 = any free port (the one picked is boundPort, kept for the next start). */
  hostPort: number;
  guestPort: number;
  /** The host port forwarding to the guest port now or last time; 0 when the network needs no forward (tap) or none was made yet. */
  boundPort: number;
  /** Where the host reaches it while the VM runs ("127.0.0.1:8080", "10.213.0.2:80", "web.vm:80"); empty while it is stopped. */
  reach: string[];
}

/** What the VM's lifetime deadlines are fired on: "delete" (the default) or "stop". */
export type TTLAction = "delete" | "stop";

/**
 * When the daemon stops or deletes the VM by itself (`--ttl`, `--idle-timeout`, `vm ttl`).
 * Absolute times in the `vms` row, so they outlive a daemon; "" means none.
 */
export interface VMLifetime {
  /** ISO time the TTL fires at, or "". */
  expiresAt: string;
  /** What the TTL does when it fires. */
  ttlAction: TTLAction;
  /** Stop (or delete: idleAction) the VM after this long with no exec, ssh, session, workspace or file request (0: never). */
  idleTimeoutMs: number;
  /** What the idle timeout does: "stop" (a running VM) or "delete" (the VM, whatever its state: `vm run --rm`'s lease). */
  idleAction: TTLAction;
  /** ISO time of the last such request (or of the last start). */
  lastActiveAt: string;
  /** lastActiveAt + idleTimeoutMs while an idle timeout is set, else "". */
  idleDeadline: string;
}

export interface VMRecord {
  id: string;
  name: string;
  spec: VMSpec;
  runtime: VMRuntime;
  /** Absent on records made before lifetimes existed (and in tests that build records by hand). */
  lifetime?: VMLifetime;
  createdAt: string;
  updatedAt: string;
}

/**
 * What is *currently true* about a running VM: transient kernel/process
 * handles. NEVER stored in SQLite; kept in the daemon's cache and in
 * VMDir/handles.json.
 */
export interface VMHandles {
  pid: number;
  /** /proc/<pid>/stat starttime (clock ticks since boot): guards against PID reuse. */
  pidStartTime: number;
  tapDevice: string;
  baseLoop: string;
  cowLoop: string;
  dmName: string;
  dmDev: string;
  /** Entries contributed by plugins, keyed by plugin-chosen names. */
  extra: Record<string, string>;
}

export function emptyHandles(): VMHandles {
  return { pid: 0, pidStartTime: 0, tapDevice: "", baseLoop: "", cowLoop: "", dmName: "", dmDev: "", extra: {} };
}

export interface ImageRecord {
  name: string;
  dir: string;
  kernelPath: string;
  initrdPath: string;
  rootfsPath: string;
  kernelVersion: string;
  sizeBytes: number;
  createdAt: string;
  source: "built" | "imported" | "derived" | "committed" | "oci";
}

/** An OCI import, or an image built or committed on one (its manifest carries the OCI init and defaults then): worth reading its manifest for them. */
export function mayBeFromOci(img: Pick<ImageRecord, "source">): boolean {
  return img.source === "oci" || img.source === "derived" || img.source === "committed";
}

export type SessionStdinMode = "pipe" | "closed";
export type SessionStatus = "starting" | "running" | "exited" | "failed" | "stopped";

export interface GuestSession {
  id: string;
  vmId: string;
  name: string;
  backend: "ssh";
  command: string;
  args: string[];
  cwd: string;
  stdinMode: SessionStdinMode;
  status: SessionStatus;
  guestStateDir: string;
  stdoutLogPath: string;
  stderrLogPath: string;
  attachable: boolean;
  reattachable: boolean;
  launchStage: string;
  launchMessage: string;
  guestPid: number;
  exitCode: number | null;
  startedAt: string;
  endedAt: string;
  createdAt: string;
  updatedAt: string;
}

/** `creating`: files are being written (a crash leaves it for reconcile to remove with its files); `deleting`: `snapshot rm` began. */
export type SnapshotState = "creating" | "ready" | "deleting";

/**
 * A checkpoint of a VM, named `VM@SNAP`: its disks and, when the VM ran,
 * its memory and device state, under `$BANGER_HOME/snapshots/<id>/`. Never
 * changed after it is made, and independent of the VM (it outlives it).
 */
export interface SnapshotRecord {
  id: string;
  name: string;
  vmId: string;
  /** The VM's name when the snapshot was made (the `VM` of `VM@SNAP`). */
  vmName: string;
  state: SnapshotState;
  dir: string;
  /** Memory and device state were saved (the VM ran); false: disks only (it was stopped). */
  memory: boolean;
  /** The VM's spec at that instant: a restore needs the same machine shape. */
  spec: VMSpec;
  /** The disk files in `dir`, by the name the storage provider gave them. */
  disks: string[];
  sizeBytes: number;
  /** How long the VM's vCPUs stood still for it (0 for a stopped VM). */
  freezeMs: number;
  /** A warm-start template (`image warm`): a fresh boot of `spec.image` at this shape, valid while the image is the one made at `imageCreatedAt`. */
  template?: { imageCreatedAt: string };
  /** The guest sessions that ran when it was made (a clone gets its own records of them). */
  sessions?: GuestSession[];
  /** The snapshot paused a running VM for its save: a crash before the resume leaves reconcile to resume it. */
  thawVm?: boolean;
  createdAt: string;
}
