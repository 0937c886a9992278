import { join } from "node:path";
import { configFrom, createResolveA, definePlugin, EGRESS_LOG_FILE, environ, serveDns, serveTransparent } from "../../src/plugin-api.ts";
import { BangerError, readPrivileges } from "../../src/plugin-api.ts";
import type { BangerPlugin, CloneNet, DnsAnswerer, DnsServer, Env, ResolveA, Exec, HookMap, LeaseStore, NetPorts, OriginalDst, PluginContext, VMHandles, VMRecord } from "../../src/plugin-api.ts";
import { addTap, deleteTap, ensureBridge, ensureNat } from "./host-net.ts";
import { allowAll, denyAll } from "./egress-fw.ts";
import { applyList, unlist } from "./egress-list.ts";
import { TapResolver, type ServeGate } from "./tap-resolver.ts";
import { addIsolatedTap, isCloneStart, joinBridge, linkLocalFor, readdressScript } from "./clone.ts";
import { originalDst } from "./conntrack.ts";
import { DropLog } from "./drop-log.ts";
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
  /** Where the bridge resolver looks allowed names up (BANGER_EGRESS_DNS, then BANGER_TAP_DNS); default the host's resolv.conf. */
  dns?: string;
  /** The bridge resolver's server (tests whose daemon is outside the tap's namespace pass a stand-in); default serveDns. */
  serveDns?: (addr: string, port: number, answer: DnsAnswerer) => Promise<DnsServer>;
  /** How the bridge resolver looks names up (tests); default createResolveA over `dns`. */
  resolve?: ResolveA;
  /** The gate's server for redirected web TCP (tests pass a stand-in); default serveTransparent. */
  serveGate?: ServeGate;
  /** Where a redirected connection was going (tests); default the daemon namespace's conntrack table. */
  originalDst?: (from: string, fromPort: number, gatePort: number) => Promise<OriginalDst | null>;
  /** The gate's port on the bridge address (default 15301). */
  gatePort?: number;
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

