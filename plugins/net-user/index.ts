import { createServer } from "node:net";
import { BangerError, configFrom, createResolveA, definePlugin, EgressGate, environ } from "../../src/plugin-api.ts";
import type { BangerPlugin, Env, ResolveA, VMRecord } from "../../src/plugin-api.ts";
import { portFreeOnLoopback, portInUse, USER_NETDEV, userNetPorts, type UserPortsOptions } from "./ports.ts";
import { egressPaths, guestEgressFiles, guestfwdOptions } from "./egress.ts";

export { portFreeOnLoopback, parseUsernetForwards, USER_NETDEV } from "./ports.ts";

/** slirp's fixed guest address (10.0.2.0/24, gateway 10.0.2.2). */
export const SLIRP_GUEST_IP = "10.0.2.15";
export const LOOPBACK = "127.0.0.1";

export interface NetUserOptions extends UserPortsOptions {
  /** Port range to allocate from, inclusive. Default 20022–32767: below Linux's ephemeral range, so outgoing connections don't take it later. */
  range?: { min: number; max: number };
  /** [0,1) source for the starting offset (default Math.random). */
  random?: () => number;
  /** Where the egress gate resolves allowed names (default: BANGER_EGRESS_DNS, else the host's resolv.conf). */
  resolve?: ResolveA;
  env?: Env;
}

/**
 * Pick a loopback port no other VM in `vms` owns and that binds right now.
 * Starts at a random offset so concurrent daemons/VMs rarely race for the same one.
 */
export async function allocateSshPort(vms: VMRecord[], selfId: string, o: NetUserOptions = {}, reserved: Map<string, number> = new Map()): Promise<number> {
  const { min, max } = o.range ?? { min: 20022, max: 32767 };
  const portFree = o.portFree ?? portFreeOnLoopback;
  // A port is chosen before the VM row holding it is saved, and the bind test awaits:
  // concurrent creates see each other's picks through `reserved` (vm id → port) until
  // the row has it (or the VM is gone).
  for (const [id, port] of reserved) {
    const row = vms.find((v) => v.id === id);
    if (id === selfId || !row || row.runtime.sshPort === port) reserved.delete(id);
  }
  const taken = new Set(vms.filter((v) => v.id !== selfId && v.runtime.sshPort > 0).map((v) => v.runtime.sshPort));
  const claimed = (port: number) => [...reserved].some(([id, p]) => id !== selfId && p === port);
  const size = max - min + 1;
  const start = Math.floor((o.random ?? Math.random)() * size);
  for (let i = 0; i < size; i++) {
    const port = min + ((start + i) % size);
    if (taken.has(port) || claimed(port)) continue;
    reserved.set(selfId, port); // before the await: nobody else can pick it meanwhile
    if (await portFree(port)) return port;
    reserved.delete(selfId);
  }
  throw new BangerError("E_CONFLICT", `no free loopback port in ${min}-${max} for SSH forwarding`);
}

/**
 * QEMU user-mode networking args: slirp restricted (restrict=on) to the SSH
 * host forward and, given `egress` (guestfwd options), the VM's egress gate.
 */
export function netUserArgs(port: number, egress?: string): string[] {
  return [
    "-netdev", `user,id=${USER_NETDEV},restrict=on,hostfwd=tcp:${LOOPBACK}:${port}-:22${egress ? `,${egress}` : ""}`,
    "-device", "virtio-net-pci,netdev=n0",
  ];
}

/** The network provider's name: `--net user`, `spec.net`. */
export const USER_NET = "user";
/** The VMMs it serves: slirp is QEMU's (its -netdev argv); other VMMs attach other networks. */
export const USER_NET_DRIVERS = ["qemu"];

/** The plugin, with injectable port allocation for tests. */
export function createNetUserPlugin(o: NetUserOptions = {}): BangerPlugin {
  return definePlugin({
    name: "net-user",
    description: "QEMU user networking: guest SSH forwarded to a loopback port (no privileges needed)",
    setup(ctx) {
      const reserved = new Map<string, number>();
      const gates = new Map<string, EgressGate>();
      let resolve = o.resolve;
      const closeGate = async (id: string) => {
        const g = gates.get(id);
        gates.delete(id);
        await g?.close();
      };
      const net = ctx.registerNet({ name: USER_NET, description: "QEMU user networking, SSH on a loopback port", drivers: USER_NET_DRIVERS, ports: userNetPorts(o) });
      net.hook("vm:create", async ({ vm }) => {
        vm.runtime.sshHost = LOOPBACK;
        vm.runtime.sshPort = await allocateSshPort(ctx.store.listVMs(), vm.id, o, reserved);
        vm.runtime.guestIP = SLIRP_GUEST_IP;
      });
      net.hook("vm:start:before", async ({ vm, boot, op }) => {
        const portFree = o.portFree ?? portFreeOnLoopback;
        // a published TCP port someone else holds fails the start now, not after a whole boot (its forward is added then)
        for (const p of vm.spec.ports ?? []) {
          if (p.proto === "tcp" && p.hostPort > 0 && !(await portFree(p.hostPort, p.hostIP))) throw portInUse(p, p.hostPort);
        }
        // a stopped VM's port may have been taken by something else meanwhile
        if (vm.runtime.sshPort <= 0 || !(await portFree(vm.runtime.sshPort))) {
          const old = vm.runtime.sshPort;
          vm.runtime.sshPort = await allocateSshPort(ctx.store.listVMs(), vm.id, o, reserved);
          if (old > 0) ctx.log.info(`${vm.name}: ssh port ${old} is taken; forwarding ${vm.runtime.sshPort} instead`);
        }
        vm.runtime.sshHost = LOOPBACK;
        vm.runtime.guestIP = SLIRP_GUEST_IP;
        // always forwarded, even for `none` (the gate then refuses all): QEMU 7.2 cannot add a guestfwd later, and a live change must work
        boot.netArgs.push(...netUserArgs(vm.runtime.sshPort, guestfwdOptions(vm.runtime.vmDir)));
        boot.guestFiles = { ...boot.guestFiles, ...guestEgressFiles() };
        // an empty banger.dns keeps the guest init from writing slirp's 10.0.2.3 (dead under restrict=on) over the seed's resolv.conf
        boot.kernelArgs.push("banger.dns=");
        op.defer("egress gate", () => closeGate(vm.id));
      });
      net.hook("vm:egress:apply", async ({ vm, policy }) => {
        const g = gates.get(vm.id);
        if (g) return g.setPolicy(policy);
        resolve ??= createResolveA((configFrom(o.env ?? environ()).egressDns ?? "").split(",").filter(Boolean));
        const p = egressPaths(vm.runtime.vmDir);
        const gate = new EgressGate({ vm: vm.name, policy, resolve, logPath: p.denials, fs: ctx.host.fs, clock: ctx.host.clock, debug: (m) => ctx.log.debug(m) });
        gates.set(vm.id, gate);
        try {
          await gate.listen(p.proxySock, p.dnsSock);
        } catch (e) {
          await closeGate(vm.id);
          throw e;
        }
      });
      const drop = async ({ vm }: { vm: VMRecord }) => {
        await closeGate(vm.id);
        const p = egressPaths(vm.runtime.vmDir);
        await ctx.host.fs.rmrf(p.proxySock);
        await ctx.host.fs.rmrf(p.dnsSock);
      };
      net.hook("vm:cleanup", drop);
      net.hook("vm:delete", drop);
    },
  });
}

export default createNetUserPlugin();
