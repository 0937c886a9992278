import type { Database } from "bun:sqlite";
import { BangerError } from "../shared/errors.ts";
import type { Lease, LeaseStore } from "../shared/leases.ts";

export type { Lease, LeaseStore };

export function createLeaseStore(db: Database, now: () => Date = () => new Date()): LeaseStore {
  const leaseOf = (pool: string, vmId: string): string | null =>
    db.query<{ value: string }, [string, string]>(`SELECT value FROM leases WHERE pool = ? AND vm_id = ?`).get(pool, vmId)?.value ?? null;

  const claim = db.transaction((pool: string, vmId: string, candidates: Iterable<string>): string => {
    const mine = leaseOf(pool, vmId);
    if (mine !== null) return mine;
    const taken = new Set(db.query<{ value: string }, [string]>(`SELECT value FROM leases WHERE pool = ?`).all(pool).map((r) => r.value));
    for (const c of candidates) {
      if (taken.has(c)) continue;
      db.query(`INSERT INTO leases (pool, value, vm_id, created_at) VALUES (?, ?, ?, ?)`).run(pool, c, vmId, now().toISOString());
      return c;
    }
    throw new BangerError("E_CONFLICT", `no free value left in pool ${pool} (${taken.size} leased); delete a VM or use a larger pool`);
  });

  return {
    lease(pool, vmId, candidates) {
      // IMMEDIATE takes the write lock before reading what is taken, so a second writer waits instead of picking the same value
      return claim.immediate(pool, vmId, candidates);
    },
    leaseOf,
    release(pool, vmId) {
      db.query(`DELETE FROM leases WHERE pool = ? AND vm_id = ?`).run(pool, vmId);
    },
    list(pool) {
      return db
        .query<{ pool: string; value: string; vm_id: string }, [string]>(`SELECT pool, value, vm_id FROM leases WHERE pool = ? ORDER BY created_at, value`)
        .all(pool)
        .map((r) => ({ pool: r.pool, value: r.value, vmId: r.vm_id }));
    },
  };
}
