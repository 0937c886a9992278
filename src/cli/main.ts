import type { ArgsDef, CommandDef } from "citty";
import { BangerError } from "../shared/errors.ts";
import { FULL_VERSION } from "../version.ts";
import { exitIfBrokenPipe, fail, jsonErrorsOnStderr, passthrough } from "./context.ts";
import { defineCommand } from "./define.ts";
import { setVerbosity } from "./log.ts";
import { fdIsTTY, onOutputError, writeOut } from "../host/stdio.ts";
import { setEnvDefault } from "../host/config.ts";
import { mark } from "../host/profile.ts";

/**
 * citty, loaded only for what needs it: usage text and the argument shapes
 * simpleArgs leaves to it. Its colours are decided when it loads, so NO_COLOR
 * is settled first (and the terminal check costs nothing on the fast path).
 */
async function _citty(): Promise<typeof import("citty")> {
  if (!fdIsTTY(1)) setEnvDefault("NO_COLOR", "1");
  return import("citty");
}

export const main = defineCommand({
  meta: { name: "banger", version: FULL_VERSION, description: "Linux microVMs with a shell, sessions and your git workspace inside" },
  // global: taken off the command line by run() wherever they stand (before `--`); listed here for --help
  args: {
    quiet: { type: "boolean", description: "Only errors and warnings on stderr (no progress)" },
    verbose: { type: "boolean", description: "Also say what happens behind the scenes (daemon start/replace); same as BANGER_DEBUG=1" },
  },
  subCommands: {
    vm: () => import("./vm.ts").then((m) => m.default),
    image: () => import("./image.ts").then((m) => m.default),
    session: () => import("./session.ts").then((m) => m.default),
    workspace: () => import("./workspace.ts").then((m) => m.default),
    snapshot: () => import("./snapshot.ts").then((m) => m.default),
    e2b: () => import("./e2b.ts").then((m) => m.default),
    daemon: () => import("./daemon.ts").then((m) => m.default),
    plugin: () => import("./plugin.ts").then((m) => m.default),
    doctor: () => import("./doctor.ts").then((m) => m.default),
    version: () => import("./version-cmd.ts").then((m) => m.default),
    completion: () => import("./complete.ts").then((m) => m.default),
  },
});

type AnyCmd = CommandDef<any>;
const resolve = async <T,>(v: T | (() => T | Promise<T>)): Promise<T> => (typeof v === "function" ? await (v as () => T | Promise<T>)() : v);

/** Walk argv down the subcommand tree; returns the leaf, its parent and the words left. */
async function leafOf(cmd: AnyCmd, args: string[]): Promise<{ cmd: AnyCmd; parent?: AnyCmd; rest: string[]; path: string[] }> {
  let cur = cmd;
  let parent: AnyCmd | undefined;
  const path: string[] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith("-")) break;
    const subs = await resolve(cur.subCommands);
    if (!subs || !Object.hasOwn(subs, a)) break;
    parent = cur;
    cur = (await resolve(subs[a]!)) as AnyCmd;
    path.push(a);
  }
  return { cmd: cur, parent, rest: args.slice(i), path };
}

const _kebab = (name: string) => name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/**
 * The leaf's arguments when the words are of the plainest shape: positionals
 * and boolean flags spelled `--name` (or its kebab form). That is what
 * citty's parser gives for them, without loading it (node:util: ~1.5 ms).
 * Anything else (strings, `=`, `--no-`, short aliases, defaults, required
 * flags, a missing required positional) is null: citty parses it, and
 * reports its errors.
 */
export function simpleArgs(defs: ArgsDef, rest: string[], tail: string[] = []): Record<string, unknown> | null {
  const flags = new Map<string, string>();
  const positional: { name: string; required: boolean }[] = [];
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "positional") positional.push({ name, required: def.required !== false && def.default === undefined });
    else if (def.required) return null; // a required flag is a string one can only give as `--x v`: citty's
    else if (def.type === "boolean") {
      if (def.default !== undefined) return null;
      flags.set(name, name);
      flags.set(_kebab(name), name);
    } else if ("default" in def && def.default !== undefined) return null;
  }
  const args: Record<string, unknown> = { _: [] as string[] };
  const words: string[] = [];
  for (const a of rest) {
    if (!a.startsWith("-")) {
      words.push(a);
      continue;
    }
    const name = a.startsWith("--") ? flags.get(a.slice(2)) : undefined;
    if (!name) return null;
    args[name] = true;
  }
  // after `--`: words whatever they look like (`vm cp -- -dash box:/tmp/`)
  words.push(...tail);
  args._ = [...words];
  for (const p of positional) {
    const w = words.shift();
    if (w === undefined && p.required) return null;
    args[p.name] = w;
  }
  return args;
}

