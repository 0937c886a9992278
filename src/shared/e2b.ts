// The E2B front door's vocabulary: what the store keeps and what the daemon's
// own API (the unix socket, `banger e2b …`) answers. Types and constants only.

/** envd's port: an `E2b-Sandbox-Port` of this goes to the emulated envd, any other to that guest port. */
export const ENVD_PORT = 49983;
/** Where `banger e2b serve` listens unless told otherwise (one below envd's, easy to remember). */
export const DEFAULT_E2B_LISTEN = "127.0.0.1:49982";

/** An API key as listed: never the key, never its hash. */
export interface E2BKeyInfo {
  id: string;
  name: string;
  /** The key's first characters, enough to tell keys apart (`e2b_1a2b…`). */
  prefix: string;
  createdAt: string;
}

/** A sandbox's row: the VM it is, and what the control plane was given at create. */
export interface E2BSandboxRecord {
  /** The sandbox id, which is also the VM's name. */
  id: string;
  vmId: string;
  templateId: string;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  /** envd's X-Access-Token for this sandbox (returned by create and connect; never listed, never logged). */
  accessToken: string;
  /** Asked for with `network: { allowPublicTraffic: false }`: then every request to a guest port must carry it (`e2b-traffic-access-token`). */
  trafficAccessToken?: string;
  startedAt: string;
  /** A pause or connect under way: a daemon killed in it leaves the sandbox paused with a timeout the next one clears (a CLI `vm pause` leaves none, and its TTL stays). */
  inFlight?: "pause" | "connect";
}

/** `banger e2b status`: the listener as the daemon has it. */
export interface E2BStatus {
  /** Listening now. */
  listening: boolean;
  /** HOST:PORT it listens on (or will, after a restart), "" when off. */
  listen: string;
  /** The VMM sandboxes are made with ("" = the daemon's default). */
  vmm: string;
  apiUrl: string;
  sandboxUrl: string;
  /** Off loopback: said once at serve, and kept here. */
  warning?: string;
  /** Why the last daemon start could not listen, if it could not. */
  error?: string;
  sandboxes: number;
  keys: number;
}
