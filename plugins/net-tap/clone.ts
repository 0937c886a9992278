// A clone of a running tap VM starts from its parent's memory: inside, its
// guest has the parent's MAC (virtio-net's MAC is migrated device state), IP
// and routes. Put on the bridge as it is, it would answer for the parent.
// So its tap starts off the bridge, reachable from the host only over IPv6
// link-local (fe80::…%tap: no IPv4 route, no rp_filter or ARP settings of
// the host's in the way, no relay process to keep or to reap after a
// crash); the guest plugin gives it its identity over that, runs
// readdress.sh (its own IPv4 address, then its own MAC), and only once the
// guest answers at the link-local address of its new MAC does the tap join
// the bridge. A daemon killed meanwhile leaves a tap like any other (named
// from the VM id), which reconcile and cleanup remove as they always do.
import { BangerError, renderScript } from "../../src/plugin-api.ts";
import type { Clock, Exec, SnapshotRecord, VMRecord } from "../../src/plugin-api.ts";
import { deleteTap } from "./host-net.ts";
import READDRESS_SH from "./scripts/readdress.sh" with { type: "text" };

const _RIGHTS = "needs root or CAP_NET_ADMIN; see `banger doctor`";

/** A start from another VM's saved memory: the guest runs on with that VM's network identity. */
export function isCloneStart(p: { vm: VMRecord; restored?: boolean; snapshot?: SnapshotRecord }): boolean {
  return !!p.restored && !!p.snapshot && p.snapshot.vmId !== p.vm.id;
}

/** The IPv6 link-local address a Linux guest gives its NIC from the NIC's MAC (modified EUI-64). */
export function linkLocalFor(mac: string): string {
  const b = mac.split(":").map((x) => parseInt(x, 16));
  if (b.length !== 6 || b.some((x) => !(x >= 0 && x <= 255))) throw new BangerError("E_INTERNAL", `not a MAC: ${JSON.stringify(mac)}`);
  const groups = [((b[0]! ^ 2) << 8) | b[1]!, (b[2]! << 8) | 0xff, 0xfe00 | b[3]!, (b[4]! << 8) | b[5]!];
  return `fe80::${groups.map((g) => g.toString(16)).join(":")}`;
}

/**
 * The per-tap settings while it is off the bridge: IPv6 on with no
 * duplicate-address wait (its link-local address usable at once); IPv4 from
 * the guest (still the parent's address) never reaches the host's stack:
 * no ARP answers for the host's addresses, strict reverse-path check.
 * Neighbour solicitations 50 ms apart, not 1 s: joinBridge's pings start
 * before the guest has its new address, and each unanswered resolution
 * would otherwise hold the next one back by a second.
 */
export const ISOLATED_SYSCTLS = (tap: string) => [
  `net.ipv6.conf.${tap}.disable_ipv6=0`,
  `net.ipv6.conf.${tap}.accept_dad=0`,
  `net.ipv6.neigh.${tap}.retrans_time_ms=50`,
  `net.ipv4.conf.${tap}.arp_ignore=8`,
  `net.ipv4.conf.${tap}.rp_filter=1`,
];

/** The clone's tap, up but not on the bridge. On a failure half way the tap may exist: the caller deferred deleteTap before calling. */
export async function addIsolatedTap(exec: Exec, tap: string): Promise<void> {
  await deleteTap(exec, tap);
  const add = await exec.run("ip", ["tuntap", "add", "dev", tap, "mode", "tap"], { check: false });
  if (add.exitCode !== 0) throw new BangerError("E_INTERNAL", `cannot create tap ${tap}: ${add.stderr.trim() || "failed"} (${_RIGHTS})`);
  const set = await exec.run("sysctl", ["-q", "-w", ...ISOLATED_SYSCTLS(tap)], { check: false });
  if (set.exitCode !== 0) throw new BangerError("E_INTERNAL", `cannot set up tap ${tap} for a clone: ${set.stderr.trim() || "sysctl failed"} (IPv6 must be available on the host)`);
  const up = await exec.run("ip", ["link", "set", "dev", tap, "up"], { check: false });
  if (up.exitCode !== 0) throw new BangerError("E_INTERNAL", `cannot bring tap ${tap} up: ${up.stderr.trim() || "failed"} (${_RIGHTS})`);
}

/** The NIC banger's guest init configures (plugins/image/init.sh). */
export const GUEST_NIC = "eth0";
/** Where the guest logs what the detached part of readdress.sh says. */
export const READDRESS_LOG = "/var/log/banger/readdress.log";

export interface CloneAddress {
  /** The clone's own MAC, IPv4 address and prefix; the bridge's address. */
  mac: string;
  ip: string;
  prefix: number;
  gateway: string;
}

/** The guest script that moves the clone to its own address and MAC (its last step, detached, the link-local address of the new MAC). */
export function readdressScript(a: CloneAddress): string {
  return renderScript(READDRESS_SH, { DEV: GUEST_NIC, MAC: a.mac, ADDR: `${a.ip}/${a.prefix}`, GW: a.gateway, LINK_LOCAL: linkLocalFor(a.mac), LOG: READDRESS_LOG });
}

/**
 * Once the guest answers at the link-local address of its own MAC (readdress.sh's
 * last step, so its IPv4 address is its own too), put its tap on the bridge.
 */
export async function joinBridge(exec: Exec, clock: Clock, o: { tap: string; bridge: string; mac: string; ip: string; timeoutMs?: number }): Promise<void> {
  const target = `${linkLocalFor(o.mac)}%${o.tap}`;
  const timeoutMs = o.timeoutMs ?? 15_000;
  const deadline = clock.now().getTime() + timeoutMs;
  // a ping ends at its first answer, or early with an error once a neighbour resolution failed
  // (3 solicitations, 50 ms apart: ISOLATED_SYSCTLS); then the next one
  for (;;) {
    const r = await exec.run("ping", ["-6", "-n", "-q", "-c", "1", "-W", "1", target], { check: false });
    if (r.exitCode === 0) break;
    if (clock.now().getTime() >= deadline) {
      const said = (r.stderr.trim() || r.stdout.trim()).split("\n").at(-1);
      throw new BangerError("E_STATE", `the clone's guest did not take its own MAC ${o.mac} within ${Math.round(timeoutMs / 1000)} s (no answer at ${target}: ${said}; see ${READDRESS_LOG} in the guest)`);
    }
    await clock.sleep(20);
  }
  const attach = await exec.run("ip", ["link", "set", "dev", o.tap, "master", o.bridge], { check: false });
  if (attach.exitCode !== 0) throw new BangerError("E_INTERNAL", `cannot attach ${o.tap} to ${o.bridge}: ${attach.stderr.trim() || "failed"} (${_RIGHTS})`);
  // the host may remember an older owner of this address (a deleted VM): the first dial would wait for that to time out
  await exec.run("ip", ["neigh", "flush", "to", o.ip, "dev", o.bridge], { check: false });
}