/** What the hook bodies share: the settings, the lease pool, the hosts file, the bridge. */
interface _TapNet {
  ctx: PluginContext;
  exec: Exec;
  conf(): Config;
  leases(): LeaseStore;
  requireOwnNetns(): Promise<void>;
  syncHosts(): Promise<void>;
  resolver: TapResolver;
  bridgeLock: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** The settings, read once; a bad one fails tap VMs only, not the daemon (and every user-net VM) with it. */
function _settings(ctx: PluginContext, o: NetTapOptions, env: Env): () => Config {
  let parsed: Config | Error;
  try {
    parsed = _config(o, env);
  } catch (e) {
    parsed = e as Error;
    ctx.log.warn(`${parsed.message}; --net tap VMs cannot start until it is fixed`);
  }
  return () => {
    if (parsed instanceof Error) throw parsed;
    return parsed;
  };
}

/**
 * Tests set BANGER_TAP_NETNS_ONLY so a tap VM created by mistake outside a test's own
 * network namespace fails instead of editing the machine's bridge, NAT rules and /etc/hosts.
 */
function _ownNetnsGuard(exec: Exec, env: Env): () => Promise<void> {
  let netnsChecked = false;
  return async () => {
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
}

function _leaseStore(ctx: PluginContext): () => LeaseStore {
  return () => {
    if (!ctx.store.leases) throw new BangerError("E_INTERNAL", "this daemon's store has no lease table (net-tap needs it)");
    return ctx.store.leases;
  };
}

/** Rewrite our hosts block from the leases, so it always equals what the store says. */
function _hostsSync(ctx: PluginContext, conf: () => Config, leases: () => LeaseStore): () => Promise<void> {
  const hostsLock = _serial();
  const marker = hostsMarker(ctx.paths.home);
  return () =>
    hostsLock(async () => {
      const names = new Map(ctx.store.listVMs().map((v) => [v.id, v.name]));
      const entries: HostsEntry[] = [];
      for (const l of leases().list(IP_POOL)) {
        const name = names.get(l.vmId);
        if (name) entries.push({ ip: l.value, name: `${name}.vm` });
      }
      await rewriteHostsFile(ctx.host, conf().hostsFile, marker, entries);
    });
}

/** The VM's address from the pool (moved into the subnet if the setting changed), written into its runtime. */
async function _claimAddress(t: _TapNet, vm: VMRecord): Promise<string> {
  const { subnet } = t.conf();
  let ip = t.leases().lease(IP_POOL, vm.id, guestAddresses(subnet));
  if (!inSubnet(ip, subnet)) {
    // the subnet setting changed since this VM got its address: move it into the new one
    t.leases().release(IP_POOL, vm.id);
    ip = t.leases().lease(IP_POOL, vm.id, guestAddresses(subnet));
    await t.syncHosts();
  }
  vm.runtime.guestIP = ip;
  vm.runtime.sshHost = ip;
  vm.runtime.sshPort = 22;
  vm.runtime.dnsName = `${vm.name}.vm`;
  return ip;
}

function _resolver(ctx: PluginContext, o: NetTapOptions, env: Env, conf: () => Config): TapResolver {
  let resolveA: ReturnType<typeof createResolveA> | undefined;
  const upstream = () => (configFrom(env).egressDns ?? conf().dns ?? "").split(",").filter(Boolean);
  return new TapResolver({
    exec: ctx.host.exec,
    fs: ctx.host.fs,
    clock: ctx.host.clock,
    resolve: o.resolve ?? ((name) => (resolveA ??= createResolveA(upstream()))(name)),
    serve: o.serveDns ?? serveDns,
    serveGate: o.serveGate ?? serveTransparent,
    originalDst: o.originalDst ?? ((from, fromPort, gatePort) => originalDst(ctx.host.fs, from, fromPort, gatePort)),
    gatePort: o.gatePort,
    debug: (m) => ctx.log.debug(m),
  });
}

function _tapNet(ctx: PluginContext, o: NetTapOptions, env: Env): _TapNet {
  const conf = _settings(ctx, o, env);
  const leases = _leaseStore(ctx);
  const syncHosts = _hostsSync(ctx, conf, leases);
  const exec = ctx.host.exec;
  return { ctx, exec, conf, leases, syncHosts, requireOwnNetns: _ownNetnsGuard(exec, env), resolver: _resolver(ctx, o, env, conf), bridgeLock: _serial() };
}

/** vm:create: an address from the pool and a `<name>.vm` line. */
async function _giveAddress(t: _TapNet, { vm, op }: HookMap["vm:create"]): Promise<void> {
  const me = await readPrivileges(t.ctx.host.fs);
  if (me.uid !== null && me.uid !== 0 && !me.capNetAdmin) {
    // said at create, in one line: not as an EACCES on the hosts file, or ip's "Operation not permitted" at start
    throw new BangerError("E_PERMISSION", `--net tap needs root or CAP_NET_ADMIN (a tap device, the bridge, NAT): run banger as root, or \`sudo setcap cap_net_admin+ep "$(command -v banger)"\` (see \`banger doctor\`); --net user needs neither`);
  }
  await t.requireOwnNetns();
  const ip = await _claimAddress(t, vm);
  // deferred before the rewrite that may fail: a failed create gives the address back either way
  op.defer(`address ${ip}`, async () => {
    t.leases().release(IP_POOL, vm.id);
    await t.syncHosts();
  });
  await t.syncHosts();
  t.ctx.log.debug(`${vm.name}: ${ip} (${vm.name}.vm)`);
}

/** The guests' only DNS server, whatever their policy (a live change to an allowlist then needs nothing from the guest), and the gate next to it. */
async function _listen(t: _TapNet): Promise<void> {
  const gw = t.conf().subnet.gateway;
  await t.resolver.listen(gw).catch((e: Error) => {
    throw new BangerError("E_INTERNAL", `cannot serve the guests' DNS (${gw}:53) and egress gate (${gw}:${t.resolver.gatePort}): ${e.message}`);
  });
}

/** vm:start:before: the bridge and NAT (once), a tap on it for this VM, and the guest's address on its kernel command line. */
async function _plugIn(t: _TapNet, { vm, boot, handles, op, restored, snapshot }: HookMap["vm:start:before"]): Promise<void> {
  await t.requireOwnNetns();
  const cfg = t.conf();
  const ip = await _claimAddress(t, vm);
  op.progress(`tap network: ${cfg.bridge} ${cfg.subnet.cidr}, ${vm.name} at ${ip}`);
  await t.bridgeLock(async () => {
    await ensureBridge(t.exec, cfg.bridge, cfg.subnet);
    await ensureNat(t.exec, cfg.bridge, cfg.subnet);
    await _listen(t);
  });
  const tap = tapName(vm.id);
  // deferred before it is made: a tap half made (created, not attached) is removed too; a missing one is no error
  op.defer(`tap ${tap}`, async () => {
    await deleteTap(t.exec, tap);
    handles.tapDevice = "";
  });
  // a clone's guest still has its parent's MAC and address: its tap joins the bridge once it has its own (_cloneNet)
  if (isCloneStart({ vm, restored, snapshot })) await addIsolatedTap(t.exec, tap);
  else await addTap(t.exec, tap, cfg.bridge);
  handles.tapDevice = tap;
  boot.nics = [...(boot.nics ?? []), { tap, mac: macFor(vm.id) }];
  boot.kernelArgs.push(`banger.ip=${ip}/${cfg.subnet.prefix}`, `banger.gw=${cfg.subnet.gateway}`, `banger.dns=${cfg.subnet.gateway}`);
}

/**
 * vm:start:after of a clone: how the guest plugin reaches its guest (the link-local
 * address of the parent's MAC on the clone's own tap, which is off the bridge),
 * what it runs there to move it to its own address, and, after that, the tap
 * joining the bridge. `joined` records that it did (the "post" check below).
 */
function _cloneNet(t: _TapNet, vm: VMRecord, snapshot: { vmId: string }, cloneNet: CloneNet, joined: WeakSet<CloneNet>): void {
  const cfg = t.conf();
  const tap = tapName(vm.id);
  const mac = macFor(vm.id);
  cloneNet.dialVia = { host: `${linkLocalFor(macFor(snapshot.vmId))}%${tap}`, port: 22 };
  cloneNet.guestScript = readdressScript({ mac, ip: vm.runtime.guestIP, prefix: cfg.subnet.prefix, gateway: cfg.subnet.gateway });
  cloneNet.afterIdentity = async () => {
    const t0 = t.ctx.host.clock.now().getTime();
    await joinBridge(t.exec, t.ctx.host.clock, { tap, bridge: cfg.bridge, mac, ip: vm.runtime.guestIP });
    joined.add(cloneNet);
    t.ctx.log.debug(`${vm.name}: own MAC ${mac} and ${vm.runtime.guestIP}, ${tap} on ${cfg.bridge} (${t.ctx.host.clock.now().getTime() - t0} ms after its re-addressing)`);
  };
}

/**
 * vm:reconcile: handles rebuilt from the live process (scratch file lost) do not name the tap; its name is derived
 * from the id. A tap off the bridge of a VM still "starting" is a clone's whose start was cut short before it had
 * its own address (its guest may still have its parent's): it is not kept.
 */
async function _findTap(t: _TapNet, { vm, handles, alive, discard }: HookMap["vm:reconcile"]): Promise<void> {
  const tap = tapName(vm.id);
  const clone = alive && vm.runtime.state === "starting";
  if (handles.tapDevice && !clone) return;
  const shown = await t.exec.run("ip", ["-o", "link", "show", "dev", tap], { check: false });
  if (shown.exitCode !== 0) return;
  handles.tapDevice = tap;
  if (clone && !/ master /.test(shown.stdout)) discard?.(`${tap} is off the bridge: a clone whose start was cut short before it had its own address`);
}

async function _releaseAddress(t: _TapNet, vm: VMRecord): Promise<void> {
  t.leases().release(IP_POOL, vm.id);
  await t.syncHosts();
}

/**
 * Published ports on a tap VM: the host routes to the guest's own address, so
 * nothing is forwarded; a port is reached at `IP:PORT` and `<name>.vm:PORT`.
 */
export const tapPorts: NetPorts = {
  async open(vm, _handles, p) {
    p.boundPort = 0;
    p.reach = [`${vm.runtime.guestIP}:${p.guestPort}`, ...(vm.runtime.dnsName ? [`${vm.runtime.dnsName}:${p.guestPort}`] : [])];
  },
  async close() {},
};

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
      const t = _tapNet(ctx, o, env);

      // opt-in: it needs root and changes the host's network, so a VM gets it only by asking (or from a VMM that lists it, Firecracker)
      const net = ctx.registerNet({ name: TAP_NET, description: "bridge + NAT, a tap per VM, guest IP from a pool, <name>.vm", optIn: true, ports: tapPorts });
      net.hook("vm:create", async (p) => {
        await _giveAddress(t, p);
      });

      net.hook("vm:start:before", async (p) => {
        // the firewall elements vm:egress:apply adds after launch go again if the start fails later
        p.op.defer("egress firewall", () => (denied.has(p.vm.id) ? release(p.vm) : undefined));
        await _plugIn(t, p);
      });

      // a clone's tap off the bridge: the guest plugin re-addresses the guest, then calls afterIdentity
      const joined = new WeakSet<CloneNet>();
      net.hook("vm:start:after", (p) => {
        if (p.cloneNet && isCloneStart(p)) _cloneNet(t, p.vm, p.snapshot!, p.cloneNet, joined);
      });
      // nothing else called it (no plugin gives clones an identity, or an image without banger's init): the start fails
      // rather than leave a clone cut off, or (put on the bridge as it is) answering for its parent
      ctx.hook(
        "vm:start:after",
        (p) => {
          if (p.vm.spec.net !== TAP_NET || !p.cloneNet?.afterIdentity || joined.has(p.cloneNet)) return;
          throw new BangerError("E_STATE", `clone ${p.vm.name}: nothing moved its guest off its parent's address (the guest plugin runs the re-addressing); its tap stays off the bridge`);
        },
        { order: "post" },
      );

      // none: nftables cuts the guest off (egress-fw.ts); all: the NAT; a list: per-VM chains and
      // sets (egress-list.ts) that the bridge resolver fills; every mode: the resolver answers the guest
      // VMs this daemon cut off or listed: only those need taking out again (a VM that never was costs no nft call)
      const denied = new Set<string>();
      // allowlisted VMs' firewall drops, polled into their egress logs
      const drops = new DropLog({ exec: t.exec, clock: ctx.host.clock, resolverIp: () => t.conf().subnet.gateway, log: (ip, d) => t.resolver.firewallDrop(ip, d) });
      const release = async (vm: VMRecord) => {
        drops.unwatch(vm.id);
        if (vm.runtime.guestIP) t.resolver.forget(vm.runtime.guestIP);
        if (!denied.delete(vm.id) && vm.spec.egress === "all") return;
        if (!vm.runtime.guestIP) return;
        await unlist(t.exec, vm.runtime.guestIP, tapName(vm.id));
        await allowAll(t.exec, vm.runtime.guestIP, tapName(vm.id));
      };
      net.hook("vm:egress:apply", async ({ vm, policy }) => {
        const tap = tapName(vm.id);
        const ip = vm.runtime.guestIP;
        // after a daemon restart the VM is running but nothing serves its DNS yet
        await t.bridgeLock(() => _listen(t));
        t.resolver.set(vm.name, ip, tap, policy, join(vm.runtime.vmDir, EGRESS_LOG_FILE));
        drops.unwatch(vm.id);
        if (policy.mode === "all") {
          if (!denied.has(vm.id)) return;
          denied.delete(vm.id);
          await unlist(t.exec, ip, tap);
          return allowAll(t.exec, ip, tap);
        }
        denied.add(vm.id);
        if (policy.mode === "none") {
          // cut off first, then drop the list: never a moment with more than either allows
          await denyAll(t.exec, ip, tap);
          await unlist(t.exec, ip, tap);
          return drops.watchDenied(vm.id, ip);
        }
        await applyList(t.exec, ip, tap, t.conf().subnet.gateway, policy.rules, t.resolver.gatePort);
        drops.watch(vm.id, ip, tap);
      });

      net.hook("vm:reconcile", async (p) => {
        await _findTap(t, p);
      });

      // after a stop, and for a VM found dead (reconcile); a failed start removes its tap through its op
      // only for tap VMs (the taps this plugin made): another provider's tapDevice is that one's to remove
      net.hook("vm:cleanup", async ({ vm, handles }) => {
        await deleteTap(t.exec, handles.tapDevice || tapName(vm.id));
        await release(vm);
      });

      net.hook("vm:delete", async ({ vm }) => {
        await _releaseAddress(t, vm);
      });
    },
  });
}

export default createNetTapPlugin();
