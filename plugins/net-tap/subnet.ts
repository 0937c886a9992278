import { createHash } from "node:crypto";
import { BangerError } from "../../src/plugin-api.ts";

/** An IPv4 subnet the bridge owns: the first host address is the bridge (gateway), the rest are for guests. */
export interface Subnet {
  /** Canonical "a.b.c.0/p". */
  cidr: string;
  prefix: number;
  network: number;
  gateway: string;
}

const _IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function _toInt(ip: string): number | null {
  const m = _IPV4.exec(ip);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function ipFromInt(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Parse "10.213.0.0/24" (prefix 16–29: room for a gateway and guests, small enough to scan). */
export function parseSubnet(text: string): Subnet {
  const [addr, p, ...rest] = text.trim().split("/");
  const prefix = Number(p);
  const base = addr === undefined ? null : _toInt(addr);
  if (base === null || rest.length > 0 || !Number.isInteger(prefix) || prefix < 16 || prefix > 29) {
    throw new BangerError("E_BAD_REQUEST", `bad tap subnet ${JSON.stringify(text)}: want an IPv4 CIDR with a prefix from /16 to /29, e.g. 10.213.0.0/24`);
  }
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  const network = (base & mask) >>> 0;
  return { cidr: `${ipFromInt(network)}/${prefix}`, prefix, network, gateway: ipFromInt(network + 1) };
}

/** Is `ip` one of the subnet's guest addresses? */
export function inSubnet(ip: string, s: Subnet): boolean {
  const n = _toInt(ip);
  const size = 2 ** (32 - s.prefix);
  return n !== null && n >= s.network + 2 && n < s.network + size - 1;
}

/** Guest addresses in order: after the gateway, before the broadcast address. */
export function* guestAddresses(s: Subnet): Generator<string> {
  const size = 2 ** (32 - s.prefix);
  for (let i = 2; i < size - 1; i++) yield ipFromInt(s.network + i);
}

/** A tap name that fits IFNAMSIZ (15) and is derived from the VM id, so reconcile can find it again without handles. */
export function tapName(vmId: string): string {
  return ("bt-" + vmId.replace(/[^A-Za-z0-9]/g, "")).slice(0, 15);
}

/** A stable, locally administered unicast MAC for a VM (52:54:00 is QEMU's prefix, so it looks familiar in `ip link`). */
export function macFor(vmId: string): string {
  const h = createHash("sha256").update(vmId).digest();
  return ["52", "54", "00", h[0]!, h[1]!, h[2]!].map((b) => (typeof b === "number" ? b.toString(16).padStart(2, "0") : b)).join(":");
}
