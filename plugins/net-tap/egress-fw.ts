// `--egress none` on a tap: nftables, on the host. A guest in the `deny4`
// set reaches nothing — not through the NAT (forward), not the host itself
// (input) — except the answers to connections made to it (the daemon's SSH);
// its tap is `guarded`, so a frame whose IPv4 source is not the guest's own
// address (a guest that changes its IP) is dropped on the bridge, and so is
// any IPv6 from it. Tables are made once and kept; a VM is a set element.
import { BangerError } from "../../src/plugin-api.ts";
import type { Exec } from "../../src/plugin-api.ts";

export const TABLE = "banger_egress";

/** The ruleset, made once (`nft -f`: atomically, all or nothing). */
export const EGRESS_TABLES = `table inet ${TABLE} {
  set deny4 { type ipv4_addr; }
  map fwd4 { type ipv4_addr : verdict; }
  map in4 { type ipv4_addr : verdict; }
  chain forward { type filter hook forward priority -10; policy accept;
    ip saddr @deny4 ct state established,related accept
    ip saddr @deny4 drop
    ip saddr vmap @fwd4
  }
  chain input { type filter hook input priority -10; policy accept;
    ip saddr @deny4 ct state established,related accept
    ip saddr @deny4 drop
    ip saddr vmap @in4
  }
}
table bridge ${TABLE} {
  set guarded { type ifname; }
  set own { type ifname . ipv4_addr; }
  chain pre { type filter hook prerouting priority -200; policy accept;
    iifname @guarded ether type ip6 drop
    iifname @guarded iifname . ip saddr != @own drop
  }
}
`;

export async function nft(exec: Exec, script: string, what: string): Promise<void> {
  const r = await exec.run("nft", ["-f", "-"], { input: script, check: false });
  if (r.exitCode !== 0) throw new BangerError("E_INTERNAL", `${what}: nft: ${r.stderr.trim() || "failed"} (needs nftables and root or CAP_NET_ADMIN; see \`banger doctor\`)`);
}

// a table made by a daemon from before allowlists has no vmaps: added, and jumped to after its deny rules
const _UPGRADE = `add map inet ${TABLE} fwd4 { type ipv4_addr : verdict; }
add map inet ${TABLE} in4 { type ipv4_addr : verdict; }
add rule inet ${TABLE} forward ip saddr vmap @fwd4
add rule inet ${TABLE} input ip saddr vmap @in4
`;

/** The tables, unless they are there already. */
export async function ensureEgressTables(exec: Exec): Promise<void> {
  const shown = await exec.run("nft", ["list", "map", "inet", TABLE, "fwd4"], { check: false });
  if (shown.exitCode === 0) return;
  const table = await exec.run("nft", ["list", "table", "inet", TABLE], { check: false });
  await nft(exec, table.exitCode === 0 ? _UPGRADE : EGRESS_TABLES, "cannot make the egress firewall");
}

// `add` then `delete` makes a delete that never fails on a missing element
function _elements(ip: string, tap: string): { deny: string; guard: string; own: string } {
  return { deny: `inet ${TABLE} deny4 { ${ip} }`, guard: `bridge ${TABLE} guarded { "${tap}" }`, own: `bridge ${TABLE} own { "${tap}" . ${ip} }` };
}

/** Cut the guest at `ip` behind `tap` off (egress none). */
export async function denyAll(exec: Exec, ip: string, tap: string): Promise<void> {
  await ensureEgressTables(exec);
  const e = _elements(ip, tap);
  await nft(exec, `add element ${e.own}\nadd element ${e.guard}\nadd element ${e.deny}\n`, `cannot cut ${ip} off`);
}

/** Let it out again (egress all), or forget it (stop). A no-op where the tables were never made. */
export async function allowAll(exec: Exec, ip: string, tap: string): Promise<void> {
  const shown = await exec.run("nft", ["list", "table", "inet", TABLE], { check: false });
  if (shown.exitCode !== 0) return;
  const e = _elements(ip, tap);
  // deny first: a guarded tap without its own address would drop everything
  await nft(exec, [e.deny, e.guard, e.own].map((x) => `add element ${x}\ndelete element ${x}\n`).join(""), `cannot let ${ip} out`);
}
