import { afterEach, describe, expect, test } from "bun:test";
import { rawDb } from "../helpers/fakes.ts";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import { MIGRATIONS, migrate } from "../../src/store/migrations.ts";
import { Store } from "../../src/store/store.ts";
import { sampleImage, sampleVM, testStore, type TestStore } from "../helpers/fakes.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function fresh(opts: { busyTimeoutMs?: number } = {}): TestStore {
  const t = testStore(opts);
  cleanups.push(t.cleanup);
  return t;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "banger-store-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function pragma<T>(db: Database, name: string): T {
  const row = db.query(`PRAGMA ${name}`).get() as Record<string, T>;
  return Object.values(row)[0]!;
}

function insertSession(db: Database, id: string, vmId: string): void {
  db.run(
    `INSERT INTO sessions (id, vm_id, name, command, stdin_mode, status, guest_state_dir, stdout_log_path, stderr_log_path, created_at, updated_at)
     VALUES (?, ?, ?, 'bash', 'pipe', 'running', '/g', '/g/out', '/g/err', 'now', 'now')`,
    [id, vmId, id],
  );
}

describe("store setup", () => {
  test("WAL, busy_timeout and foreign_keys are on", () => {
    const { store } = fresh({ busyTimeoutMs: 1234 });
    expect(String(pragma<string>(rawDb(store), "journal_mode")).toLowerCase()).toBe("wal");
    expect(pragma<number>(rawDb(store), "busy_timeout")).toBe(1234);
    expect(pragma<number>(rawDb(store), "foreign_keys")).toBe(1);
  });

  test("default busy_timeout is set (non-zero)", () => {
    const { store } = fresh();
    expect(pragma<number>(rawDb(store), "busy_timeout")).toBeGreaterThan(0);
  });

  test("the migrations table records every version once", () => {
    const { store } = fresh();
    const rows = rawDb(store).query(`SELECT version, name FROM migrations ORDER BY version`).all() as { version: number; name: string }[];
    expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version).sort((a, b) => a - b));
    expect(rows.every((r) => r.name.length > 0)).toBe(true);
  });
});

