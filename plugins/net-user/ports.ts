import { createServer } from "node:net";
import { BangerError, qmpHuman } from "../../src/plugin-api.ts";
import type { NetPorts, PublishedPort, VMRecord } from "../../src/plugin-api.ts";

/** The slirp netdev's id (in netUserArgs): published ports are added to it. */
export const USER_NETDEV = "n0";
const NETDEV = USER_NETDEV;

/** What the port forwarding takes from the plugin's options. */
export interface UserPortsOptions {
  /** Is the port free to bind on 127.0.0.1 right now? Default: a real bind test. */
  portFree?: (port: number) => Promise<boolean>;
  /** Send an HMP command line to the VM's QEMU (default: over QMP on its API socket); tests record it. */
  monitor?: (vm: VMRecord, commandLine: string) => Promise<string>;
}

/** Try to bind host:port; true when it could (then released at once). */
export function portFreeOnLoopback(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Is `host` an address of this host (a bind to it works)? False only for EADDRNOTAVAIL; anything else is left to the bind that follows. */
function _addressHere(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", (e: NodeJS.ErrnoException) => resolve(e.code !== "EADDRNOTAVAIL"));
    srv.listen({ host, port: 0, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Ask the kernel for a free port on `host` (bind to 0), then let it go for QEMU to take. */
function _anyFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** What goes into an HMP command line is only ever checked numbers and a dotted quad, never text from a request. */
function _rule(p: PublishedPort, hostPort: number): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(p.hostIP) || !Number.isInteger(hostPort) || !Number.isInteger(p.guestPort) || (p.proto !== "tcp" && p.proto !== "udp")) {
    throw new BangerError("E_BAD_REQUEST", `bad port ${JSON.stringify(p).slice(0, 120)}`);
  }
  return `${p.proto}:${p.hostIP}:${hostPort}`;
}

/** The one line for a published port whose host port is taken. */
export function portInUse(p: PublishedPort, hostPort: number): BangerError {
  return new BangerError("E_PORT_IN_USE", `host port ${p.hostIP}:${hostPort}/${p.proto} is in use (publishing guest port ${p.guestPort}); pick another or use 0 for any`);
}

/** `info usernet` rows that are host forwards: "TCP[HOST_FORWARD]  13  127.0.0.1  8080  10.0.2.15  80 …". */
export function parseUsernetForwards(text: string): Pick<PublishedPort, "proto" | "hostIP" | "boundPort">[] {
  const out: Pick<PublishedPort, "proto" | "hostIP" | "boundPort">[] = [];
  for (const m of text.matchAll(/^\s*(TCP|UDP)\[HOST_FORWARD\]\s+-?\d+\s+(\S+)\s+(\d+)\s/gm)) {
    out.push({ proto: m[1]!.toLowerCase() as PublishedPort["proto"], hostIP: m[2]!, boundPort: Number(m[3]) });
  }
  return out;
}

/**
 * Published ports on slirp: each is a hostfwd rule added to (and removed
 * from) the running QEMU's user netdev through the monitor, so no restart is
 * needed and the rules live exactly as long as the QEMU process.
 */
export function userNetPorts(o: UserPortsOptions): NetPorts {
  const monitor = o.monitor ?? ((vm: VMRecord, line: string) => qmpHuman(vm.runtime.apiSockPath, line));
  // tcp ports are checked with a bind first for a clear error; QEMU's own refusal is the check for udp
  const free = (p: PublishedPort, port: number) => (p.proto === "tcp" ? (o.portFree ?? ((n: number) => portFreeOnLoopback(n, p.hostIP)))(port) : Promise.resolve(true));
  return {
    async open(vm, _handles, p) {
      // an address the host does not have is no port in use: say so (127.0.0.1 and 0.0.0.0 always are)
      if (p.hostIP !== "127.0.0.1" && p.hostIP !== "0.0.0.0" && !(await _addressHere(p.hostIP))) {
        throw new BangerError("E_BAD_REQUEST", `host address ${p.hostIP} is not one of this host's (publishing guest port ${p.guestPort}): use 127.0.0.1, 0.0.0.0 or an address the host has`);
      }
      let port = p.hostPort;
      if (port === 0) port = p.boundPort && (await free(p, p.boundPort)) ? p.boundPort : await _anyFreePort(p.hostIP);
      else if (!(await free(p, port))) throw portInUse(p, port);
      const said = (await monitor(vm, `hostfwd_add ${NETDEV} ${_rule(p, port)}-:${p.guestPort}`)).trim();
      if (said) {
        if (/could not set up host forwarding/i.test(said)) throw portInUse(p, port);
        throw new BangerError("E_INTERNAL", `qemu refused the forward ${p.hostIP}:${port}->${p.guestPort}/${p.proto}: ${said.split("\n")[0]}`);
      }
      p.boundPort = port;
      p.reach = [`${p.hostIP}:${port}`];
    },
    async close(vm, _handles, p) {
      if (!p.boundPort) return;
      // "host forwarding rule … not found" means it is gone already: what close wants
      await monitor(vm, `hostfwd_remove ${NETDEV} ${_rule(p, p.boundPort)}`);
    },
    async live(vm) {
      return parseUsernetForwards(await monitor(vm, "info usernet"));
    },
  };
}
