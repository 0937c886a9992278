// Published ports as people write them (docker's -p): parsing, matching, printing.
import { BangerError } from "./errors.ts";
import type { PublishedPort } from "./model.ts";

export const PORT_SPEC_RULE = "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp] (HOSTPORT 0: any free port)";
export const DEFAULT_PUBLISH_IP = "127.0.0.1";

const _SPEC = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(?:(\d{1,5}):)?(\d{1,5})(?:\/(tcp|udp))?$/;

function _bad(spec: string, why: string): BangerError {
  return new BangerError("E_BAD_REQUEST", `bad port ${JSON.stringify(spec).slice(0, 80)}: ${why}; expected ${PORT_SPEC_RULE}`);
}

/** `8080:80`, `127.0.0.1:0:80/tcp`, `80` (any host port): a port not yet forwarded. */
export function parsePortSpec(spec: string): PublishedPort {
  if (typeof spec !== "string") throw _bad(String(spec), "not a string");
  const m = _SPEC.exec(spec);
  if (!m) throw _bad(spec, "not in that form");
  const [, ip, host, guest, proto] = m;
  if (ip !== undefined && ip.split(".").some((o) => Number(o) > 255)) throw _bad(spec, `${ip} is not an IPv4 address`);
  const hostPort = host === undefined ? 0 : Number(host);
  const guestPort = Number(guest);
  if (hostPort > 65535) throw _bad(spec, `host port ${hostPort} is over 65535`);
  if (guestPort < 1 || guestPort > 65535) throw _bad(spec, `guest port ${guestPort} is not 1-65535`);
  return { proto: (proto ?? "tcp") as PublishedPort["proto"], hostIP: ip ?? DEFAULT_PUBLISH_IP, hostPort, guestPort, boundPort: 0, reach: [] };
}

/** The same forward asked twice (same protocol, host address, host port and guest port). */
export function samePort(a: PublishedPort, b: PublishedPort): boolean {
  return a.proto === b.proto && a.hostIP === b.hostIP && a.hostPort === b.hostPort && a.guestPort === b.guestPort;
}

/** Which published ports `what` names: a bare guest port (`80`, `53/udp`) names every forward to it, a spec the one it describes (its host port as asked or as bound). */
export function matchPorts(ports: readonly PublishedPort[], what: string): PublishedPort[] {
  const bare = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(what);
  if (bare) return ports.filter((p) => p.guestPort === Number(bare[1]) && (bare[2] === undefined || p.proto === bare[2]));
  const want = parsePortSpec(what);
  return ports.filter(
    (p) => p.proto === want.proto && p.guestPort === want.guestPort && p.hostIP === want.hostIP && (p.hostPort === want.hostPort || (want.hostPort !== 0 && p.boundPort === want.hostPort)),
  );
}

/** One line: `127.0.0.1:8080->80/tcp`, `127.0.0.1:0->80/tcp` before a port was picked, `80/tcp` on a network that forwards nothing. */
export function formatPort(p: PublishedPort): string {
  const host = p.boundPort || p.hostPort;
  return `${p.hostIP}:${host}->${p.guestPort}/${p.proto}`;
}

/**
 * The PORTS column of `vm list`: `8080→80` per port (the host port bound, or
 * as asked, `*` before one is picked; the host address only when it is not
 * the default loopback one; `/udp` only for udp), comma-separated; `-` for
 * none. `vm port ls` has the whole story (where each is reached).
 */
export function portsColumn(ports: readonly PublishedPort[] | undefined): string {
  if (!ports?.length) return "-";
  return ports
    .map((p) => {
      const ip = p.hostIP === DEFAULT_PUBLISH_IP ? "" : `${p.hostIP}:`;
      return `${ip}${p.boundPort || p.hostPort || "*"}→${p.guestPort}${p.proto === "udp" ? "/udp" : ""}`;
    })
    .join(",");
}