describe("migrations upgrade path", () => {
  test("a DB at version 1 with a vm row upgrades in place; the row survives with defaults", () => {
    const dir = tempDir();
    const path = join(dir, "banger.db");
    const old = new Database(path, { create: true });
    expect(migrate(old, MIGRATIONS.filter((m) => m.version === 1))).toEqual([1]);
    old.run(
      `INSERT INTO vms (id, name, image, cpus, memory_mib, driver, state, vm_dir, created_at, updated_at)
       VALUES ('old1', 'legacy', 'default', 2, 512, 'qemu', 'stopped', '/vms/old1', '2025-01-01', '2025-01-01')`,
    );
    old.close();

    const store = new Store(path);
    cleanups.push(() => store.close());
    const versions = (rawDb(store).query(`SELECT version FROM migrations ORDER BY version`).all() as { version: number }[]).map((r) => r.version);
    expect(versions).toEqual(MIGRATIONS.map((m) => m.version));

    const vm = store.getVM("legacy")!;
    expect(vm).not.toBeNull();
    expect(vm.id).toBe("old1");
    expect(vm.spec.cpus).toBe(2);
    expect(vm.spec.memoryMiB).toBe(512);
    expect(vm.runtime.state).toBe("stopped");
    expect(vm.runtime.vmDir).toBe("/vms/old1");
    expect(vm.runtime.sshPort).toBe(0);
    expect(vm.runtime.sshHost).toBe("");
    expect(vm.runtime.lastError).toBe("");

    const tables = (rawDb(store).query(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((r) => r.name);
    expect(tables).toContain("sessions");
    // sessions reference the migrated vm
    insertSession(rawDb(store), "s1", "old1");
    expect((rawDb(store).query(`SELECT COUNT(*) AS n FROM sessions`).get() as { n: number }).n).toBe(1);
  });

  test("a version-4 database upgrades: each VM records the storage provider that made its disks (dm for a COW overlay, else copy)", () => {
    const path = join(tempDir(), "banger.db");
    const old = new Database(path, { create: true });
    migrate(old, MIGRATIONS.filter((m) => m.version <= 4));
    const row = (id: string, overlay: string) =>
      old.run(
        `INSERT INTO vms (id, name, image, cpus, memory_mib, driver, state, vm_dir, system_overlay, created_at, updated_at)
         VALUES (?, ?, 'default', 1, 256, 'qemu', 'stopped', ?, ?, 'then', 'then')`,
        [id, id, `/vms/${id}`, overlay],
      );
    row("snap", "/vms/snap/system.cow");
    row("copied", "/vms/copied/system.img");
    row("half", ""); // a create cut short before any disk: reconcile removes it, its cleanup reaches copy (which made nothing)
    old.close();
    const store = new Store(path);
    cleanups.push(() => store.close());
    expect(store.listVMs().map((v) => [v.id, v.spec.storage])).toEqual([["copied", "copy"], ["half", "copy"], ["snap", "dm"]]);
    const vm = sampleVM({ id: "new", name: "new", storage: "fake-storage" });
    store.upsertVM(vm);
    expect(store.getVM("new")!.spec.storage).toBe("fake-storage");
  });

  test("re-opening applies nothing twice", () => {
    const { store, path } = fresh();
    store.upsertVM(sampleVM({ id: "a", name: "a" }));
    store.close();
    const again = new Store(path);
    cleanups.push(() => again.close());
    expect(migrate(rawDb(again))).toEqual([]);
    const rows = rawDb(again).query(`SELECT version, COUNT(*) AS n FROM migrations GROUP BY version`).all() as { version: number; n: number }[];
    expect(rows.length).toBe(MIGRATIONS.length);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    expect(again.getVM("a")?.name).toBe("a");
  });

  test("migrate returns the versions it applied, in order", () => {
    const dir = tempDir();
    const db = new Database(join(dir, "x.db"), { create: true });
    cleanups.push(() => db.close());
    expect(migrate(db, MIGRATIONS.filter((m) => m.version <= 2))).toEqual([1, 2]);
    expect(migrate(db)).toEqual(MIGRATIONS.filter((m) => m.version > 2).map((m) => m.version));
    expect(migrate(db)).toEqual([]);
  });

  test("a migration merged after a higher one already ran (parallel branches) is still applied", () => {
    const dir = tempDir();
    const db = new Database(join(dir, "x.db"), { create: true });
    cleanups.push(() => db.close());
    // a database that took 7 from one branch before 6 existed
    expect(migrate(db, MIGRATIONS.filter((m) => m.version !== 6))).toEqual(MIGRATIONS.filter((m) => m.version !== 6).map((m) => m.version));
    expect(migrate(db)).toEqual([6]);
    const cols = (db.query(`PRAGMA table_info(vms)`).all() as { name: string }[]).map((c) => c.name);
    expect(cols).toContain("expires_at");
    expect(cols).toContain("ports");
    expect(migrate(db)).toEqual([]);
  });

  test("a failing migration rolls back and records nothing", () => {
    const dir = tempDir();
    const db = new Database(join(dir, "x.db"), { create: true });
    cleanups.push(() => db.close());
    migrate(db, MIGRATIONS.filter((m) => m.version === 1));
    const broken = {
      version: 2,
      name: "broken",
      up(d: Database) {
        d.run(`ALTER TABLE vms ADD COLUMN half_done TEXT`);
        d.run(`THIS IS NOT SQL`);
      },
    };
    expect(() => migrate(db, [broken])).toThrow();
    const cols = (db.query(`PRAGMA table_info(vms)`).all() as { name: string }[]).map((c) => c.name);
    expect(cols).not.toContain("half_done");
    expect((db.query(`SELECT MAX(version) AS v FROM migrations`).get() as { v: number }).v).toBe(1);
  });
});

describe("vms", () => {
  test("getVM by id or by name; listVMs; upsert updates", () => {
    const { store } = fresh();
    const vm = sampleVM({ id: "id-1", name: "alpha" });
    store.upsertVM(vm);
    expect(store.getVM("id-1")?.name).toBe("alpha");
    expect(store.getVM("alpha")?.id).toBe("id-1");
    expect(store.getVM("nope")).toBeNull();
    vm.runtime.state = "running";
    vm.runtime.lastError = "x";
    store.upsertVM(vm);
    expect(store.getVM("alpha")?.runtime.state).toBe("running");
    expect(store.getVM("alpha")?.runtime.lastError).toBe("x");
    expect(store.listVMs().map((v) => v.id)).toEqual(["id-1"]);
  });

  test("a record round-trips unchanged", () => {
    const { store } = fresh();
    const vm = sampleVM({ id: "rt", name: "roundtrip", sshPort: 2222 });
    vm.runtime.guestIP = "10.0.0.2";
    vm.runtime.sshHost = "127.0.0.1";
    vm.lifetime = { expiresAt: "2026-01-01T01:00:00.000Z", ttlAction: "stop", idleTimeoutMs: 60_000, idleAction: "delete", lastActiveAt: "2026-01-01T00:00:00.000Z", idleDeadline: "2026-01-01T00:01:00.000Z" };
    store.upsertVM(vm);
    expect(store.getVM("rt")).toEqual(vm);
  });

  test("a taken name is E_NAME_TAKEN", () => {
    const { store } = fresh();
    store.upsertVM(sampleVM({ id: "a", name: "same" }));
    let err: unknown;
    try {
      store.upsertVM(sampleVM({ id: "b", name: "same" }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BangerError);
    expect((err as BangerError).code).toBe("E_NAME_TAKEN");
    expect((err as Error).message).toContain("same");
  });

  test("a taken ssh port is E_CONFLICT; port 0 is never a conflict", () => {
    const { store } = fresh();
    store.upsertVM(sampleVM({ id: "a", name: "a", sshPort: 2201 }));
    store.upsertVM(sampleVM({ id: "z1", name: "z1", sshPort: 0 }));
    store.upsertVM(sampleVM({ id: "z2", name: "z2", sshPort: 0 }));
    let err: unknown;
    try {
      store.upsertVM(sampleVM({ id: "b", name: "b", sshPort: 2201 }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BangerError);
    expect((err as BangerError).code).toBe("E_CONFLICT");
    expect((err as Error).message).toContain("2201");
  });

  test("deleteVM cascades to its sessions", () => {
    const { store } = fresh();
    store.upsertVM(sampleVM({ id: "a", name: "a" }));
    store.upsertVM(sampleVM({ id: "b", name: "b" }));
    insertSession(rawDb(store), "s-a", "a");
    insertSession(rawDb(store), "s-b", "b");
    store.deleteVM("a");
    const left = (rawDb(store).query(`SELECT id FROM sessions`).all() as { id: string }[]).map((r) => r.id);
    expect(left).toEqual(["s-b"]);
  });

  test("a session for a missing vm is rejected (foreign keys enforced)", () => {
    const { store } = fresh();
    expect(() => insertSession(rawDb(store), "s", "ghost")).toThrow(/FOREIGN KEY/i);
  });

  test("transaction rolls back on throw", () => {
    const { store } = fresh();
    expect(() =>
      store.transaction(() => {
        store.upsertVM(sampleVM({ id: "t", name: "t" }));
        throw new Error("abort");
      }),
    ).toThrow("abort");
    expect(store.getVM("t")).toBeNull();
  });
});

describe("images", () => {
  test("upsert, get, list, delete", () => {
    const { store } = fresh();
    store.upsertImage(sampleImage("default"));
    store.upsertImage({ ...sampleImage("other"), kernelVersion: "6.2" });
    expect(store.getImage("default")).toEqual(sampleImage("default"));
    expect(store.listImages().map((i) => i.name)).toEqual(["default", "other"]);
    store.upsertImage({ ...sampleImage("default"), sizeBytes: 99 });
    expect(store.getImage("default")?.sizeBytes).toBe(99);
    store.deleteImage("other");
    expect(store.getImage("other")).toBeNull();
  });
});

describe("locking", () => {
  test("a write waits busy_timeout for another connection's write lock, then fails clearly", () => {
    const { store, path } = fresh({ busyTimeoutMs: 150 });
    const other = new Database(path);
    cleanups.push(() => other.close());
    other.run("BEGIN IMMEDIATE");
    try {
      const t0 = performance.now();
      let err: unknown;
      try {
        store.upsertVM(sampleVM({ id: "w", name: "w" }));
      } catch (e) {
        err = e;
      }
      const waited = performance.now() - t0;
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/database is locked|busy/i);
      expect(waited).toBeGreaterThanOrEqual(100);
      expect(waited).toBeLessThan(3000);
    } finally {
      other.run("ROLLBACK");
    }
    // once the lock is gone, the same write succeeds
    store.upsertVM(sampleVM({ id: "w", name: "w" }));
    expect(store.getVM("w")).not.toBeNull();
  });

  test("readers are not blocked by another connection's write lock (WAL); writes resume after commit", () => {
    const { store, path } = fresh({ busyTimeoutMs: 150 });
    store.upsertVM(sampleVM({ id: "r", name: "r" }));
    const other = new Database(path);
    cleanups.push(() => other.close());
    other.run("BEGIN IMMEDIATE");
    try {
      // WAL: readers are not blocked by a writer
      expect(store.getVM("r")?.id).toBe("r");
    } finally {
      other.run("COMMIT");
    }
    store.upsertVM(sampleVM({ id: "s", name: "s" }));
    expect(store.listVMs().length).toBe(2);
  });

  test("opening a store while another connection holds the write lock still works", () => {
    const { path } = fresh();
    const other = new Database(path);
    cleanups.push(() => other.close());
    other.run("BEGIN IMMEDIATE");
    try {
      const second = new Store(path, { busyTimeoutMs: 100 });
      expect(second.listVMs()).toEqual([]);
      second.close();
    } finally {
      other.run("ROLLBACK");
    }
  });
});
