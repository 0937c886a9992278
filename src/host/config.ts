/**
 * The environment variables banger reads: this file is the list (README
 * "Environment" links here). Nothing outside src/host reads `process.env`
 * (eslint.config.js says so): code asks `config` for a value, and a function
 * that takes an `env` so a test can pass its own takes `environ()` as its
 * default and reads it through `configFrom(env)`. (environ() itself lives in
 * ./environ.ts, which the CLI's first module loads without these getters.)
 *
 * Values are read when asked for, never cached at import: a test (or the CLI,
 * for NO_COLOR) may set a variable after this module loads. It imports only
 * ./environ.ts: the CLI loads this file for most commands.
 */

import { environ, type Env } from "./environ.ts";

export { environ, type Env };

/** What banger reads from an environment, by name. Raw strings: each reader parses (and defaults) its own. */
export interface BangerConfig {
  /** BANGER_HOME: where state lives (db, socket, images, VMs); default ${XDG_STATE_HOME:-~/.local/state}/banger. */
  readonly home: string | undefined;
  /** XDG_STATE_HOME: the base for the default BANGER_HOME. */
  readonly xdgStateHome: string | undefined;
  /** HOME: the user's home, for the default BANGER_HOME when XDG_STATE_HOME is unset. */
  readonly userHome: string | undefined;
  /** PATH: where tools are looked up (/usr/sbin and /sbin are always searched too). */
  readonly path: string | undefined;
  /** TERM: the terminal type an interactive guest shell is given (default xterm-256color). */
  readonly term: string | undefined;
  /** NO_COLOR: set (to anything) for no colour and no rewriting progress line in the CLI. */
  readonly noColor: boolean;
  /** BANGER_DEBUG: set for debug lines in the daemon log and verbose CLI output (same as --verbose). */
  readonly debug: boolean;
  /** BANGER_PROFILE: set for a `{"profile":[[phase, ms], …]}` line on stderr when a CLI command exits. */
  readonly profile: boolean;
  /** BANGER_PLUGINS: extra user plugin files for the daemon, colon separated. */
  readonly plugins: string | undefined;
  /** BANGER_ACCEL: `kvm` or `tcg` forces the QEMU accelerator instead of probing /dev/kvm. */
  readonly accel: string | undefined;
  /** BANGER_STORAGE: `copy` turns device-mapper snapshots off (sparse/reflink copies instead). */
  readonly storage: string | undefined;
  /** BANGER_FIRECRACKER_BIN: the firecracker binary to run (default `firecracker` on PATH). */
  readonly firecrackerBin: string | undefined;
  /** BANGER_BOOT_TIMEOUT: seconds to wait for a guest's SSH to come up (default 180). */
  readonly bootTimeout: string | undefined;
  /** BANGER_GUEST_STATE_ROOT: where sessions keep their state inside the guest (default /var/lib/banger/sessions). */
  readonly guestStateRoot: string | undefined;
  /** BANGER_TAP_BRIDGE: the bridge tap VMs join (default banger0). */
  readonly tapBridge: string | undefined;
  /** BANGER_TAP_SUBNET: the IPv4 pool tap VMs get addresses from, CIDR (default 10.213.0.0/24). */
  readonly tapSubnet: string | undefined;
  /** BANGER_TAP_DNS: the nameserver tap guests are told to use. */
  readonly tapDns: string | undefined;
  /** BANGER_EGRESS_DNS: the DNS servers (comma separated, IP or IP:port) the egress resolver and proxy ask for allowed names (default: the host's resolv.conf). */
  readonly egressDns: string | undefined;
  /** BANGER_TAP_NETNS_ONLY: `1` refuses tap networking unless the daemon runs in a namespace `ip netns add` made (tests). */
  readonly tapNetnsOnly: boolean;
  /** BANGER_HOSTS_FILE: the hosts file `<name>.vm` lines go to (default /etc/hosts). */
  readonly hostsFile: string | undefined;
  /** BANGER_AUTO_WARM: `0` or `1` turns automatic warm-start templates off or on, over config.json's `autoWarm` (tests turn it off). */
  readonly autoWarm: string | undefined;
  /** BANGER_RUN_RM_LEASE: seconds a `vm run --rm` VM may go unused before the daemon deletes it itself (default 30; its CLI died). */
  readonly runRmLease: string | undefined;
  /** BANGER_FAULT: the crash point (src/host/faults.ts) where the daemon SIGKILLs itself (fault tests). */
  readonly fault: string | undefined;
  /** BANGER_FAULT_SKIP: how many passes of the BANGER_FAULT point to let by before dying (default 0). */
  readonly faultSkip: number;
}

/** Set a variable for this process and its children unless it is set already (the CLI's NO_COLOR off a terminal). */
export function setEnvDefault(name: string, value: string): void {
  process.env[name] ??= value;
}

/** The config read from `env` (a test's own, or a function returning the live one). */
export function configFrom(env: Env | (() => Env)): BangerConfig {
  const e = typeof env === "function" ? env : () => env;
  const s = (k: string) => e()[k];
  return {
    get home() { return s("BANGER_HOME"); },
    get xdgStateHome() { return s("XDG_STATE_HOME"); },
    get userHome() { return s("HOME"); },
    get path() { return s("PATH"); },
    get term() { return s("TERM"); },
    get noColor() { return !!s("NO_COLOR"); },
    get debug() { return !!s("BANGER_DEBUG"); },
    get profile() { return !!s("BANGER_PROFILE"); },
    get plugins() { return s("BANGER_PLUGINS"); },
    get accel() { return s("BANGER_ACCEL"); },
    get storage() { return s("BANGER_STORAGE"); },
    get firecrackerBin() { return s("BANGER_FIRECRACKER_BIN"); },
    get bootTimeout() { return s("BANGER_BOOT_TIMEOUT"); },
    get guestStateRoot() { return s("BANGER_GUEST_STATE_ROOT"); },
    get tapBridge() { return s("BANGER_TAP_BRIDGE"); },
    get tapSubnet() { return s("BANGER_TAP_SUBNET"); },
    get tapDns() { return s("BANGER_TAP_DNS"); },
    get egressDns() { return s("BANGER_EGRESS_DNS"); },
    get tapNetnsOnly() { return s("BANGER_TAP_NETNS_ONLY") === "1"; },
    get hostsFile() { return s("BANGER_HOSTS_FILE"); },
    get autoWarm() { return s("BANGER_AUTO_WARM"); },
    get runRmLease() { return s("BANGER_RUN_RM_LEASE"); },
    get fault() { return s("BANGER_FAULT"); },
    get faultSkip() { return Number(s("BANGER_FAULT_SKIP") ?? 0); },
  };
}

/** The config of this process, read at each access. */
export const config: BangerConfig = configFrom(environ);
