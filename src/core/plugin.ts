import type { Logger } from "../shared/logger.ts";
import type { HookHandler, HookName, HookOptions } from "./hooks.ts";
import type { ImageRecord, VMHandles, VMRecord } from "../shared/model.ts";
import type { GuestSSH, Host } from "../host/types.ts";
import type { VMMDriver } from "../vmm/driver.ts";
import type { LeaseStore } from "../shared/leases.ts";
import type { BangerPaths } from "../shared/paths.ts";
import type { NetProvider, ProviderHooks, StorageProvider } from "./providers.ts";

export type { Logger };

export type { BangerPaths };

/** Read access to the store that plugins may need (e.g. to pick a free port). */
export interface PluginStoreView {
  listVMs(): VMRecord[];
  getImage(name: string): ImageRecord | null;
  /** Per-VM values from named pools (e.g. guest IPs), unique under concurrent creates. The daemon always provides it. */
  leases?: LeaseStore;
}

/** A command-line-free extension point: what a plugin's setup receives. */
export interface PluginContext {
  readonly name: string;
  readonly host: Host;
  readonly paths: BangerPaths;
  readonly log: Logger;
  readonly store: PluginStoreView;
  /** Register a hook handler; returns its own unregister function. */
  hook<K extends HookName>(name: K, handler: HookHandler<K>, opts?: HookOptions): () => void;
  /**
   * Record a VM's handles in VMDir/handles.json now (atomically). For a plugin
   * that acquires kernel state in vm:start:before, so a crash before the VMM
   * launches still leaves a file reconcile can tear down from.
   */
  saveHandles(vm: VMRecord, handles: VMHandles): Promise<void>;
  /**
   * Hand the daemon's SSH pool an open connection to a VM's guest, made with
   * the VM's own client key and pinned host key (what the pool would dial):
   * its next user (the first `vm exec`) needs no handshake of its own. The
   * pool owns it from now on; without a pool it is closed.
   */
  adoptSSH(vm: VMRecord, conn: GuestSSH): void;
  /**
   * Offer the daemon's SSH pool another way to reach a running VM's guest
   * when it holds no connection to it (after a daemon restart, say): the
   * guest plugin's exec agent. `connect` returns a connection for the VM
   * (commands as its SSH would run them), or null to leave it to the next
   * connector (in the order plugins offered them) and, last, the pool's SSH
   * dial. Without a pool it is never asked.
   */
  connectGuest(connect: GuestConnector): void;
  /** Make a VMM driver available under driver.name. */
  registerDriver(driver: VMMDriver): void;
  /**
   * Offer VM disks under provider.name (`--storage NAME`; a VM with none
   * named gets the usable one with the highest priority). Handlers added
   * through the returned `hook` run only for the VMs that chose it.
   */
  registerStorage(provider: StorageProvider): ProviderHooks;
  /** Offer a network under provider.name (`--net NAME`); handlers added through the returned `hook` run only for the VMs that chose it. */
  registerNet(provider: NetProvider): ProviderHooks;
}

/** See PluginContext.connectGuest: `handles` are the VM's recorded ones (its VMM's pid among them). */
export type GuestConnector = (vm: VMRecord, handles: VMHandles) => Promise<GuestSSH | null>;

export interface BangerPlugin {
  name: string;
  /** Shown by `banger plugin list`. */
  description?: string;
  setup(ctx: PluginContext): void | Promise<void>;
}

/** Identity helper for typing: `export default definePlugin({ name, setup(ctx) { … } })`. */
export function definePlugin(plugin: BangerPlugin): BangerPlugin {
  return plugin;
}
