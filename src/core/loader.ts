import type { LoadedPlugin } from "../shared/api.ts";
import { writeHandlesFile } from "../handles/file.ts";
import { resolve } from "node:path";
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { HookEngine } from "./hooks.ts";
import type { BangerPaths, BangerPlugin, GuestConnector, Logger, PluginContext, PluginStoreView } from "./plugin.ts";
import type { GuestSSH, Host } from "../host/types.ts";
import type { VMRecord } from "../shared/model.ts";
import type { VMMDriver } from "../vmm/driver.ts";
import type { ProviderHooks, ProviderKind, Providers } from "./providers.ts";

export type { LoadedPlugin };

export interface LoaderDeps {
  hooks: HookEngine;
  host: Host;
  paths: BangerPaths;
  log: Logger;
  store: PluginStoreView;
  drivers: Map<string, VMMDriver>;
  /** Storage and network providers, by name (the engine chooses a new VM's from here). */
  providers: Providers;
  /** The daemon's SSH pool taking a connection a plugin made (ctx.adoptSSH); absent, the connection is closed. */
  adoptSSH?: (vm: VMRecord, conn: GuestSSH) => void;
  /** The daemon's SSH pool taking another way to reach a guest (ctx.connectGuest); absent, it is never asked. */
  addGuestConnector?: (connect: GuestConnector) => void;
}

function isPlugin(v: unknown): v is BangerPlugin {
  return !!v && typeof v === "object" && typeof (v as BangerPlugin).name === "string" && typeof (v as BangerPlugin).setup === "function";
}

/** What Bun's build of a plugin file said, with where: "3 errors building x.ts" alone told the user nothing. */
function _buildErrors(e: unknown): string {
  const list: unknown[] = e instanceof AggregateError && e.errors.length ? e.errors : [e];
  const one = (x: unknown) => {
    const p = (x as { position?: { line?: number; column?: number; lineText?: string } } | null)?.position;
    return p?.line ? `${errorMessage(x)} (line ${p.line}:${p.column ?? 0}: ${(p.lineText ?? "").trim().slice(0, 80)})` : errorMessage(x);
  };
  return list.slice(0, 3).map(one).join("; ") + (list.length > 3 ? `; and ${list.length - 3} more` : "");
}

/** Import a user's plugin file (works from the compiled binary too). */
export async function importPluginFile(path: string): Promise<BangerPlugin> {
  const abs = resolve(path);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(abs)) as Record<string, unknown>;
  } catch (e) {
    throw new BangerError("E_PLUGIN", `cannot load plugin ${abs}: ${_buildErrors(e)}`, { cause: e });
  }
  const plugin = mod.default ?? mod.plugin;
  if (!isPlugin(plugin)) {
    throw new BangerError("E_PLUGIN", `plugin ${abs} must \`export default definePlugin({ name, setup(ctx) {…} })\``);
  }
  return plugin;
}

/** Set up plugins in order (built-ins first, then the user's), each with the same public context. */
export async function setupPlugins(plugins: { plugin: BangerPlugin; source: string }[], deps: LoaderDeps): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  const seen = new Set<string>();
  for (const { plugin, source } of plugins) {
    if (seen.has(plugin.name)) throw new BangerError("E_PLUGIN", `two plugins are named "${plugin.name}" (second from ${source})`);
    seen.add(plugin.name);
    // a built-in's refusals and failures are written for the user; a user's plugin is named in its errors
    if (source === "builtin") deps.hooks.speaksForItself(plugin.name);
    const info: LoadedPlugin = { name: plugin.name, description: plugin.description ?? "", source, hooks: [], drivers: [], storage: [], nets: [] };
    const scoped = (kind: ProviderKind, name: string): ProviderHooks => ({
      hook(hookName, handler) {
        const off = deps.hooks.hookFor(plugin.name, { kind, name }, hookName, handler);
        info.hooks.push(hookName);
        return off;
      },
    });
    const ctx: PluginContext = {
      name: plugin.name,
      host: deps.host,
      paths: deps.paths,
      log: prefixLogger(deps.log, plugin.name),
      store: deps.store,
      hook(name, handler, opts) {
        const off = deps.hooks.hook(plugin.name, name, handler, opts);
        info.hooks.push(name);
        return off;
      },
      saveHandles(vm, handles) {
        return writeHandlesFile(deps.host.fs, vm.runtime.vmDir, handles);
      },
      adoptSSH(vm, conn) {
        if (deps.adoptSSH) deps.adoptSSH(vm, conn);
        else conn.close();
      },
      connectGuest(connect) {
        deps.addGuestConnector?.(connect);
      },
      registerDriver(driver: VMMDriver) {
        if (deps.drivers.has(driver.name)) throw new BangerError("E_PLUGIN", `${plugin.name}: driver "${driver.name}" is already registered`);
        deps.drivers.set(driver.name, driver);
        info.drivers.push(driver.name);
      },
      registerStorage(provider) {
        deps.providers.add("storage", plugin.name, provider);
        info.storage.push(provider.name);
        return scoped("storage", provider.name);
      },
      registerNet(provider) {
        deps.providers.add("net", plugin.name, provider);
        info.nets.push(provider.name);
        return scoped("net", provider.name);
      },
    };
    try {
      await plugin.setup(ctx);
    } catch (e) {
      if (e instanceof BangerError) throw e;
      throw new BangerError("E_PLUGIN", `${plugin.name}: setup failed: ${errorMessage(e)}`, { cause: e });
    }
    loaded.push(info);
  }
  return loaded;
}

function prefixLogger(log: Logger, name: string): Logger {
  return {
    info: (m) => log.info(`[${name}] ${m}`),
    warn: (m) => log.warn(`[${name}] ${m}`),
    error: (m) => log.error(`[${name}] ${m}`),
    debug: (m) => log.debug(`[${name}] ${m}`),
  };
}
