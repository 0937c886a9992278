// Firewall drops into the VM's egress log. nft cannot hand the daemon a
// packet without a netlink NFLOG socket (Bun has none), so every listed VM's
// drop rules add the destination to a dynamic set with a counter each
// (dl_*, egress-list.ts), and a cut-off VM's new connections go into the
// shared set dl4 keyed by source too (egress-fw.ts); this polls those sets
// (one `nft -j list table` for all of them): a
// new element, or one whose counter grew, is one log line. Time is the
// poll's (POLL_MS); one line per destination and port per poll, however many
// packets.
import type { Clock, Exec } from "../../src/plugin-api.ts";
import { listKey } from "./egress-fw.ts";
import { TABLE } from "./egress-fw.ts";

export const POLL_MS = 1000;

export interface Drop {
  /** The guest's address (the shared set dl4 only). */
  from?: string;
  dest: string;
  proto: string;
  port: number;
  packets: number;
}

/** The elements of every set in `nft -j list set|table` output, by set name (anything unreadable is skipped). */
export function parseDropSets(json: string): Map<string, Drop[]> {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    return new Map();
  }
  const items = (doc as { nftables?: unknown[] }).nftables ?? [];
  const sets = new Map<string, Drop[]>();
  for (const it of items) {
    const set = (it as { set?: { name?: unknown; elem?: unknown[] } }).set;
    if (!set || typeof set.name !== "string") continue;
    const out: Drop[] = [];
    sets.set(set.name, out);
    for (const e of set.elem ?? []) {
      const inner = (e as { elem?: { val?: { concat?: unknown[] }; counter?: { packets?: unknown } } }).elem;
      const c = inner?.val?.concat;
      if (!Array.isArray(c) || (c.length !== 3 && c.length !== 4)) continue;
      const [from, dest, proto, port] = c.length === 4 ? c : [undefined, ...c];
      const packets = inner?.counter?.packets;
      if ((from !== undefined && typeof from !== "string") || typeof dest !== "string" || typeof proto !== "string" || typeof port !== "number" || typeof packets !== "number") continue;
      out.push({ ...(from === undefined ? {} : { from }), dest, proto, port, packets });
    }
  }
  return sets;
}

/** The elements of all the sets in that output together. */
export function parseDropSet(json: string): Drop[] {
  return [...parseDropSets(json).values()].flat();
}

/** Why the firewall dropped a packet to `d`, for the log. */
export function dropReason(d: Drop, resolverIp: string, packets: number): string {
  const why = d.port === 53 ? "DNS to another server than the bridge resolver" : d.dest === resolverIp ? "the host itself" : "address not allowed";
  return `${why} (${d.proto}, ${packets} packet${packets === 1 ? "" : "s"}, dropped by the firewall)`;
}

interface _Watched {
  ip: string;
  /** Its own set dl_<tap key> (an allowlist); none: the shared dl4, by source. */
  tap?: string;
  seen: Map<string, number>;
  /** Settles once `seen` holds what was there before the watch began. */
  ready?: Promise<void>;
}

const _key = (d: Drop) => `${d.dest} ${d.proto} ${d.port}`;

export interface DropLogDeps {
  exec: Exec;
  clock: Clock;
  resolverIp: () => string;
  log: (ip: string, d: { dest: string; port: number; reason: string }) => Promise<void>;
  pollMs?: number;
}

/** Polls the drop sets of the VMs it watches, while there are any. */
export class DropLog {
  private readonly vms = new Map<string, _Watched>();
  private cancel: (() => void) | null = null;
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly d: DropLogDeps) {}

  /** Watch a VM's drop set (again: every apply flushes it, so counts start over; drops since the last poll are not logged). */
  watch(vmId: string, ip: string, tap: string): void {
    listKey(tap);
    this.vms.set(vmId, { ip, tap, seen: new Map() });
    this.arm();
  }

  /**
   * Watch a cut-off VM's attempts in the shared set; what is there already (an
   * earlier daemon's, an earlier VM at that address) is not logged. That first
   * look runs in the background (the policy change does not wait for it); the
   * first poll waits for it.
   */
  watchDenied(vmId: string, ip: string): void {
    const seen = new Map<string, number>();
    const ready = this.shared()
      .then((all) => {
        for (const d of all) if (d.from === ip) seen.set(_key(d), d.packets);
      })
      .catch(() => {});
    this.vms.set(vmId, { ip, seen, ready });
    this.arm();
  }

  /** The background look of every VM watched so far is done (tests). */
  async settled(): Promise<void> {
    await Promise.all([...this.vms.values()].map((w) => w.ready));
  }

  unwatch(vmId: string): void {
    this.vms.delete(vmId);
    if (this.vms.size === 0) {
      this.cancel?.();
      this.cancel = null;
    }
  }

  private arm(): void {
    if (this.cancel || this.vms.size === 0) return;
    this.cancel = this.d.clock.timer(this.d.pollMs ?? POLL_MS, () => {
      this.cancel = null;
      this.running = this.pollAll().finally(() => this.arm());
    });
  }

  /** One look at every watched VM's set (the timer's; tests call it). */
  async pollAll(): Promise<void> {
    await this.running.catch(() => {});
    const watched = [...this.vms.values()];
    if (watched.length === 0) return;
    // a VM's first look must be older than this poll's, or its drops would count twice
    await Promise.all(watched.map((w) => w.ready));
    // one nft call a poll, however many VMs: the table holds every VM's set
    const sets = await this.sets().catch(() => new Map<string, Drop[]>());
    for (const w of watched) await this.poll(w, sets).catch(() => {});
  }

  private async sets(): Promise<Map<string, Drop[]>> {
    const r = await this.d.exec.run("nft", ["-j", "list", "table", "inet", TABLE], { check: false });
    return r.exitCode === 0 ? parseDropSets(r.stdout) : new Map();
  }

  private async shared(): Promise<Drop[]> {
    return (await this.sets()).get("dl4") ?? [];
  }

  private async poll(w: _Watched, sets: Map<string, Drop[]>): Promise<void> {
    const drops = w.tap ? (sets.get(`dl_${listKey(w.tap)}`) ?? []) : (sets.get("dl4") ?? []).filter((d) => d.from === w.ip);
    for (const drop of drops) {
      const key = _key(drop);
      const before = w.seen.get(key) ?? 0;
      // fewer than before: the element timed out and came back
      const fresh = drop.packets >= before ? drop.packets - before : drop.packets;
      w.seen.set(key, drop.packets);
      if (fresh > 0) await this.d.log(w.ip, { dest: drop.dest, port: drop.port, reason: dropReason(drop, this.d.resolverIp(), fresh) });
    }
  }
}