/** Every spelling of an option that takes a value (`--name`, its kebab form, aliases) → a long form of it. */
function _valueOptions(defs: ArgsDef): Map<string, string> {
  const m = new Map<string, string>();
  for (const [name, def] of Object.entries(defs)) {
    if (def.type !== "string") continue;
    m.set(`--${name}`, `--${name}`).set(`--${_kebab(name)}`, `--${_kebab(name)}`);
    for (const a of [def.alias ?? []].flat()) m.set(a.length === 1 ? `-${a}` : `--${a}`, `--${name}`);
  }
  return m;
}

/**
 * `--depth -1`: an option that takes a value, followed by a negative number,
 * takes it (as `--depth=-1`), so the command's own check says what range it
 * wants instead of "unknown option -1".
 */
export function joinNegativeValues(defs: ArgsDef, words: string[]): string[] {
  // written long: citty reads `-u=-1` as the value "=-1"
  const takesValue = _valueOptions(defs);
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const next = words[i + 1];
    const long = takesValue.get(w);
    if (long && next !== undefined && /^-\d/.test(next)) {
      out.push(`${long}=${next}`);
      i++;
    } else out.push(w);
  }
  return out;
}

/** citty accepts any flag; we reject the ones a command doesn't define, so typos fail loudly (exit 2). */
async function checkFlags(cmd: AnyCmd, rest: string[], path: string[]): Promise<void> {
  const defs = ((await resolve(cmd.args)) ?? {}) as Record<string, { type?: string; alias?: string | string[] }>;
  const known = new Set<string>();
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "positional") continue;
    known.add(name);
    known.add(name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()));
    for (const a of [def.alias ?? []].flat()) known.add(a);
  }
  const subs = await resolve(cmd.subCommands);
  // an unknown command first: `banger vm bogus --json` is about "bogus", not about --json
  if (subs && Object.keys(subs).length && !cmd.run) {
    const word = rest.find((a) => !a.startsWith("-"));
    const where = path.length ? `banger ${path.join(" ")}` : "banger";
    if (word && !Object.hasOwn(subs, word)) throw new BangerError("E_USAGE", `unknown command "${word}" for \`${where}\` (try: ${Object.keys(subs).join(", ")})`);
    if (!word && !rest.some((a) => a.startsWith("-") && a !== "--help" && a !== "-h")) {
      await (await _citty()).showUsage(cmd, undefined); // a bare `banger` or `banger vm` asks what there is: show it
      throw new BangerError("E_USAGE", `\`${where}\` needs a subcommand: ${Object.keys(subs).join(", ")}`);
    }
  }
  for (const a of rest) {
    if (!a.startsWith("-") || a === "-") continue;
    const name = a.replace(/^--?(no-)?/, "").split("=")[0]!;
    if (!known.has(name)) {
      const where = path.length ? `banger ${path.join(" ")}` : "banger";
      throw new BangerError("E_USAGE", `unknown option ${a} for \`${where}\` (see \`${where} --help\`)`);
    }
  }
}

/** The commands whose words after `--` are a command (or names) of their own: passthrough.argv. */
const _TAKES_A_COMMAND = new Set(["vm exec", "vm run", "vm ssh", "vm fork", "session start"]);
/** The commands whose stdout is a guest command's output: their --json result and errors go to stderr. */
const _OWN_STDOUT = new Set(["vm exec", "vm run", "vm ssh"]);
/** The commands that take any number of words after their positionals (`vm fork VM NEW…`). */
const _VARIADIC = new Set(["vm fork"]);

/**
 * A word more than the command's positionals is an error, not dropped:
 * `vm delete a b` deleted a and said nothing of b. Option values (`--name
 * x`, `-u x`) are not words; a `=` form carries its own.
 */
