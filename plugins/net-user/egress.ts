// Egress for QEMU user networking: slirp keeps restrict=on (the guest reaches
// nothing by itself) and gets two guestfwd addresses whose every connection
// QEMU hands to a socat relay into this VM's gate in the daemon:
// 10.0.2.100:3128 the HTTP proxy, 10.0.2.53:53 DNS over TCP. The daemon
// gone → socat finds no socket → the guest's connection closes: fails closed.
import { join } from "node:path";
import { BangerError, EGRESS_LOG_FILE } from "../../src/plugin-api.ts";

export const PROXY_IP = "10.0.2.100";
export const PROXY_PORT = 3128;
export const DNS_IP = "10.0.2.53";

export function egressPaths(vmDir: string): { proxySock: string; dnsSock: string; relayLog: string; denials: string } {
  return {
    proxySock: join(vmDir, "egress-proxy.sock"),
    dnsSock: join(vmDir, "egress-dns.sock"),
    relayLog: join(vmDir, "egress-relay.log"),
    denials: join(vmDir, EGRESS_LOG_FILE),
  };
}

// QEMU splits the guestfwd command on spaces (no shell) and socat parses its
// address with : and , as separators: paths stay within these characters
const SAFE_PATH = /^[A-Za-z0-9/._-]+$/;
const MAX_SOCKET_PATH = 107;

/** The `guestfwd=…` options for -netdev user (comma-joined, to append to it). */
export function guestfwdOptions(vmDir: string): string {
  const p = egressPaths(vmDir);
  for (const path of [p.proxySock, p.dnsSock, p.relayLog]) {
    if (!SAFE_PATH.test(path)) throw new BangerError("E_STATE", `cannot forward egress for ${vmDir}: QEMU's guestfwd cannot carry a path with characters outside [A-Za-z0-9/._-]; use a BANGER_HOME without them`);
  }
  if (p.proxySock.length > MAX_SOCKET_PATH) throw new BangerError("E_STATE", `cannot forward egress: ${p.proxySock} is longer than a unix socket path may be (${MAX_SOCKET_PATH}); use a shorter BANGER_HOME`);
  // FD:0 with shut-down passes the guest's EOF on at once (plain `socat -` holds it back 0.5 s); `,,` is QEMU's escaped comma
  const relay = (sock: string) => `cmd:socat -lf ${p.relayLog} FD:0,,shut-down UNIX-CONNECT:${sock}`;
  return [`guestfwd=tcp:${PROXY_IP}:${PROXY_PORT}-${relay(p.proxySock)}`, `guestfwd=tcp:${DNS_IP}:53-${relay(p.dnsSock)}`].join(",");
}

/** Files the guest gets in its seed so its tools use the gate: resolver over TCP, proxy variables, git and apt. */
export function guestEgressFiles(): Record<string, string> {
  const url = `http://${PROXY_IP}:${PROXY_PORT}`;
  const vars = [`http_proxy=${url}`, `https_proxy=${url}`, `HTTP_PROXY=${url}`, `HTTPS_PROXY=${url}`, "no_proxy=localhost,127.0.0.1", "NO_PROXY=localhost,127.0.0.1"];
  return {
    // glibc sends the question over TCP (use-vc): slirp forwards no UDP under restrict=on
    "/etc/resolv.conf": `nameserver ${DNS_IP}\noptions use-vc timeout:2 attempts:1\n`,
    "/etc/environment": vars.join("\n") + "\n",
    "/etc/profile.d/banger-egress.sh": vars.map((v) => `export ${v}`).join("\n") + "\n",
    "/etc/gitconfig": `[http]\n\tproxy = ${url}\n`,
    "/etc/apt/apt.conf.d/80banger-egress": `Acquire::http::Proxy "${url}";\nAcquire::https::Proxy "${url}";\n`,
  };
}
