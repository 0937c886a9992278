import { Database } from "bun:sqlite";
import { BangerError } from "../shared/errors.ts";
import type { ImageRecord, PublishedPort, TTLAction, VMLifetime, VMRecord, VMState } from "../shared/model.ts";
import type { LeaseStore } from "../shared/leases.ts";
import type { SessionRepo } from "../shared/session-repo.ts";
import { createLeaseStore } from "./leases.ts";
import { createSnapshotRepo, type SnapshotRepo } from "./snapshots.ts";
import { createE2BRepo, type E2BRepo } from "./e2b.ts";
import { migrate } from "./migrations.ts";
import { createSessionRepo } from "./sessions.ts";

interface VMRow {
  id: string;
  name: string;
  image: string;
  cpus: number;
  memory_mib: number;
  disk_mib: number;
  work_disk_mib: number;
  driver: string;
  state: string;
  guest_ip: string;
  api_sock_path: string;
  vsock_path: string;
  vsock_cid: number;
  log_path: string;
  metrics_path: string;
  dns_name: string;
  vm_dir: string;
  system_overlay: string;
  work_disk_path: string;
  last_error: string;
  ssh_host: string;
  ssh_port: number;
  net: string;
  storage: string;
  expires_at: string;
  ttl_action: string;
  idle_timeout_ms: number;
  idle_action: string;
  last_active_at: string;
  ports: string;
  egress: string;
  created_at: string;
  updated_at: string;
}

/** The lifetime columns of a VM that has a deadline of either kind. */
export interface DeadlineRow {
  id: string;
  name: string;
  state: VMState;
  lifetime: VMLifetime;
}

interface ImageRow {
  name: string;
  dir: string;
  kernel_path: string;
  initrd_path: string;
  rootfs_path: string;
  kernel_version: string;
  size_bytes: number;
  source: string;
  created_at: string;
}

