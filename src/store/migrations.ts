import type { Database } from "bun:sqlite";

export interface Migration {
  version: number;
  name: string;
  up(db: Database): void;
}

/** Append only. Never edit a migration that has shipped; add a new one. */
export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "vms-images",
    up(db) {
      db.run(`CREATE TABLE vms (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        cpus INTEGER NOT NULL,
        memory_mib INTEGER NOT NULL,
        disk_mib INTEGER NOT NULL DEFAULT 0,
        work_disk_mib INTEGER NOT NULL DEFAULT 0,
        driver TEXT NOT NULL,
        state TEXT NOT NULL,
        guest_ip TEXT NOT NULL DEFAULT '',
        api_sock_path TEXT NOT NULL DEFAULT '',
        vsock_path TEXT NOT NULL DEFAULT '',
        vsock_cid INTEGER NOT NULL DEFAULT 0,
        log_path TEXT NOT NULL DEFAULT '',
        metrics_path TEXT NOT NULL DEFAULT '',
        dns_name TEXT NOT NULL DEFAULT '',
        vm_dir TEXT NOT NULL DEFAULT '',
        system_overlay TEXT NOT NULL DEFAULT '',
        work_disk_path TEXT NOT NULL DEFAULT '',
        last_error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      )`);
      db.run(`CREATE TABLE images (
        name TEXT PRIMARY KEY,
        dir TEXT NOT NULL,
        kernel_path TEXT NOT NULL,
        initrd_path TEXT NOT NULL DEFAULT '',
        rootfs_path TEXT NOT NULL,
        kernel_version TEXT NOT NULL DEFAULT '',
        size_bytes INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
      )`);
    },
  },
  {
    version: 2,
    name: "vm-ssh-endpoint",
    up(db) {
      db.run(`ALTER TABLE vms ADD COLUMN ssh_host TEXT NOT NULL DEFAULT ''`);
      db.run(`ALTER TABLE vms ADD COLUMN ssh_port INTEGER NOT NULL DEFAULT 0`);
      // A forwarded port belongs to exactly one VM; 0 means none allocated.
      db.run(`CREATE UNIQUE INDEX vms_ssh_port ON vms(ssh_port) WHERE ssh_port != 0`);
    },
  },
  {
    version: 3,
    name: "sessions",
    up(db) {
      db.run(`CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        backend TEXT NOT NULL DEFAULT 'ssh',
        command TEXT NOT NULL,
        args_json TEXT NOT NULL DEFAULT '[]',
        cwd TEXT NOT NULL DEFAULT '',
        stdin_mode TEXT NOT NULL,
        status TEXT NOT NULL,
        guest_state_dir TEXT NOT NULL,
        stdout_log_path TEXT NOT NULL,
        stderr_log_path TEXT NOT NULL,
        attachable INTEGER NOT NULL DEFAULT 0,
        reattachable INTEGER NOT NULL DEFAULT 0,
        launch_stage TEXT NOT NULL DEFAULT '',
        launch_message TEXT NOT NULL DEFAULT '',
        guest_pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        started_at TEXT NOT NULL DEFAULT '',
        ended_at TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (vm_id, name)
      )`);
    },
  },
  {
    version: 4,
    name: "vm-net-leases",
    up(db) {
      db.run(`ALTER TABLE vms ADD COLUMN net TEXT NOT NULL DEFAULT 'user'`);
      // Tap VMs all listen on <guest ip>:22, so an endpoint is unique as host+port, not as port alone.
      db.run(`DROP INDEX vms_ssh_port`);
      db.run(`CREATE UNIQUE INDEX vms_ssh_endpoint ON vms(ssh_host, ssh_port) WHERE ssh_port != 0`);
      // A value (e.g. a guest IP) from a named pool belongs to one VM, and a VM holds one value per pool;
      // the primary key is what keeps concurrent creates from sharing an address.
      db.run(`CREATE TABLE leases (
        pool TEXT NOT NULL,
        value TEXT NOT NULL,
        vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (pool, value),
        UNIQUE (pool, vm_id)
      )`);
    },
  },
  {
    version: 5,
    name: "vm-storage",
    up(db) {
      // the storage provider that made the VM's disks; only its handlers act on the VM from now on
      db.run(`ALTER TABLE vms ADD COLUMN storage TEXT NOT NULL DEFAULT ''`);
      // existing VMs: storage-dm's mark is its COW file as the system overlay; every other disk is a copy
      db.run(`UPDATE vms SET storage = CASE WHEN system_overlay LIKE '%/system.cow' THEN 'dm' ELSE 'copy' END`);
    },
  },
  {
    version: 6,
    name: "vm-lifetimes",
    up(db) {
      // absolute times, so a deadline holds across daemon restarts and fires late rather than never
      db.run(`ALTER TABLE vms ADD COLUMN expires_at TEXT NOT NULL DEFAULT ''`);
      db.run(`ALTER TABLE vms ADD COLUMN ttl_action TEXT NOT NULL DEFAULT 'delete'`);
      db.run(`ALTER TABLE vms ADD COLUMN idle_timeout_ms INTEGER NOT NULL DEFAULT 0`);
      db.run(`ALTER TABLE vms ADD COLUMN last_active_at TEXT NOT NULL DEFAULT ''`);
    },
  },
  {
    version: 7,
    name: "vm-ports",
    up(db) {
      // published ports as JSON (PublishedPort[]): always read and written whole with the VM row
      db.run(`ALTER TABLE vms ADD COLUMN ports TEXT NOT NULL DEFAULT '[]'`);
    },
  },
  {
    version: 8,
    name: "snapshots",
    up(db) {
      // not tied to the vms row: a snapshot outlives its VM; (vm_name, name) is how users name it (VM@SNAP)
      db.run(`CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        vm_id TEXT NOT NULL,
        vm_name TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (vm_name, name)
      )`);
    },
  },
  {
    version: 9,
    name: "vm-egress",
    up(db) {
      // what each VM had before policies existed: user networking reached nothing (slirp restrict=on), tap everything NAT reached
      db.run(`ALTER TABLE vms ADD COLUMN egress TEXT NOT NULL DEFAULT 'none'`);
      db.run(`UPDATE vms SET egress = CASE WHEN net = 'tap' THEN 'all' ELSE 'none' END`);
    },
  },
  {
    version: 10,
    name: "e2b",
    up(db) {
      // API keys: only a hash is kept; the key itself is shown once, at create
      db.run(`CREATE TABLE e2b_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
      )`);
      // a sandbox is a VM: its row goes with the VM (TTL, vm delete), whoever deletes it
      db.run(`CREATE TABLE e2b_sandboxes (
        id TEXT PRIMARY KEY,
        vm_id TEXT NOT NULL UNIQUE REFERENCES vms(id) ON DELETE CASCADE,
        template_id TEXT NOT NULL,
        data TEXT NOT NULL,
        started_at TEXT NOT NULL
      )`);
      db.run(`CREATE TABLE e2b_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    },
  },
  {
    version: 11,
    name: "vm-idle-action",
    up(db) {
      // what an idle timeout did before it had a choice: stop the VM
      db.run(`ALTER TABLE vms ADD COLUMN idle_action TEXT NOT NULL DEFAULT 'stop'`);
    },
  },
  {
    version: 12,
    name: "e2b-pending",
    up(db) {
      // the VM names an E2B create or fork is making, until each is a sandbox: a daemon killed between the two
      // leaves a VM no sandbox names, which the next daemon deletes (it holds a guest nobody can reach through E2B)
      db.run(`CREATE TABLE e2b_pending (id TEXT PRIMARY KEY, started_at TEXT NOT NULL)`);
    },
  },
];

/**
 * Apply every migration not recorded yet, in version order, each in its own transaction.
 * Not "every one above the highest": features land in parallel, so a database may have
 * 7 from one branch before 6 from another is merged; each migration touches its own columns.
 */
export function migrate(db: Database, migrations: Migration[] = MIGRATIONS): number[] {
  db.run(`CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const done = new Set(db.query<{ version: number }, []>(`SELECT version FROM migrations`).all().map((r) => r.version));
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(m.version)) continue;
    db.transaction(() => {
      m.up(db);
      db.run(`INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)`, [m.version, m.name, new Date().toISOString()]);
    })();
    applied.push(m.version);
  }
  return applied;
}
