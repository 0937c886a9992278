import { isAbsolute, join, resolve, dirname } from "node:path";
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { DaemonPaths } from "../shared/paths.ts";
import { configFrom, environ, type Env } from "../host/config.ts";
import type { FS } from "../host/types.ts";
import { DEFAULT_EGRESS, formatEgress, parseEgress } from "../shared/egress.ts";

/**
 * Where user plugins come from, in load order: config.json / banger.config.ts
 * in BANGER_HOME (`{ plugins: ["./x.ts"] }`), *.ts|*.js files in
 * BANGER_HOME/plugins/, BANGER_PLUGINS (colon separated), then --plugin.
 */
export async function userPluginPaths(paths: DaemonPaths, fs: FS, extra: string[], env: Env = environ()): Promise<string[]> {
  const out: string[] = [];
  const fromConfig = (list: unknown, base: string, what: string) => {
    if (list === undefined) return;
    if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) throw new BangerError("E_PLUGIN", `${what}: "plugins" must be a list of paths`);
    for (const p of list as string[]) out.push(isAbsolute(p) ? p : resolve(base, p));
  };
  const jsonText = await fs.readText(paths.configJson);
  if (jsonText !== null) {
    let cfg: { plugins?: unknown };
    try {
      cfg = JSON.parse(jsonText);
    } catch (e) {
      throw new BangerError("E_PLUGIN", `${paths.configJson}: ${errorMessage(e)}`);
    }
    fromConfig(cfg.plugins, dirname(paths.configJson), paths.configJson);
  }
  if (await fs.exists(paths.configTs)) {
    let mod: { default?: { plugins?: unknown } };
    try {
      mod = await import(paths.configTs);
    } catch (e) {
      throw new BangerError("E_PLUGIN", `${paths.configTs}: ${errorMessage(e)}`);
    }
    fromConfig(mod.default?.plugins, dirname(paths.configTs), paths.configTs);
  }
  const dirEntries = (await fs.list(paths.pluginsDir)).map((e) => e.name);
  for (const f of dirEntries.sort()) if (/\.(ts|js|mjs)$/.test(f)) out.push(join(paths.pluginsDir, f));
  for (const p of (configFrom(env).plugins ?? "").split(":").filter(Boolean)) out.push(resolve(p));
  for (const p of extra) out.push(resolve(p));
  return [...new Set(out)];
}

/** config.json's `egress`: the policy of a VM created without `--egress` (checked here, so a typo stops the daemon with its reason). */
export async function defaultEgress(paths: DaemonPaths, fs: FS): Promise<string> {
  const text = await fs.readText(paths.configJson);
  if (text === null) return DEFAULT_EGRESS;
  let cfg: { egress?: unknown };
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new BangerError("E_PLUGIN", `${paths.configJson}: ${errorMessage(e)}`);
  }
  if (cfg.egress === undefined) return DEFAULT_EGRESS;
  if (typeof cfg.egress !== "string") throw new BangerError("E_BAD_REQUEST", `${paths.configJson}: "egress" must be a string (none, all or a comma-separated list)`);
  try {
    return formatEgress(parseEgress(cfg.egress));
  } catch (e) {
    throw new BangerError("E_BAD_REQUEST", `${paths.configJson}: ${errorMessage(e)}`);
  }
}

/**
 * Whether the daemon makes a warm-start template after an image's first cold
 * boot at a shape: BANGER_AUTO_WARM (`0`/`1`) over config.json's `autoWarm`
 * (a boolean), on by default.
 */
export async function autoWarmEnabled(paths: DaemonPaths, fs: FS, env: Env = environ()): Promise<boolean> {
  const forced = configFrom(env).autoWarm;
  if (forced === "0" || forced === "1") return forced === "1";
  const text = await fs.readText(paths.configJson);
  if (text === null) return true;
  let cfg: { autoWarm?: unknown };
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new BangerError("E_PLUGIN", `${paths.configJson}: ${errorMessage(e)}`);
  }
  if (cfg.autoWarm === undefined) return true;
  if (typeof cfg.autoWarm !== "boolean") throw new BangerError("E_BAD_REQUEST", `${paths.configJson}: "autoWarm" must be true or false`);
  return cfg.autoWarm;
}
