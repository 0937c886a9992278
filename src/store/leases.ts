import type { Database } from "bun:sqlite";
import { BangerError } from "../core/errors.ts";

/** One value of a named pool held by one VM. */
export interface Lease {
  pool: string;
  value: string;
  vmId: string;
}

/**
 * Values (guest IPs, …) handed out from named pools, one per VM per pool.
 * The `leases` table's primary key (pool, value) is the arbiter: two daemons
 * or two creates racing for the same address cannot both insert it.
 */
export interface LeaseStore {
  /**
   * The VM's value in `pool`, claiming the first free candidate if it has
   * none yet. Throws E_CONFLICT when every candidate is taken.
   */
  lease(pool: string, vmId: string, candidates: Iterable<string>): string;
  leaseOf(pool: string, vmId: string): string | null;
  /** Give the VM's value back (no-op if it holds none). */
  release(pool: string, vmId: string): void;
  list(pool: string): Lease[];
}

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
