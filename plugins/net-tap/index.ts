import { BangerError, configFrom, definePlugin, environ } from "../../src/plugin-api.ts";
import type { BangerPlugin, Env, LeaseStore, PluginContext, VMRecord } from "../../src/plugin-api.ts";
import { addTap, deleteTap, ensureBridge, ensureNat, linkExists } from "./host-net.ts";
import { hostsMarker, rewriteHostsFile, type HostsEntry } from "./hosts-file.ts";
import { guestAddresses, inSubnet, macFor, parseSubnet, tapName, type Subnet } from "./subnet.ts";

/** The lease pool guest IPs come from. */
export const IP_POOL = "net-tap";
export const DEFAULT_BRIDGE = "banger0";
export const DEFAULT_SUBNET = "10.213.0.0/24";
export const DEFAULT_HOSTS_FILE = "/etc/hosts";

export interface NetTapOptions {
  /** Bridge name (BANGER_TAP_BRIDGE, default banger0). */
  bridge?: string;
  /** Subnet for the bridge and guests (BANGER_TAP_SUBNET, default 10.213.0.0/24); the first address is the bridge's. */
  subnet?: string;
  /** Hosts file that gets the `<name>.vm` block (BANGER_HOSTS_FILE, default /etc/hosts). */
  hostsFile?: string;
  /** Guest resolver (BANGER_TAP_DNS); default the host's first non-loopback nameserver, none if there is none. */
  dns?: string;
}

interface Config {
  bridge: string;
  subnet: Subnet;
  hostsFile: string;
  dns: string | undefined;
}

function _config(o: NetTapOptions, env: Env): Config {
  const c = configFrom(env);
  const bridge = o.bridge ?? c.tapBridge ?? DEFAULT_BRIDGE;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) {
    throw new BangerError("E_BAD_REQUEST", `bad bridge name ${JSON.stringify(bridge)}: 1-15 of [A-Za-z0-9_.-]`);
  }
  const dns = o.dns ?? c.tapDns;
  if (dns !== undefined && dns !== "" && !/^[0-9.]+$/.test(dns)) throw new BangerError("E_BAD_REQUEST", `bad tap DNS server ${JSON.stringify(dns)}: an IPv4 address`);
  return {
    bridge,
    subnet: parseSubnet(o.subnet ?? c.tapSubnet ?? DEFAULT_SUBNET),
    hostsFile: o.hostsFile ?? c.hostsFile ?? DEFAULT_HOSTS_FILE,
    dns,
  };
}

/** The network provider's name: `--net tap`, `spec.net`. */
export const TAP_NET = "tap";

/** The host's first IPv4 nameserver that a guest can reach (loopback ones, e.g. systemd-resolved's, cannot be). */
export function guestResolver(resolvConf: string): string {
  for (const line of resolvConf.split("\n")) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (m && !m[1]!.startsWith("127.")) return m[1]!;
  }
  return "";
}

/** Serialize async work (hosts file rewrites, bridge setup) inside one daemon. */
function _serial(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (fn) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => {});
    return run;
  };
}

/**
 * Tap networking: a bridge with NAT, a tap per VM on it, the guest's IP from
 * a pool in the store, `<name>.vm` in the hosts file. Opt-in per VM with
 * `--net tap`; everything else stays on net-user.
 */
