// The guests' DNS server on a tap network: the daemon, on the bridge
// address, UDP and TCP 53. Who asks is the query's source address — the
// bridge guards every tap so a guest cannot send from another's address
// (egress-fw.ts) — and that VM's EgressGate answers: an allowed name gets
// its addresses, after they were put in that VM's nft sets (so the very
// next connection passes); any other name NXDOMAIN, logged in the VM's
// egress log. A stranger (no running tap VM at that address) is REFUSED.
// Next to it, on the same address, the gate: the guests' web TCP that the
// nat chains redirect there (egress-list.ts), judged by that VM's gate with
// the destination the socket or conntrack recorded (conntrack.ts).
import { buildAnswer, EgressGate, formErr, nameAllowed, parseQuery, RCODE_REFUSED } from "../../src/plugin-api.ts";
import type { Clock, DnsAnswerer, DnsServer, EgressDenial, EgressPolicy, Exec, FS, OriginalDst, ResolveA } from "../../src/plugin-api.ts";
import { DEFAULT_GATE_PORT, fillNamed, type NamedEntry } from "./egress-list.ts";

/** Serves redirected connections (serveTransparent; tests pass a stand-in). */
export type ServeGate = (addr: string, port: number, route: (from: string, fromPort: number, sockDst: OriginalDst | null) => Promise<{ gate: EgressGate; dst: OriginalDst } | null>) => Promise<{ close(): Promise<void> }>;

const RCODE_SERVFAIL = 2;

/** A resolved address stays in a VM's set at least this long after the last answer that named it (s). */
export const SET_TIMEOUT_FLOOR_S = 300;

export interface TapResolverDeps {
  exec: Exec;
  fs: FS;
  clock: Clock;
  resolve: ResolveA;
  serve: (addr: string, port: number, answer: DnsAnswerer) => Promise<DnsServer>;
  debug?: (msg: string) => void;
  /** The port it listens on (53; tests may move it). */
  port?: number;
  serveGate: ServeGate;
  /** Where guest `from`:`fromPort`'s connection to the gate port was going (conntrack). */
  originalDst: (from: string, fromPort: number, gatePort: number) => Promise<OriginalDst | null>;
  /** The gate's port on the same address (DEFAULT_GATE_PORT). */
  gatePort?: number;
}

/** What an answer for `name` lets the guest reach under `policy`: each address on any port, or only on the ports its rules name. */
export function namedEntries(policy: EgressPolicy, name: string, addrs: string[]): NamedEntry[] {
  if (policy.mode !== "list") return [];
  const matching = policy.rules.filter((r) => r.kind === "domain" && nameAllowed({ mode: "list", rules: [r] }, name));
  if (matching.length === 0) return [];
  if (matching.some((r) => r.port === undefined)) return addrs.map((addr) => ({ addr }));
  const ports = [...new Set(matching.map((r) => r.port!))];
  return addrs.flatMap((addr) => ports.map((port) => ({ addr, port })));
}

interface _Guest {
  gate: EgressGate;
  tap: string;
}

export class TapResolver {
  private readonly guests = new Map<string, _Guest>();
  private server: DnsServer | null = null;
  private gateServer: { close(): Promise<void> } | null = null;
  private listening: string | null = null;

  constructor(private readonly d: TapResolverDeps) {}

  get gatePort(): number {
    return this.d.gatePort ?? DEFAULT_GATE_PORT;
  }

  /** Serve on `addr` (the bridge's) unless already; a bridge address that changed moves it. */
  async listen(addr: string): Promise<void> {
    if (this.listening === addr) return;
    await this.close();
    this.server = await this.d.serve(addr, this.d.port ?? 53, (q, from) => this.answer(q, from));
    this.gateServer = await this.d.serveGate(addr, this.gatePort, (from, fromPort, sockDst) => this.route(from, fromPort, sockDst));
    this.listening = addr;
  }

  async close(): Promise<void> {
    await this.server?.close();
    await this.gateServer?.close();
    this.server = null;
    this.gateServer = null;
    this.listening = null;
  }

  /** Which gate judges a redirected connection, and where it was going (the socket's SO_ORIGINAL_DST, else conntrack's table): none for a stranger or a connection neither knows. */
  async route(from: string, fromPort: number, sockDst: OriginalDst | null = null): Promise<{ gate: EgressGate; dst: OriginalDst } | null> {
    const g = this.guests.get(from);
    if (!g) return null;
    const dst = sockDst ?? (await this.d.originalDst(from, fromPort, this.gatePort).catch(() => null));
    if (!dst) {
      this.d.debug?.(`tap gate: no conntrack entry for ${from}:${fromPort}`);
      return null;
    }
    return { gate: g.gate, dst };
  }

  /** Log a drop the firewall saw for the guest at `ip` (the drop poller); the name, when an answer gave the guest that address. */
  async firewallDrop(ip: string, d: Omit<EgressDenial, "time" | "via" | "name">): Promise<void> {
    const g = this.guests.get(ip);
    if (!g) return;
    await g.gate.deny({ ...d, name: g.gate.nameFor(d.dest), via: "firewall" });
  }

  /** The guest at `ip` behind `tap` now lives under `policy` (a new gate, or the old one's policy swapped: the next question obeys it). */
  set(vmName: string, ip: string, tap: string, policy: EgressPolicy, logPath: string): void {
    const known = this.guests.get(ip);
    if (known && known.tap === tap) return known.gate.setPolicy(policy);
    const gate: EgressGate = new EgressGate({
      vm: vmName,
      policy,
      resolve: this.d.resolve,
      logPath,
      fs: this.d.fs,
      clock: this.d.clock,
      debug: this.d.debug,
      onAnswer: (name, addrs, ttl): Promise<void> => fillNamed(this.d.exec, tap, namedEntries(gate.current, name, addrs), Math.max(ttl, SET_TIMEOUT_FLOOR_S)),
    });
    this.guests.set(ip, { gate, tap });
  }

  forget(ip: string): void {
    this.guests.delete(ip);
  }

  /** Denials the resolver logged for the guest at `ip` since its gate was made. */
  denied(ip: string): number {
    return this.guests.get(ip)?.gate.denied ?? 0;
  }

  async answer(query: Uint8Array, from: string): Promise<Uint8Array> {
    const g = this.guests.get(from);
    const q = parseQuery(query);
    if (!q) return formErr(query);
    if (!g) return buildAnswer(query, q, RCODE_REFUSED);
    // the upstream or nft failed: SERVFAIL now, rather than a guest waiting out its timeout
    return g.gate.answer(query).catch((e: Error) => {
      this.d.debug?.(`tap resolver: ${q.name} for ${from}: ${e.message}`);
      return buildAnswer(query, q, RCODE_SERVFAIL);
    });
  }
}
