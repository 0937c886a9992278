// An egress allowlist on a tap: per-VM nftables, default drop. The guest's
// IP picks its chains through the fwd4/in4 verdict maps (egress-fw.ts), so
// the sets below are that VM's alone and a live change flushes only them.
// Listed IPs/CIDRs are rules; addresses of allowed names go into the
// timeout sets n_* (any port) and np_* (address . port) when the daemon's
// resolver on the bridge answers the guest (tap-resolver.ts). TCP to the web
// ports (and the ports named rules give) is redirected (r_*) to the daemon's
// gate on the bridge, which checks SNI / Host against the address the
// connection was going to. DNS to any other server, the host (but for the
// resolver and the gate), and everything else: a drop, counted, and put in
// the dynamic set dl_* (address . protocol . port, a counter each) that the
// daemon polls into the VM's egress log. Other guests on the bridge: only
// the listed addresses (b_*, in the bridge table).
import { BangerError, ipv4ToInt } from "../../src/plugin-api.ts";
import type { EgressRule, Exec } from "../../src/plugin-api.ts";
import { ensureEgressTables, listKey, peerChain, TABLE, nft } from "./egress-fw.ts";

export { listKey };

/** Where the daemon's gate listens on the bridge address (the nat chains redirect to it). */
export const DEFAULT_GATE_PORT = 15301;
/** TCP ports always redirected to the gate: the ones TLS and HTTP go over. */
export const GATED_PORTS = [80, 443];
/** How long a dropped destination stays in a VM's drop set (s), and how many it holds. */
const DROP_SET = "timeout 1h; size 4096;";

function _ip(ip: string): string {
  if (ipv4ToInt(ip) === null) throw new BangerError("E_INTERNAL", `not an IPv4 address for the egress firewall: ${JSON.stringify(ip)}`);
  return ip;
}

function _port(p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new BangerError("E_INTERNAL", `not a port for the egress firewall: ${JSON.stringify(p)}`);
  return p;
}

const L4 = "meta l4proto { tcp, udp }";

/** The rules a listed IP/CIDR becomes (domain rules become set elements later, from DNS answers). */
function _cidrRules(rules: EgressRule[]): { ported: string[]; any: string[] } {
  const ported: string[] = [];
  const any: string[] = [];
  for (const r of rules) {
    if (r.kind !== "cidr") continue;
    const dst = `ip daddr ${_ip(r.addr)}/${Number(r.prefix) | 0}`;
    if (r.port === undefined) any.push(`${dst} accept`);
    else ported.push(`${dst} ${L4} th dport ${_port(r.port)} accept`);
  }
  return { ported, any };
}

/** The TCP ports redirected to the gate under `rules`: the web ports and every port a domain rule names. */
export function gatedPorts(rules: EgressRule[]): number[] {
  const named = rules.filter((r) => r.kind === "domain" && r.port !== undefined).map((r) => _port(r.port!));
  return [...new Set([...GATED_PORTS, ...named])].sort((a, b) => a - b);
}

/**
 * The one transaction that puts the guest at `ip` under `rules`: its chains
 * rebuilt, its name sets emptied (the resolver refills them for the new
 * policy on the next question), out of deny4, its tap guarded, its web TCP
 * redirected to the gate at resolverIp:gatePort.
 */
export function listScript(ip: string, tap: string, resolverIp: string, rules: EgressRule[], gatePort = DEFAULT_GATE_PORT): string {
  const k = listKey(tap);
  _ip(ip);
  _ip(resolverIp);
  _port(gatePort);
  const t = `inet ${TABLE}`;
  const { ported, any } = _cidrRules(rules);
  const drop = `counter name "d_${k}" drop`;
  // a separate rule: a full set would stop the rule it is in, and the drop must not depend on it
  const note = `${L4} add @dl_${k} { ip daddr . meta l4proto . th dport }`;
  const peer = peerChain(tap);
  const lines = [
    `add counter ${t} d_${k}`,
    `add set ${t} n_${k} { type ipv4_addr; flags timeout; }`,
    `add set ${t} np_${k} { type ipv4_addr . inet_service; flags timeout; }`,
    `add set ${t} dl_${k} { type ipv4_addr . inet_proto . inet_service; flags dynamic,timeout; ${DROP_SET} counter; }`,
    `add chain ${t} f_${k}`,
    `add chain ${t} i_${k}`,
    `add chain ${t} r_${k}`,
    `add chain ${peer.chain}`,
    `flush chain ${t} f_${k}`,
    `flush chain ${t} i_${k}`,
    `flush chain ${t} r_${k}`,
    `flush chain ${peer.chain}`,
    `flush set ${t} n_${k}`,
    `flush set ${t} np_${k}`,
    // the poller starts counting again with every apply (a new daemon's too): no drop is logged twice
    `flush set ${t} dl_${k}`,
    // nat: its web TCP (and named rules' ports) to the gate, wherever it was going
    `add rule ${t} r_${k} tcp dport { ${gatedPorts(rules).join(", ")} } redirect to :${gatePort}`,
    // forward: through the NAT to the world
    `add rule ${t} f_${k} ct state established,related accept`,
    // a port listed on purpose (a CIDR with :53 too) beats the DNS drop; a bare CIDR does not
    ...ported.map((r) => `add rule ${t} f_${k} ${r}`),
    `add rule ${t} f_${k} ${L4} th dport 53 add @dl_${k} { ip daddr . meta l4proto . th dport }`,
    `add rule ${t} f_${k} ${L4} th dport 53 ${drop}`,
    ...any.map((r) => `add rule ${t} f_${k} ${r}`),
    `add rule ${t} f_${k} ip daddr @n_${k} accept`,
    `add rule ${t} f_${k} ${L4} ip daddr . th dport @np_${k} accept`,
    `add rule ${t} f_${k} ${note}`,
    `add rule ${t} f_${k} ${drop}`,
    // input: the host itself, only its resolver, the gate and what is listed
    `add rule ${t} i_${k} ct state established,related accept`,
    `add rule ${t} i_${k} ip daddr ${resolverIp} ${L4} th dport 53 accept`,
    `add rule ${t} i_${k} ip daddr ${resolverIp} tcp dport ${gatePort} accept`,
    ...[...ported, ...any].map((r) => `add rule ${t} i_${k} ${r}`),
    `add rule ${t} i_${k} ${note}`,
    `add rule ${t} i_${k} ${drop}`,
    // other guests, straight over the bridge: the listed addresses, then the stateless isolation
    ...[...ported, ...any].map((r) => `add rule ${peer.chain} ether type ip ${r}`),
    `add rule ${peer.chain} jump isolate`,
    `add element ${peer.element}`,
    `add element ${t} nat4 { ${ip} : jump r_${k} }`,
    // add then delete: a delete that never fails on a missing element
    `add element ${t} deny4 { ${ip} }`,
    `delete element ${t} deny4 { ${ip} }`,
    `add element ${t} fwd4 { ${ip} : jump f_${k} }`,
    `add element ${t} in4 { ${ip} : jump i_${k} }`,
    `add element bridge ${TABLE} own { "${tap}" . ${ip} }`,
    `add element bridge ${TABLE} guarded { "${tap}" }`,
  ];
  return lines.join("\n") + "\n";
}