export function createNetTapPlugin(o: NetTapOptions = {}, env: Env = environ()): BangerPlugin {
  return definePlugin({
    name: "net-tap",
    description: "Tap networking (--net tap): bridge + NAT, a tap per VM, guest IP from a pool in the store, <name>.vm in the hosts file",
    setup(ctx: PluginContext) {
      // A bad tap setting must not take the daemon (and every user-net VM) down with it: it fails tap VMs only.
      let parsed: Config | Error;
      try {
        parsed = _config(o, env);
      } catch (e) {
        parsed = e as Error;
        ctx.log.warn(`${parsed.message}; --net tap VMs cannot start until it is fixed`);
      }
      const conf = (): Config => {
        if (parsed instanceof Error) throw parsed;
        return parsed;
      };
      const exec = ctx.host.exec;
      const hostsLock = _serial();
      const bridgeLock = _serial();
      const marker = hostsMarker(ctx.paths.home);

      // Tests set BANGER_TAP_NETNS_ONLY so a tap VM created by mistake outside a test's own
      // network namespace fails instead of editing the machine's bridge, NAT rules and /etc/hosts.
      let netnsChecked = false;
      const requireOwnNetns = async () => {
        if (!configFrom(env).tapNetnsOnly || netnsChecked) return;
        // our namespace's inode, then those of the namespaces `ip netns add` made (PID 1's may be unreadable)
        const r = await exec.run("sh", ["-c", "stat -L -c %i /proc/self/ns/net /run/netns/* 2>/dev/null"], { check: false });
        const [self, ...named] = r.stdout.trim().split("\n");
        // no inode at all: sh or stat itself failed, which is not the same as being in the wrong namespace
        if (!self) throw new BangerError("E_INTERNAL", `cannot tell which network namespace the daemon is in: sh failed (exit ${r.exitCode})${r.stderr.trim() ? `: ${r.stderr.trim().split("\n").at(-1)}` : ""}`);
        if (!named.includes(self)) {
          throw new BangerError("E_BAD_REQUEST", "BANGER_TAP_NETNS_ONLY is set and this daemon is not in a namespace made by `ip netns add`: tap networking refused");
        }
        netnsChecked = true;
      };

      const leases = (): LeaseStore => {
        if (!ctx.store.leases) throw new BangerError("E_INTERNAL", "this daemon's store has no lease table (net-tap needs it)");
        return ctx.store.leases;
      };

      /** Rewrite our hosts block from the leases, so it always equals what the store says. */
      const syncHosts = () =>
        hostsLock(async () => {
          const names = new Map(ctx.store.listVMs().map((v) => [v.id, v.name]));
          const entries: HostsEntry[] = [];
          for (const l of leases().list(IP_POOL)) {
            const name = names.get(l.vmId);
            if (name) entries.push({ ip: l.value, name: `${name}.vm` });
          }
          await rewriteHostsFile(ctx.host, conf().hostsFile, marker, entries);
        });

      const claim = async (vm: VMRecord): Promise<string> => {
        const { subnet } = conf();
        let ip = leases().lease(IP_POOL, vm.id, guestAddresses(subnet));
        if (!inSubnet(ip, subnet)) {
          // the subnet setting changed since this VM got its address: move it into the new one
          leases().release(IP_POOL, vm.id);
          ip = leases().lease(IP_POOL, vm.id, guestAddresses(subnet));
          await syncHosts();
        }
        vm.runtime.guestIP = ip;
        vm.runtime.sshHost = ip;
        vm.runtime.sshPort = 22;
        vm.runtime.dnsName = `${vm.name}.vm`;
        return ip;
      };

      let resolver: string | undefined;
      const dns = async (): Promise<string> => {
        resolver ??= conf().dns ?? guestResolver((await ctx.host.fs.readText("/etc/resolv.conf")) ?? "");
        return resolver;
      };

      // opt-in: it needs root and changes the host's network, so a VM gets it only by asking (or from a VMM that lists it, Firecracker)
      const net = ctx.registerNet({ name: TAP_NET, description: "bridge + NAT, a tap per VM, guest IP from a pool, <name>.vm", optIn: true });
      net.hook("vm:create", async ({ vm, op }) => {
        await requireOwnNetns();
        const ip = await claim(vm);
        // deferred before the rewrite that may fail: a failed create gives the address back either way
        op.defer(`address ${ip}`, async () => {
          leases().release(IP_POOL, vm.id);
          await syncHosts();
        });
        await syncHosts();
        ctx.log.debug(`${vm.name}: ${ip} (${vm.name}.vm)`);
      });

      net.hook("vm:start:before", async ({ vm, boot, handles, op }) => {
        await requireOwnNetns();
        const cfg = conf();
        const ip = await claim(vm);
        op.progress(`tap network: ${cfg.bridge} ${cfg.subnet.cidr}, ${vm.name} at ${ip}`);
        await bridgeLock(async () => {
          await ensureBridge(exec, cfg.bridge, cfg.subnet);
          await ensureNat(exec, cfg.bridge, cfg.subnet);
        });
        const tap = tapName(vm.id);
        // deferred before it is made: a tap half made (created, not attached) is removed too; a missing one is no error
        op.defer(`tap ${tap}`, async () => {
          await deleteTap(exec, tap);
          handles.tapDevice = "";
        });
        await addTap(exec, tap, cfg.bridge);
        handles.tapDevice = tap;
        boot.nics = [...(boot.nics ?? []), { tap, mac: macFor(vm.id) }];
        boot.kernelArgs.push(`banger.ip=${ip}/${cfg.subnet.prefix}`, `banger.gw=${cfg.subnet.gateway}`, `banger.dns=${await dns()}`);
      });

      net.hook("vm:reconcile", async ({ vm, handles }) => {
        // handles rebuilt from the live process (scratch file lost) do not name the tap; its name is derived from the id
        if (handles.tapDevice) return;
        const tap = tapName(vm.id);
        if (await linkExists(exec, tap)) handles.tapDevice = tap;
      });

      // after a stop, and for a VM found dead (reconcile); a failed start removes its tap through its op
      // only for tap VMs (the taps this plugin made): another provider's tapDevice is that one's to remove
      net.hook("vm:cleanup", async ({ vm, handles }) => {
        await deleteTap(exec, handles.tapDevice || tapName(vm.id));
      });

      net.hook("vm:delete", async ({ vm }) => {
        leases().release(IP_POOL, vm.id);
        await syncHosts();
      });
    },
  });
}

export default createNetTapPlugin();
