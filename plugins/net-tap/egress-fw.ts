// `--egress none` on a tap: nftables, on the host. A guest in the `deny4`
// set reaches nothing — not through the NAT (forward), not the host itself
// (input) — except the answers to connections made to it (the daemon's SSH);
// its tap is `guarded`, so a frame whose IPv4 source is not the guest's own
// address (a guest that changes its IP) is dropped on the bridge, and so is
// any IPv6 from it. Tables are made once and kept; a VM is a set element.
// An allowlisted VM also has a nat chain (nat4: its TCP to web ports goes to
// the daemon's gate) and a bridge chain (g2g: what it may send straight to
// another guest on the bridge), both egress-list.ts's.
import { BangerError, ipv4ToInt } from "../../src/plugin-api.ts";
import type { Exec } from "../../src/plugin-api.ts";

export const TABLE = "banger_egress";

// Frames a guarded guest sends straight to another guest (the bridge
// forwards them; the host's inet chains never see them). The bridge has no
// conntrack here (no nf_conntrack_bridge), so it is stateless: no new TCP
// connection (a bare SYN), no UDP or other IPv4 — but TCP segments and ICMP
// errors of connections another guest opened to this one still go back.
const ISOLATE = `  chain isolate {
    ether type ip ip protocol tcp tcp flags & (syn | ack) == syn counter drop
    ether type ip ip protocol tcp accept
    ether type ip icmp type { echo-reply, destination-unreachable, time-exceeded } accept
    ether type ip counter drop
  }
`;

// What a cut-off guest tried (new connections only: answers to the daemon's SSH are not attempts),
// one element per source . destination . protocol . port with a counter, polled into its egress log (drop-log.ts)
const DENY_LOG_SET = "set dl4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic,timeout; timeout 1h; size 65536; counter; }";
const DENY_LOG_RULE = "ip saddr @deny4 ct state new meta l4proto { tcp, udp } add @dl4 { ip saddr . ip daddr . meta l4proto . th dport }";

/** The ruleset, made once (`nft -f`: atomically, all or nothing). */
export const EGRESS_TABLES = `table inet ${TABLE} {
  set deny4 { type ipv4_addr; }
  ${DENY_LOG_SET}
  map fwd4 { type ipv4_addr : verdict; }
  map in4 { type ipv4_addr : verdict; }
  map nat4 { type ipv4_addr : verdict; }
  chain prenat { type nat hook prerouting priority dstnat; policy accept;
    ip saddr vmap @nat4
  }
  chain forward { type filter hook forward priority -10; policy accept;
    ${DENY_LOG_RULE}
    ip saddr @deny4 ct state established,related accept
    ip saddr @deny4 drop
    ip saddr vmap @fwd4
  }
  chain input { type filter hook input priority -10; policy accept;
    ${DENY_LOG_RULE}
    ip saddr @deny4 ct state established,related accept
    ip saddr @deny4 drop
    ip saddr vmap @in4
  }
}
table bridge ${TABLE} {
  set guarded { type ifname; }
  set own { type ifname . ipv4_addr; }
  map g2g { type ifname : verdict; }
  chain pre { type filter hook prerouting priority -200; policy accept;
    iifname @guarded ether type ip6 drop
    iifname @guarded iifname . ip saddr != @own drop
  }
  chain between { type filter hook forward priority -200; policy accept;
    iifname vmap @g2g
  }
${ISOLATE}}
`;

export async function nft(exec: Exec, script: string, what: string): Promise<void> {
  const r = await exec.run("nft", ["-f", "-"], { input: script, check: false });
  if (r.exitCode !== 0) throw new BangerError("E_INTERNAL", `${what}: nft: ${r.stderr.trim() || "failed"} (needs nftables and root or CAP_NET_ADMIN; see \`banger doctor\`)`);
}

// a table made by a daemon from before allowlists has no vmaps: added, and jumped to after its deny rules
const _UPGRADE_LISTS = `add map inet ${TABLE} fwd4 { type ipv4_addr : verdict; }
add map inet ${TABLE} in4 { type ipv4_addr : verdict; }
add rule inet ${TABLE} forward ip saddr vmap @fwd4
add rule inet ${TABLE} input ip saddr vmap @in4
`;
// one from before the gate and the guest-to-guest filter: their maps and base chains
const _UPGRADE_GATE = `add map inet ${TABLE} nat4 { type ipv4_addr : verdict; }
add chain inet ${TABLE} prenat { type nat hook prerouting priority dstnat; policy accept; }
add rule inet ${TABLE} prenat ip saddr vmap @nat4
add map bridge ${TABLE} g2g { type ifname : verdict; }
add chain bridge ${TABLE} between { type filter hook forward priority -200; policy accept; }
add rule bridge ${TABLE} between iifname vmap @g2g
add table bridge ${TABLE} {
${ISOLATE}}
`;

