import type { Database } from "bun:sqlite";
import { BangerError } from "../shared/errors.ts";
import type { SnapshotRecord } from "../shared/model.ts";

/** Snapshot rows (migration 8): key columns for lookups and uniqueness, the record itself as JSON. */
export interface SnapshotRepo {
  /** Insert or update; a second `VM@SNAP` is E_NAME_TAKEN. */
  upsert(s: SnapshotRecord): void;
  get(id: string): SnapshotRecord | null;
  /** By `VM@SNAP`. */
  find(vmName: string, name: string): SnapshotRecord | null;
  /** All, or those made from one VM (by id), oldest first. */
  list(vmId?: string): SnapshotRecord[];
  delete(id: string): void;
}

export function createSnapshotRepo(db: Database): SnapshotRepo {
  const parse = (r: { data: string } | null): SnapshotRecord | null => (r ? (JSON.parse(r.data) as SnapshotRecord) : null);
  return {
    upsert(s) {
      try {
        db.query(
          `INSERT INTO snapshots (id, vm_id, vm_name, name, state, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data`,
        ).run(s.id, s.vmId, s.vmName, s.name, s.state, JSON.stringify(s), s.createdAt);
      } catch (e) {
        if (String(e).includes("UNIQUE")) throw new BangerError("E_NAME_TAKEN", `snapshot already exists: ${s.vmName}@${s.name}`, { cause: e });
        throw e;
      }
    },
    get: (id) => parse(db.query<{ data: string }, [string]>(`SELECT data FROM snapshots WHERE id = ?`).get(id)),
    find: (vmName, name) => parse(db.query<{ data: string }, [string, string]>(`SELECT data FROM snapshots WHERE vm_name = ? AND name = ?`).get(vmName, name)),
    list(vmId) {
      const rows = vmId === undefined
        ? db.query<{ data: string }, []>(`SELECT data FROM snapshots ORDER BY created_at, vm_name, name`).all()
        : db.query<{ data: string }, [string]>(`SELECT data FROM snapshots WHERE vm_id = ? ORDER BY created_at, name`).all(vmId);
      return rows.map((r) => parse(r)!);
    },
    delete(id) {
      db.query(`DELETE FROM snapshots WHERE id = ?`).run(id);
    },
  };
}
