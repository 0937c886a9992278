import { BangerError } from "../../src/plugin-api.ts";
import type { Exec } from "../../src/plugin-api.ts";
import type { Subnet } from "./subnet.ts";

const _NO_DEVICE = /Cannot find device|does not exist|No such device/i;
const _RIGHTS = "needs root or CAP_NET_ADMIN; see `banger doctor`";

function _fail(what: string, stderr: string): never {
  throw new BangerError("E_INTERNAL", `${what}: ${stderr.trim() || "failed"} (${_RIGHTS})`);
}

/**
 * The bridge with the gateway address, up. Idempotent, and tolerant of a
 * second daemon creating it at the same moment ("File exists").
 */
export async function ensureBridge(exec: Exec, bridge: string, subnet: Subnet): Promise<void> {
  const shown = await exec.run("ip", ["link", "show", "dev", bridge], { check: false });
  if (shown.exitCode !== 0) {
    const add = await exec.run("ip", ["link", "add", "name", bridge, "type", "bridge"], { check: false });
    if (add.exitCode !== 0 && !/File exists/.test(add.stderr)) _fail(`cannot create bridge ${bridge}`, add.stderr);
  }
  // replace, not add: already having the address is not an error
  const addr = await exec.run("ip", ["addr", "replace", `${subnet.gateway}/${subnet.prefix}`, "dev", bridge], { check: false });
  if (addr.exitCode !== 0) _fail(`cannot give ${bridge} ${subnet.gateway}/${subnet.prefix}`, addr.stderr);
  const up = await exec.run("ip", ["link", "set", "dev", bridge, "up"], { check: false });
  if (up.exitCode !== 0) _fail(`cannot bring ${bridge} up`, up.stderr);
}

/** The iptables rules egress needs, as [table, chain, ...match/target]. */
export function natRules(bridge: string, subnet: Subnet): { table: string; chain: string; spec: string[] }[] {
  return [
    { table: "nat", chain: "POSTROUTING", spec: ["-s", subnet.cidr, "!", "-o", bridge, "-j", "MASQUERADE"] },
    // hosts whose FORWARD policy is DROP (docker) would otherwise drop guest traffic
    { table: "filter", chain: "FORWARD", spec: ["-i", bridge, "-j", "ACCEPT"] },
    { table: "filter", chain: "FORWARD", spec: ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"] },
  ];
}

/** ip_forward on, and each NAT/forward rule present exactly once (-C before -A). */
export async function ensureNat(exec: Exec, bridge: string, subnet: Subnet): Promise<void> {
  const fwd = await exec.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"], { check: false });
  if (fwd.exitCode !== 0) _fail("cannot enable net.ipv4.ip_forward", fwd.stderr);
  for (const r of natRules(bridge, subnet)) {
    const has = await exec.run("iptables", ["-w", "-t", r.table, "-C", r.chain, ...r.spec], { check: false });
    if (has.exitCode === 0) continue;
    const add = await exec.run("iptables", ["-w", "-t", r.table, "-A", r.chain, ...r.spec], { check: false });
    if (add.exitCode !== 0) _fail(`cannot add iptables rule (-t ${r.table} ${r.chain} ${r.spec.join(" ")})`, add.stderr);
  }
}

/** Create the VM's tap and put it on the bridge. On a failure half way the tap may exist: the caller deferred deleteTap before calling. */
export async function addTap(exec: Exec, tap: string, bridge: string): Promise<void> {
  // a leftover from a crash before cleanup ran would make `tuntap add` fail
  await deleteTap(exec, tap);
  const add = await exec.run("ip", ["tuntap", "add", "dev", tap, "mode", "tap"], { check: false });
  if (add.exitCode !== 0) _fail(`cannot create tap ${tap}`, add.stderr);
  const attach = await exec.run("ip", ["link", "set", "dev", tap, "master", bridge, "up"], { check: false });
  if (attach.exitCode !== 0) _fail(`cannot attach ${tap} to ${bridge}`, attach.stderr);
}

/** Remove a tap; one that is already gone is not an error. */
export async function deleteTap(exec: Exec, tap: string): Promise<void> {
  const del = await exec.run("ip", ["link", "del", "dev", tap], { check: false });
  if (del.exitCode !== 0 && !_NO_DEVICE.test(del.stderr)) _fail(`cannot delete tap ${tap}`, del.stderr);
}

export async function linkExists(exec: Exec, name: string): Promise<boolean> {
  return (await exec.run("ip", ["link", "show", "dev", name], { check: false })).exitCode === 0;
}