// and one from before the deny log: its set, and the rule inserted first in both chains (it decides nothing)
const _UPGRADE_DENY_LOG = `add ${DENY_LOG_SET.replace("set dl4", `set inet ${TABLE} dl4`)}
insert rule inet ${TABLE} forward ${DENY_LOG_RULE}
insert rule inet ${TABLE} input ${DENY_LOG_RULE}
`;

/** The tables, unless they are there already (a table an older daemon made gets what it lacks). */
export async function ensureEgressTables(exec: Exec): Promise<void> {
  const shown = await exec.run("nft", ["list", "set", "inet", TABLE, "dl4"], { check: false });
  if (shown.exitCode === 0) return;
  const table = await exec.run("nft", ["list", "table", "inet", TABLE], { check: false });
  if (table.exitCode !== 0) return nft(exec, EGRESS_TABLES, "cannot make the egress firewall");
  const has = (what: string) => table.stdout.includes(what);
  const script = (has("map fwd4") ? "" : _UPGRADE_LISTS) + (has("map nat4") ? "" : _UPGRADE_GATE) + _UPGRADE_DENY_LOG;
  await nft(exec, script, "cannot upgrade the egress firewall");
}

/** nft identifiers for a VM's chains and sets, from its tap name (which is `bt-` and letters/digits). */
export function listKey(tap: string): string {
  const k = tap.replace(/^bt-/, "");
  if (!/^[A-Za-z0-9]{1,12}$/.test(k)) throw new BangerError("E_INTERNAL", `bad tap name ${JSON.stringify(tap)} for the egress firewall`);
  return k;
}

/** The VM's bridge chain b_KEY (what it may send to other guests) and its g2g element; the element's verdict never changes, so adding it again is a no-op. */
export function peerChain(tap: string): { chain: string; element: string } {
  const k = listKey(tap);
  return { chain: `bridge ${TABLE} b_${k}`, element: `bridge ${TABLE} g2g { "${tap}" : jump b_${k} }` };
}

// `add` then `delete` makes a delete that never fails on a missing element
function _elements(ip: string, tap: string): { deny: string; guard: string; own: string } {
  listKey(tap);
  if (ipv4ToInt(ip) === null) throw new BangerError("E_INTERNAL", `not an IPv4 address for the egress firewall: ${JSON.stringify(ip)}`);
  return { deny: `inet ${TABLE} deny4 { ${ip} }`, guard: `bridge ${TABLE} guarded { "${tap}" }`, own: `bridge ${TABLE} own { "${tap}" . ${ip} }` };
}

/** The script that cuts the guest at `ip` behind `tap` off: out of the NAT and the host, and from the other guests. */
export function denyScript(ip: string, tap: string): string {
  const e = _elements(ip, tap);
  const p = peerChain(tap);
  return [`add element ${e.own}`, `add element ${e.guard}`, `add element ${e.deny}`, `add chain ${p.chain}`, `flush chain ${p.chain}`, `add rule ${p.chain} jump isolate`, `add element ${p.element}`].join("\n") + "\n";
}

/** Cut the guest at `ip` behind `tap` off (egress none). */
export async function denyAll(exec: Exec, ip: string, tap: string): Promise<void> {
  await ensureEgressTables(exec);
  await nft(exec, denyScript(ip, tap), `cannot cut ${ip} off`);
}

/** The script that lets it out again: every element naming it, and its bridge chain, go. */
export function allowScript(ip: string, tap: string): string {
  const e = _elements(ip, tap);
  const p = peerChain(tap);
  // deny first: a guarded tap without its own address would drop everything
  const els = [e.deny, e.guard, e.own].map((x) => `add element ${x}\ndelete element ${x}\n`).join("");
  return els + `add chain ${p.chain}\nadd element ${p.element}\ndelete element bridge ${TABLE} g2g { "${tap}" }\ndelete chain ${p.chain}\n`;
}

/** Let it out again (egress all), or forget it (stop). A no-op where the tables were never made. */
export async function allowAll(exec: Exec, ip: string, tap: string): Promise<void> {
  const shown = await exec.run("nft", ["list", "table", "inet", TABLE], { check: false });
  if (shown.exitCode !== 0) return;
  await nft(exec, allowScript(ip, tap), `cannot let ${ip} out`);
}