export function extraWord(defs: ArgsDef, rest: string[], tail: string[]): string | null {
  const valued = _valueOptions(defs);
  const positionals = Object.values(defs).filter((d) => d.type === "positional").length;
  const words: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === "-" || !a.startsWith("-")) words.push(a);
    else if (valued.has(a)) i++;
  }
  words.push(...tail);
  return words.length > positionals ? words[positionals]! : null;
}

export async function run(argv: string[]): Promise<void> {
  if (argv[0] === "__complete") {
    // hidden, for the completion scripts: the words as the shell split them, `--` and all
    await (await import("./complete.ts")).completeCommand(main, argv.slice(1));
    return;
  }
  const dd = argv.indexOf("--");
  let head = dd >= 0 ? argv.slice(0, dd) : argv;
  const verbose = head.includes("--verbose");
  if (verbose || head.includes("--quiet")) {
    setVerbosity(verbose ? "verbose" : "quiet");
    head = head.filter((a) => a !== "--quiet" && a !== "--verbose");
  }
  passthrough.argv = dd >= 0 ? argv.slice(dd + 1) : [];
  const json = head.includes("--json");
  // a write that fails later than its call (a stream's buffered bytes); the streams are built only when used
  onOutputError(exitIfBrokenPipe);
  try {
    if (head.length === 1 && (head[0] === "--version" || head[0] === "-v")) {
      writeOut(1, `banger ${FULL_VERSION}\n`);
      return;
    }
    const leaf = await leafOf(main, head);
    if (_OWN_STDOUT.has(leaf.path.join(" "))) jsonErrorsOnStderr();
    if (head.includes("--help") || head.includes("-h")) {
      // name the whole path in USAGE ("banger session start"), not just the last parent
      const parent = leaf.path.length ? ({ meta: { name: ["banger", ...leaf.path.slice(0, -1)].join(" ") } } as AnyCmd) : undefined;
      await (await _citty()).showUsage(leaf.cmd, parent);
      return;
    }
    // `--` hands what follows to a command that runs one (vm exec …); for any other it ends the options
    const tail = dd >= 0 && !_TAKES_A_COMMAND.has(leaf.path.join(" ")) ? passthrough.argv : [];
    if (tail.length) passthrough.argv = [];
    if (leaf.rest.some((w) => /^-\d/.test(w))) {
      const rest = joinNegativeValues(((await resolve(leaf.cmd.args)) ?? {}) as ArgsDef, leaf.rest);
      head = [...head.slice(0, head.length - leaf.rest.length), ...rest];
      leaf.rest = rest;
    }
    await checkFlags(leaf.cmd, leaf.rest, leaf.path);
    if (leaf.cmd.run && !_VARIADIC.has(leaf.path.join(" "))) {
      const defs = ((await resolve(leaf.cmd.args)) ?? {}) as ArgsDef;
      const extra = extraWord(defs, leaf.rest, tail);
      if (extra !== null) {
        const where = leaf.path.length ? `banger ${leaf.path.join(" ")}` : "banger";
        const takes = Object.entries(defs).filter(([, d]) => d.type === "positional").map(([n]) => n.toUpperCase());
        throw new BangerError("E_USAGE", `unexpected argument ${JSON.stringify(extra).slice(0, 80)} for \`${where}\` (it takes ${takes.length ? takes.join(" ") : "none"}; see \`${where} --help\`)`);
      }
    }
    const args = leaf.cmd.run ? simpleArgs((await resolve(leaf.cmd.args)) ?? {}, leaf.rest, tail) : null;
    if (args) {
      mark("args parsed");
      await leaf.cmd.run!({ rawArgs: leaf.rest, args: args as never, cmd: leaf.cmd });
      return;
    }
    const citty = await _citty();
    mark("citty loaded");
    await citty.runCommand(main, { rawArgs: tail.length ? [...head, "--", ...tail] : head });
  } catch (e) {
    if (e instanceof Error && e.name === "CLIError") fail(new BangerError("E_USAGE", e.message.replace(/\x1b\[[0-9;]*m/g, "")), json);
    fail(e, json);
  }
}

