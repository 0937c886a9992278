import { Resolver } from "node:dns/promises";

/** What a name resolved to: IPv4 addresses and the smallest TTL among them (s). Empty when the name does not exist. */
export interface Resolved {
  addrs: string[];
  ttl: number;
}

export type ResolveA = (name: string) => Promise<Resolved>;

/**
 * An A-record lookup on the host, for the egress resolver and proxy.
 * `servers` ("198.51.100.53" or "host:port", BANGER_EGRESS_DNS) replaces
 * the host's resolv.conf; timeouts are short because a guest waits on them.
 */
export function createResolveA(servers: string[] = []): ResolveA {
  const r = new Resolver({ timeout: 2000, tries: 2 });
  if (servers.length) r.setServers(servers);
  return async (name) => {
    try {
      const recs = await r.resolve4(name, { ttl: true });
      return { addrs: recs.map((x) => x.address), ttl: recs.length ? Math.min(...recs.map((x) => x.ttl)) : 0 };
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "ENOTFOUND" || code === "ENODATA") return { addrs: [], ttl: 0 };
      throw e;
    }
  };
}