/** Put the guest under an allowlist (or a new one): one `nft -f`, all or nothing. */
export async function applyList(exec: Exec, ip: string, tap: string, resolverIp: string, rules: EgressRule[], gatePort = DEFAULT_GATE_PORT): Promise<void> {
  await ensureEgressTables(exec);
  await nft(exec, listScript(ip, tap, resolverIp, rules, gatePort), `cannot apply the egress allowlist of ${ip}`);
}

/** What an answer for a name lets through: to `addr` on any port, or only on the ports the name's rules give. */
export interface NamedEntry {
  addr: string;
  port?: number;
}

/** Add (or refresh the timeout of) addresses in the VM's name sets; re-added so an element already there gets the new timeout. */
export function fillScript(tap: string, entries: NamedEntry[], timeoutS: number): string {
  const k = listKey(tap);
  const s = Math.max(1, Math.ceil(timeoutS));
  const out: string[] = [];
  for (const e of entries) {
    const [set, key] = e.port === undefined ? [`n_${k}`, _ip(e.addr)] : [`np_${k}`, `${_ip(e.addr)} . ${_port(e.port)}`];
    const el = `inet ${TABLE} ${set} { ${key} }`;
    out.push(`add element ${el}`, `delete element ${el}`, `add element inet ${TABLE} ${set} { ${key} timeout ${s}s }`);
  }
  return out.length ? out.join("\n") + "\n" : "";
}

export async function fillNamed(exec: Exec, tap: string, entries: NamedEntry[], timeoutS: number): Promise<void> {
  const script = fillScript(tap, entries, timeoutS);
  if (script) await nft(exec, script, `cannot let ${tap} reach ${entries.map((e) => e.addr).join(" ")}`);
}

/** Take the guest out of its allowlist (policy all/none, stop): its map elements, chains, sets and counter go. */
export function unlistScript(ip: string, tap: string): string {
  const k = listKey(tap);
  _ip(ip);
  const t = `inet ${TABLE}`;
  return [
    `add element ${t} fwd4 { ${ip} : jump f_${k} }`,
    `delete element ${t} fwd4 { ${ip} }`,
    `add element ${t} in4 { ${ip} : jump i_${k} }`,
    `delete element ${t} in4 { ${ip} }`,
    `add element ${t} nat4 { ${ip} : jump r_${k} }`,
    `delete element ${t} nat4 { ${ip} }`,
    `delete chain ${t} f_${k}`,
    `delete chain ${t} i_${k}`,
    `delete chain ${t} r_${k}`,
    `delete set ${t} n_${k}`,
    `delete set ${t} np_${k}`,
    `delete set ${t} dl_${k}`,
    `delete counter ${t} d_${k}`,
  ].join("\n") + "\n";
}

/** A no-op when the VM has no allowlist chains (never had one, or already taken out). */
export async function unlist(exec: Exec, ip: string, tap: string): Promise<void> {
  const shown = await exec.run("nft", ["list", "chain", "inet", TABLE, `f_${listKey(tap)}`], { check: false });
  if (shown.exitCode !== 0) return;
  await nft(exec, unlistScript(ip, tap), `cannot take ${ip} out of its allowlist`);
}

/** Packets the VM's allowlist dropped so far (0 when it has none). */
export async function droppedPackets(exec: Exec, tap: string): Promise<number> {
  const r = await exec.run("nft", ["list", "counter", "inet", TABLE, `d_${listKey(tap)}`], { check: false });
  const m = /packets (\d+)/.exec(r.stdout);
  return r.exitCode === 0 && m ? Number(m[1]) : 0;
}
