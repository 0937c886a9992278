import { BangerError } from "../shared/errors.ts";
import type { PublishedPort, VMHandles, VMRecord, VMSpec } from "../shared/model.ts";
import type { VMMDriver } from "../vmm/driver.ts";
import type { HookHandler, HookMap, HookName, ProviderKind } from "./hooks.ts";

export type { ProviderKind };

/** The hooks whose payload names a VM: the ones a provider's handlers may take (they run for that VM's provider only). */
export type VMHookName = { [K in HookName]: HookMap[K] extends { vm: VMRecord } ? K : never }[HookName];

/**
 * Makes a VM's disks. A VM records the name of its storage provider in
 * `spec.storage` (chosen at create: `--storage NAME`, else the usable one
 * with the highest priority); only that provider's handlers run for it.
 */
export interface StorageProvider {
  /** What `--storage` and `spec.storage` name (e.g. "dm", "copy"). */
  readonly name: string;
  /** Shown by `banger plugin list`. */
  readonly description?: string;
  /** Preference when a VM names none: the usable provider with the highest priority wins (default 0; ties go to the first registered). */
  readonly priority?: number;
  /** Can it make this VM's disks on this host? Absent means always. A default choice skips an unusable one; asking for it by name is refused with the reason. */
  usable?(spec: VMSpec): Promise<{ usable: boolean; reason: string }>;
}

/**
 * Connects a VM to a network. A VM records its provider's name in
 * `spec.net` (`--net NAME`, else its VMM's default); only that provider's
 * handlers run for it.
 */
export interface NetProvider {
  /** What `--net` and `spec.net` name (e.g. "user", "tap"). */
  readonly name: string;
  readonly description?: string;
  /** VMM drivers it can serve (it fills their part of the boot config); absent means any. */
  readonly drivers?: readonly string[];
  /**
   * Never a default: only a VM that names it (`--net`) or whose VMM lists it
   * first (VMMDriver.nets) gets it. For networks that need privileges or
   * change the host (tap).
   */
  readonly optIn?: boolean;
  /** How it publishes guest ports to the host (`--publish`, `vm port`); absent: a VM on it cannot publish any. */
  readonly ports?: NetPorts;
}

/**
 * A network's published ports on a running VM. The engine calls `open` for
 * each of the VM's ports after every launch, for one added at run time, and
 * after a daemon restart for those `live` does not list; `close` on `vm port rm`.
 */
export interface NetPorts {
  /**
   * Make `port` reachable from the host now: set `port.boundPort` (the host
   * port forwarding to it; pick a free one when `hostPort` is 0, the earlier
   * `boundPort` first) and `port.reach`. A host port already in use is a
   * BangerError E_PORT_IN_USE with one line naming it.
   */
  open(vm: VMRecord, handles: VMHandles, port: PublishedPort): Promise<void>;
  /** Stop forwarding it (a forward already gone is no error). */
  close(vm: VMRecord, handles: VMHandles, port: PublishedPort): Promise<void>;
  /** The forwards the VM has right now (a VMM outlives the daemon): those are kept, not opened twice. Absent: `open` is safe to repeat. */
  live?(vm: VMRecord, handles: VMHandles): Promise<Pick<PublishedPort, "proto" | "hostIP" | "boundPort">[]>;
}

/** What registering a provider hands back: hooks that run only for the VMs that chose it. */
export interface ProviderHooks {
  /**
   * Handle `name` for the VMs whose spec names this provider. They run after
   * the hook's "pre" handlers and before its ordinary ones (storage first,
   * then net), whatever the plugin's load order. Returns its unregister function.
   */
  hook<K extends VMHookName>(name: K, handler: HookHandler<K>): () => void;
}

interface Entry<P> {
  plugin: string;
  provider: P;
}

/** The storage and network providers plugins registered, by name; how a new VM chooses its own. */
export class Providers {
  readonly storage = new Map<string, Entry<StorageProvider>>();
  readonly net = new Map<string, Entry<NetProvider>>();

  add(kind: "storage", plugin: string, provider: StorageProvider): void;
  add(kind: "net", plugin: string, provider: NetProvider): void;
  add(kind: ProviderKind, plugin: string, provider: StorageProvider | NetProvider): void {
    const map: Map<string, Entry<StorageProvider | NetProvider>> = this[kind];
    if (typeof provider?.name !== "string" || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(provider.name)) {
      throw new BangerError("E_PLUGIN", `${plugin}: bad ${kind} provider name ${JSON.stringify(provider?.name)}: 1-32 of [a-z0-9_-]`);
    }
    const had = map.get(provider.name);
    if (had) throw new BangerError("E_PLUGIN", `${plugin}: ${kind} provider "${provider.name}" is already registered by ${had.plugin}`);
    map.set(provider.name, { plugin, provider });
  }

  /** The names of one kind, in registration order. */
  names(kind: ProviderKind): string[] {
    return [...this[kind].keys()];
  }

  /**
   * The networks a VM on `driver` can use: the driver's own list
   * (VMMDriver.nets) in its order where it has one, else every provider in
   * registration order; either way only providers that serve it.
   */
  netsFor(driverName: string, driver: VMMDriver | undefined): string[] {
    const serves = (n: string) => {
      const p = this.net.get(n)?.provider;
      return !!p && (p.drivers === undefined || p.drivers.includes(driverName));
    };
    return (driver?.nets ?? this.names("net")).filter(serves);
  }

  /** The network a VM on `driver` gets when it names none: the first the driver lists, else the first usable one that is not opt-in. */
  defaultNet(driverName: string, driver: VMMDriver | undefined): string | undefined {
    const nets = this.netsFor(driverName, driver);
    return driver?.nets ? nets[0] : nets.find((n) => !this.net.get(n)!.provider.optIn);
  }

  /**
   * The storage provider for a new VM: the one asked for, if it is loaded
   * and usable for this VM, else the usable one with the highest priority.
   */
  async chooseStorage(spec: VMSpec, requested: string | undefined, log?: (m: string) => void): Promise<string> {
    const known = () => this.names("storage").join(", ") || "none";
    if (requested !== undefined) {
      const e = this.storage.get(requested);
      if (!e) throw new BangerError("E_BAD_REQUEST", `unknown storage ${JSON.stringify(requested).slice(0, 80)} (known: ${known()})`);
      const u = await _usable(e.provider, { ...spec, storage: requested });
      if (!u.usable) throw new BangerError("E_BAD_REQUEST", `storage ${requested} cannot be used for this vm: ${u.reason}`);
      return requested;
    }
    // stable sort: equal priorities keep registration order
    const ranked = [...this.storage.values()].sort((a, b) => (b.provider.priority ?? 0) - (a.provider.priority ?? 0));
    const skipped: string[] = [];
    for (const { provider } of ranked) {
      const u = await _usable(provider, { ...spec, storage: provider.name });
      if (u.usable) {
        if (skipped.length) log?.(`storage ${provider.name} (${skipped.join("; ")})`);
        return provider.name;
      }
      skipped.push(`${provider.name}: ${u.reason}`);
    }
    throw new BangerError("E_BAD_REQUEST", this.storage.size ? `no storage provider can make this vm's disks (${skipped.join("; ")})` : "no storage provider is loaded");
  }
}

async function _usable(p: StorageProvider, spec: VMSpec): Promise<{ usable: boolean; reason: string }> {
  return p.usable ? p.usable(spec) : { usable: true, reason: "" };
}