function rowToVM(r: VMRow): VMRecord {
  return {
    id: r.id,
    name: r.name,
    spec: {
      image: r.image,
      cpus: r.cpus,
      memoryMiB: r.memory_mib,
      diskMiB: r.disk_mib,
      workDiskMiB: r.work_disk_mib,
      driver: r.driver,
      net: r.net,
      storage: r.storage,
      ...(r.ports && r.ports !== "[]" ? { ports: JSON.parse(r.ports) as PublishedPort[] } : {}),
      egress: r.egress,
    },
    runtime: {
      state: r.state as VMState,
      guestIP: r.guest_ip,
      apiSockPath: r.api_sock_path,
      vsockPath: r.vsock_path,
      vsockCID: r.vsock_cid,
      logPath: r.log_path,
      metricsPath: r.metrics_path,
      dnsName: r.dns_name,
      vmDir: r.vm_dir,
      systemOverlay: r.system_overlay,
      workDiskPath: r.work_disk_path,
      lastError: r.last_error,
      sshHost: r.ssh_host,
      sshPort: r.ssh_port,
    },
    lifetime: rowToLifetime(r),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function rowToLifetime(r: Pick<VMRow, "expires_at" | "ttl_action" | "idle_timeout_ms" | "idle_action" | "last_active_at">): VMLifetime {
  const idleDeadline = r.idle_timeout_ms > 0 && r.last_active_at ? new Date(Date.parse(r.last_active_at) + r.idle_timeout_ms).toISOString() : "";
  return { expiresAt: r.expires_at, ttlAction: r.ttl_action as TTLAction, idleTimeoutMs: r.idle_timeout_ms, idleAction: r.idle_action as TTLAction, lastActiveAt: r.last_active_at, idleDeadline };
}

function vmParams(vm: VMRecord): Record<string, string | number> {
  return {
    $id: vm.id,
    $name: vm.name,
    $image: vm.spec.image,
    $cpus: vm.spec.cpus,
    $memory_mib: vm.spec.memoryMiB,
    $disk_mib: vm.spec.diskMiB,
    $work_disk_mib: vm.spec.workDiskMiB,
    $driver: vm.spec.driver,
    $state: vm.runtime.state,
    $guest_ip: vm.runtime.guestIP,
    $api_sock_path: vm.runtime.apiSockPath,
    $vsock_path: vm.runtime.vsockPath,
    $vsock_cid: vm.runtime.vsockCID,
    $log_path: vm.runtime.logPath,
    $metrics_path: vm.runtime.metricsPath,
    $dns_name: vm.runtime.dnsName,
    $vm_dir: vm.runtime.vmDir,
    $system_overlay: vm.runtime.systemOverlay,
    $work_disk_path: vm.runtime.workDiskPath,
    $last_error: vm.runtime.lastError,
    $ssh_host: vm.runtime.sshHost,
    $ssh_port: vm.runtime.sshPort,
    $net: vm.spec.net ?? "user",
    $storage: vm.spec.storage,
    $expires_at: vm.lifetime?.expiresAt ?? "",
    $ttl_action: vm.lifetime?.ttlAction ?? "delete",
    $idle_timeout_ms: vm.lifetime?.idleTimeoutMs ?? 0,
    $idle_action: vm.lifetime?.idleAction ?? "stop",
    $last_active_at: vm.lifetime?.lastActiveAt ?? "",
    $ports: JSON.stringify(vm.spec.ports ?? []),
    $egress: vm.spec.egress ?? "none",
    $created_at: vm.createdAt,
    $updated_at: vm.updatedAt,
  };
}

const VM_COLUMNS = [
  "id", "name", "image", "cpus", "memory_mib", "disk_mib", "work_disk_mib", "driver", "state", "guest_ip",
  "api_sock_path", "vsock_path", "vsock_cid", "log_path", "metrics_path", "dns_name", "vm_dir",
  "system_overlay", "work_disk_path", "last_error", "ssh_host", "ssh_port", "net", "storage", "ports", "egress", "created_at", "updated_at",
  "expires_at", "ttl_action", "idle_timeout_ms", "idle_action", "last_active_at",
];

/**
 * Written at insert only: afterwards each changes through its own UPDATE, so an
 * operation saving the record it read earlier never undoes a `vm ttl` or an activity mark made meanwhile.
 */
const LIFETIME_COLUMNS = new Set(["expires_at", "ttl_action", "idle_timeout_ms", "idle_action", "last_active_at"]);

const UPSERT_VM = `INSERT INTO vms (${VM_COLUMNS.join(", ")}) VALUES (${VM_COLUMNS.map((c) => "$" + c).join(", ")})
  ON CONFLICT(id) DO UPDATE SET ${VM_COLUMNS.filter((c) => c !== "id" && c !== "created_at" && !LIFETIME_COLUMNS.has(c)).map((c) => `${c} = excluded.${c}`).join(", ")}`;

/** The durable store: one SQLite file in WAL mode. */
export class Store {
  private readonly db: Database;
  /** Guest session records (the `sessions` table). */
  readonly sessions: SessionRepo;
  /** Per-VM values from named pools (guest IPs…). */
  readonly leases: LeaseStore;
  /** Snapshot records (the `snapshots` table). */
  readonly snapshots: SnapshotRepo;
  /** The E2B front door's keys, sandboxes and settings. */
  readonly e2b: E2BRepo;

  constructor(path: string, opts: { busyTimeoutMs?: number } = {}) {
    try {
      this.db = new Database(path, { create: true, strict: true });
      this.db.run(`PRAGMA busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
      this.db.run("PRAGMA journal_mode = WAL");
      this.db.run("PRAGMA foreign_keys = ON");
      this.db.run("PRAGMA synchronous = NORMAL");
      migrate(this.db);
      this.sessions = createSessionRepo(this.db);
      this.leases = createLeaseStore(this.db);
      this.snapshots = createSnapshotRepo(this.db);
      this.e2b = createE2BRepo(this.db);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (/locked|busy/i.test(msg)) {
        throw new BangerError("E_DAEMON", `database is locked by another process: ${path}`, { cause: e });
      }
      throw new BangerError("E_DAEMON", `cannot open database ${path}: ${msg}`, { cause: e });
    }
  }

  close(): void {
    this.db.close(false);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // --- vms ---

  upsertVM(vm: VMRecord): void {
    try {
      this.db.query(UPSERT_VM).run(vmParams(vm) as never);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.includes("UNIQUE") && msg.includes("vms.name")) {
        throw new BangerError("E_NAME_TAKEN", `vm name already taken: ${vm.name}`, { cause: e });
      }
      if (msg.includes("UNIQUE") && msg.includes("ssh_port")) {
        throw new BangerError("E_CONFLICT", `ssh endpoint ${vm.runtime.sshHost}:${vm.runtime.sshPort} already belongs to another vm`, { cause: e });
      }
      throw e;
    }
  }

  getVM(idOrName: string): VMRecord | null {
    // an id before a name, as docker does (a store from before names were kept apart from ids may hold both)
    const r = this.db.query<VMRow, [string, string, string]>(`SELECT * FROM vms WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1`).get(idOrName, idOrName, idOrName);
    return r ? rowToVM(r) : null;
  }

  getVMByName(name: string): VMRecord | null {
    const r = this.db.query<VMRow, [string]>(`SELECT * FROM vms WHERE name = ?`).get(name);
    return r ? rowToVM(r) : null;
  }

  listVMs(): VMRecord[] {
    return this.db.query<VMRow, []>(`SELECT * FROM vms ORDER BY created_at, name`).all().map(rowToVM);
  }

  deleteVM(id: string): void {
    this.db.query(`DELETE FROM vms WHERE id = ?`).run(id);
  }

  // --- lifetimes ---

  /** Set (or with expiresAt "" clear) a VM's TTL; false if there is no such VM. */
  setExpiry(id: string, expiresAt: string, action: TTLAction): boolean {
    return this.db.query(`UPDATE vms SET expires_at = ?, ttl_action = ? WHERE id = ?`).run(expiresAt, action, id).changes > 0;
  }

  /** Set (0: clear) a VM's idle timeout and what it does, counting idleness from `from`. */
  setIdleTimeout(id: string, ms: number, action: TTLAction, from: string): boolean {
    return this.db.query(`UPDATE vms SET idle_timeout_ms = ?, idle_action = ?, last_active_at = ? WHERE id = ?`).run(ms, action, from, id).changes > 0;
  }

  /** Record activity on a VM that has an idle timeout (others are left alone: no write for them). */
  touchVM(id: string, at: string): boolean {
    return this.db.query(`UPDATE vms SET last_active_at = ? WHERE id = ? AND idle_timeout_ms > 0`).run(at, id).changes > 0;
  }

  /** Every VM with a TTL or an idle timeout. */
  listDeadlines(): DeadlineRow[] {
    return this.db
      .query<Pick<VMRow, "id" | "name" | "state" | "expires_at" | "ttl_action" | "idle_timeout_ms" | "idle_action" | "last_active_at">, []>(
        `SELECT id, name, state, expires_at, ttl_action, idle_timeout_ms, idle_action, last_active_at FROM vms WHERE expires_at != '' OR idle_timeout_ms > 0`,
      )
      .all()
      .map((r) => ({ id: r.id, name: r.name, state: r.state as VMState, lifetime: rowToLifetime(r) }));
  }

  // --- images ---

  upsertImage(img: ImageRecord): void {
    this.db
      .query(
        `INSERT INTO images (name, dir, kernel_path, initrd_path, rootfs_path, kernel_version, size_bytes, source, created_at)
         VALUES ($name, $dir, $kernel_path, $initrd_path, $rootfs_path, $kernel_version, $size_bytes, $source, $created_at)
         ON CONFLICT(name) DO UPDATE SET dir = excluded.dir, kernel_path = excluded.kernel_path, initrd_path = excluded.initrd_path,
           rootfs_path = excluded.rootfs_path, kernel_version = excluded.kernel_version, size_bytes = excluded.size_bytes,
           source = excluded.source, created_at = excluded.created_at`,
      )
      .run({
        $name: img.name,
        $dir: img.dir,
        $kernel_path: img.kernelPath,
        $initrd_path: img.initrdPath,
        $rootfs_path: img.rootfsPath,
        $kernel_version: img.kernelVersion,
        $size_bytes: img.sizeBytes,
        $source: img.source,
        $created_at: img.createdAt,
      } as never);
  }

  getImage(name: string): ImageRecord | null {
    const r = this.db.query<ImageRow, [string]>(`SELECT * FROM images WHERE name = ?`).get(name);
    return r ? rowToImage(r) : null;
  }

  listImages(): ImageRecord[] {
    return this.db.query<ImageRow, []>(`SELECT * FROM images ORDER BY name`).all().map(rowToImage);
  }

  deleteImage(name: string): void {
    this.db.query(`DELETE FROM images WHERE name = ?`).run(name);
  }
}

function rowToImage(r: ImageRow): ImageRecord {
  return {
    name: r.name,
    dir: r.dir,
    kernelPath: r.kernel_path,
    initrdPath: r.initrd_path,
    rootfsPath: r.rootfs_path,
    kernelVersion: r.kernel_version,
    sizeBytes: r.size_bytes,
    source: r.source as ImageRecord["source"],
    createdAt: r.created_at,
  };
}
