// Published ports: the VM record keeps what was asked (spec.ports); the VM's
// network provider (NetProvider.ports) makes each one reachable on the
// running VM. Here: when that happens, and the bookkeeping around it.
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { PublishedPort, VMHandles, VMRecord } from "../shared/model.ts";
import { formatPort, matchPorts, parsePortSpec, samePort } from "../shared/ports.ts";
import type { NetPorts, Providers } from "./providers.ts";

/** The port capability of the VM's network, or a one-line refusal. */
export function portsOf(providers: Providers, vm: Pick<VMRecord, "spec">): NetPorts {
  const net = vm.spec.net ?? "user";
  const ports = providers.net.get(net)?.provider.ports;
  if (!ports) throw new BangerError("E_BAD_REQUEST", `network ${net} cannot publish ports (loaded networks that can: ${_withPorts(providers) || "none"})`);
  return _attributed(net, ports);
}

/** A plugin's plain Error becomes one line naming the network, like a hook's does. */
function _attributed(net: string, ports: NetPorts): NetPorts {
  const wrap = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof BangerError) throw e;
      throw new BangerError("E_PLUGIN", `net ${net}: ports ${what}: ${errorMessage(e)}`, { cause: e });
    }
  };
  const live = ports.live?.bind(ports);
  return {
    open: (vm, h, p) => wrap("open", () => ports.open(vm, h, p)),
    close: (vm, h, p) => wrap("close", () => ports.close(vm, h, p)),
    ...(live ? { live: (vm: VMRecord, h: VMHandles) => wrap("live", () => live(vm, h)) } : {}),
  };
}

function _withPorts(providers: Providers): string {
  return providers.names("net").filter((n) => providers.net.get(n)?.provider.ports).join(", ");
}

/** `--publish` values checked and parsed for a new VM (none: no capability needed). */
export function parsePublish(providers: Providers, net: string, specs: readonly string[] | undefined): PublishedPort[] {
  const ports: PublishedPort[] = [];
  for (const s of specs ?? []) {
    const p = parsePortSpec(s);
    _refuseDuplicate(ports, p);
    ports.push(p);
  }
  if (ports.length) portsOf(providers, { spec: { net } as VMRecord["spec"] });
  return ports;
}

function _refuseDuplicate(ports: readonly PublishedPort[], p: PublishedPort): void {
  const clash = ports.find((q) => samePort(q, p) || (p.hostPort !== 0 && q.proto === p.proto && q.hostIP === p.hostIP && (q.hostPort === p.hostPort || q.boundPort === p.hostPort)));
  if (!clash) return;
  // the same guest port on any host port: the host port is the one a listing shows for it
  if (p.hostPort === 0) throw new BangerError("E_CONFLICT", `guest port ${p.guestPort}/${p.proto} is already published on ${p.hostIP}`);
  throw new BangerError("E_CONFLICT", `${p.hostIP}:${p.hostPort}/${p.proto} is already published (${formatPort(clash)})`);
}

/** Open every published port of a just-launched VM; the first that cannot be opened fails the start (its undos stop the VM, and its forwards with it). */
export async function openAll(ports: NetPorts, vm: VMRecord, handles: VMHandles): Promise<void> {
  for (const p of vm.spec.ports ?? []) await ports.open(vm, handles, p);
}

/** After a daemon restart: keep the forwards the VMM still has, open the others. Returns one line per port that could not be opened. */
export async function reopen(ports: NetPorts, vm: VMRecord, handles: VMHandles): Promise<string[]> {
  const live = ports.live ? await ports.live(vm, handles) : [];
  const failures: string[] = [];
  for (const p of vm.spec.ports ?? []) {
    if (p.boundPort && live.some((l) => l.proto === p.proto && l.hostIP === p.hostIP && l.boundPort === p.boundPort)) continue;
    try {
      await ports.open(vm, handles, p);
    } catch (e) {
      p.reach = [];
      failures.push(`port ${formatPort(p)}: ${errorMessage(e)}`);
    }
  }
  return failures;
}

/** What a stopped VM shows: nothing is reachable, the bound port is kept as the next start's first choice. */
export function markStopped(vm: VMRecord): void {
  for (const p of vm.spec.ports ?? []) p.reach = [];
}

/** Publish one more port: opened now when the VM runs, else at its next start. Returns the new port as it stands. */
export async function addPort(ports: NetPorts, vm: VMRecord, handles: VMHandles | null, spec: string): Promise<PublishedPort> {
  const p = parsePortSpec(spec);
  const list = vm.spec.ports ?? [];
  _refuseDuplicate(list, p);
  if (handles) await ports.open(vm, handles, p);
  vm.spec.ports = [...list, p];
  return p;
}

/** Unpublish what `what` names (a guest port, or a spec); closed now when the VM runs. Returns the ports removed. */
export async function removePorts(ports: NetPorts, vm: VMRecord, handles: VMHandles | null, what: string): Promise<PublishedPort[]> {
  const list = vm.spec.ports ?? [];
  const gone = matchPorts(list, what);
  if (gone.length === 0) {
    throw new BangerError("E_NOT_FOUND", `vm ${vm.name} publishes no port matching ${JSON.stringify(what).slice(0, 80)} (published: ${list.map(formatPort).join(", ") || "none"})`);
  }
  for (const p of gone) {
    if (handles) await ports.close(vm, handles, p);
    p.reach = [];
    // one at a time: a later close failing leaves the earlier ones removed, as they are
    vm.spec.ports = (vm.spec.ports ?? []).filter((q) => q !== p);
  }
  return gone;
}
