// Shell completion: `banger completion bash|zsh|fish` prints a script that
// calls the hidden `banger __complete WORDS…`, which answers from the CLI's
// own command definitions (subcommands, options, positionals) and, for VM,
// session and image names, from a daemon that is already running — never
// starting one, and saying nothing when none answers in time.
import type { ArgsDef, CommandDef } from "citty";
import { defineCommand } from "./define.ts";
import { usage } from "./context.ts";
import { writeOut } from "../host/stdio.ts";
import BASH from "./completions/bash.sh" with { type: "text" };
import { FISH, ZSH } from "./completions/scripts.ts";

type AnyCmd = CommandDef<any>;
type ArgDef = ArgsDef[string] & { alias?: string | string[] };

/** Where names come from: a running daemon in the CLI, fixed lists in tests. Each returns [] when it cannot tell. */
export interface NameSource {
  vms(): Promise<string[]>;
  images(): Promise<string[]>;
  sessions(vm: string): Promise<string[]>;
  /** Snapshots as VM@SNAP (all, or one VM's). */
  snapshots?(vm?: string): Promise<string[]>;
}

/** Options every command takes (main.ts handles them before the command sees argv). */
const GLOBAL_OPTIONS = ["--help", "--quiet", "--verbose"];

/** Values an option can only take from a fixed set, or names from the daemon; others: none (the shell offers files). */
const OPTION_VALUES: Record<string, (src: NameSource) => Promise<string[]> | string[]> = {
  image: (src) => src.images(),
  vmm: () => ["qemu", "firecracker"],
  driver: () => ["qemu", "firecracker"],
  stdin: () => ["pipe", "closed"],
  net: () => ["user", "tap"],
  storage: () => ["dm", "copy"],
  from: (src) => src.snapshots?.() ?? [],
};

const resolve = async <T,>(v: T | (() => T | Promise<T>)): Promise<T> => (typeof v === "function" ? await (v as () => T | Promise<T>)() : v);
const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** The option a word names (`--name`, `--name=v`, `-a`), with its definition. */
function optionOf(defs: ArgsDef, word: string): { name: string; def: ArgDef; inline: boolean } | null {
  const [flag, ...rest] = word.split("=");
  const bare = flag!.replace(/^--?(no-)?/, "");
  for (const [name, def] of Object.entries(defs) as [string, ArgDef][]) {
    if (def.type === "positional") continue;
    const aliases = [def.alias ?? []].flat();
    if (bare === name || bare === kebab(name) || aliases.includes(bare)) return { name, def, inline: rest.length > 0 };
  }
  return null;
}

/** What kind of name a positional takes, from its name and the command it belongs to. */
function positionalKind(path: string[], argName: string): "vm" | "session" | "image" | "snapshot" | null {
  if (argName === "vm") return "vm";
  if (argName === "session") return "session";
  if (argName === "snapshot") return "snapshot";
  if (argName === "name" && path[0] === "image") return "image";
  if (argName === "name" && path[0] === "vm" && path[1] !== "create") return "vm"; // create takes a new name
  return null;
}

/**
 * The candidates for the last word of `words` (the words after `banger`,
 * the last one the word being completed, maybe ""), already filtered by it.
 */
