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