export async function candidates(root: AnyCmd, words: string[], src: NameSource): Promise<string[]> {
  const cur = words.at(-1) ?? "";
  const before = words.slice(0, -1);
  if (before.includes("--")) return []; // the guest command: the shell's own completion
  let cmd = root;
  const path: string[] = [];
  const positionals: string[] = [];
  let pending: string | null = null; // an option whose value is the current word
  for (let i = 0; i < before.length; i++) {
    const w = before[i]!;
    const defs = ((await resolve(cmd.args)) ?? {}) as ArgsDef;
    if (w.startsWith("-") && w !== "-") {
      const o = optionOf(defs, w);
      if (o && o.def.type === "string" && !o.inline) {
        // bash splits `--image=d` at the =: its value is the word after the "="
        const eq = before[i + 1] === "=" ? 1 : 0;
        if (i + eq === before.length - 1) pending = o.name;
        else i += 1 + eq;
      }
      continue;
    }
    const subs = await resolve(cmd.subCommands);
    if (subs && Object.hasOwn(subs, w) && positionals.length === 0) {
      cmd = (await resolve(subs[w]!)) as AnyCmd;
      path.push(w);
      continue;
    }
    positionals.push(w);
  }
  const filter = (xs: string[]) => [...new Set(xs)].filter((x) => x.startsWith(cur)).sort();
  const defs = ((await resolve(cmd.args)) ?? {}) as ArgsDef;
  if (pending !== null) {
    if (pending === "name" && path.join(" ") === "vm run") return filter(await src.vms()); // run into an existing VM
    const values = OPTION_VALUES[pending];
    return values ? filter(await values(src)) : [];
  }
  // zsh and fish give `--image=d` as one word: its values, each with the option before it
  const inline = cur.startsWith("--") && cur.includes("=") ? optionOf(defs, cur) : null;
  if (inline && inline.def.type === "string") {
    const flag = cur.slice(0, cur.indexOf("=") + 1);
    const values = OPTION_VALUES[inline.name];
    return values ? filter((await values(src)).map((v) => flag + v)) : [];
  }
  if (cur.startsWith("-")) {
    const opts = (Object.entries(defs) as [string, ArgDef][])
      .filter(([, d]) => d.type !== "positional")
      .flatMap(([name, d]) => [`--${kebab(name)}`, ...[d.alias ?? []].flat().map((a) => (a.length === 1 ? `-${a}` : `--${a}`))]);
    return filter([...opts, ...GLOBAL_OPTIONS]);
  }
  const subs = await resolve(cmd.subCommands);
  if (subs && positionals.length === 0) {
    const names: string[] = [];
    for (const [name, sub] of Object.entries(subs)) {
      if (name.startsWith("_")) continue;
      // a lazy subcommand's meta is only known once loaded: only the loaded tree (the current level) is asked
      const meta = (await resolve(((await resolve(sub)) as AnyCmd).meta)) as { hidden?: boolean } | undefined;
      if (!meta?.hidden) names.push(name);
    }
    return filter(names);
  }
  const posNames = Object.entries(defs).filter(([, d]) => d.type === "positional").map(([n]) => n);
  const argName = posNames[positionals.length];
  if (!argName) return [];
  if (path.join(" ") === "completion") return filter(["bash", "zsh", "fish"]);
  const kind = positionalKind(path, argName);
  if (kind === "vm") return filter(await src.vms());
  if (kind === "image") return filter(await src.images());
  if (kind === "session" && positionals[0]) return filter(await src.sessions(positionals[0]));
  if (kind === "snapshot") {
    // `vm rollback VM SNAP` takes that VM's SNAP; `snapshot show|rm` a VM@SNAP
    const vm = path[0] === "vm" ? positionals[0] : undefined;
    const refs = (await src.snapshots?.(vm)) ?? [];
    return filter(vm ? refs.map((r) => r.slice(r.indexOf("@") + 1)) : refs);
  }
  return [];
}

/** Names from a daemon that is already up (never started from here), each ask given a short time. */
async function daemonNames(): Promise<NameSource> {
  const [{ DaemonClient }, { resolveHome }, { environ }] = await Promise.all([import("../client/daemon-client.ts"), import("../shared/paths.ts"), import("../host/config.ts")]);
  const c = new DaemonClient(resolveHome(environ()));
  const ask = async <T,>(p: Promise<T | null>, pick: (v: T) => string[]): Promise<string[]> => {
    const v = await p.catch(() => null);
    return v ? pick(v) : [];
  };
  return {
    vms: () => ask(c.peek("vmList"), (v) => v.vms.map((x) => x.name)),
    images: () => ask(c.peek("imageList"), (v) => v.images.map((x) => x.name)),
    sessions: (vm) => ask(c.peek("sessionList", { params: { vm } }), (v) => v.sessions.map((x) => x.name)),
    snapshots: (vm) => ask(c.peek("snapshotList", { query: vm ? { vm } : {} }), (v) => v.snapshots.map((x) => `${x.vmName}@${x.name}`)),
  };
}

/** `banger __complete WORDS…`: one candidate a line. Never fails loudly: a shell is waiting. */
export async function completeCommand(root: AnyCmd, words: string[]): Promise<void> {
  try {
    const out = await candidates(root, words, await daemonNames());
    if (out.length) writeOut(1, out.join("\n") + "\n");
  } catch {}
}

export default defineCommand({
  meta: { name: "completion", description: "Print a shell completion script: banger completion bash|zsh|fish (e.g. source <(banger completion bash))" },
  args: { shell: { type: "positional", required: true, description: "bash, zsh or fish" } },
  run({ args }) {
    const scripts: Record<string, string> = { bash: BASH, zsh: ZSH, fish: FISH };
    const script = scripts[args.shell];
    if (!script) usage(`unknown shell ${JSON.stringify(args.shell)}: use bash, zsh or fish`);
    writeOut(1, script);
  },
});
