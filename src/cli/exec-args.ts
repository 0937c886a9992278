// The options `vm exec`, `vm run` and `session start` share (Docker's
// spelling): -e/--env, --env-file, -w/--cwd, -u/--user, --timeout.
import { environ } from "../host/config.ts";
import { BangerError } from "../shared/errors.ts";
import { checkExecOptions, envArg, parseDuration, parseEnvFile, type ExecOptions } from "../shared/exec-options.ts";

export const execArgs = {
  env: { type: "string", alias: "e", description: "Set an environment variable: KEY=VALUE, or KEY to pass on its value here (repeatable)" },
  "env-file": { type: "string", description: "Read KEY=VALUE lines from a file (# comments, blank lines; a bare KEY takes its value here; repeatable)" },
  cwd: { type: "string", alias: "w", description: "Working directory in the guest (must exist)" },
  user: { type: "string", alias: "u", description: "Run as this guest user: NAME, UID, NAME:GROUP or UID:GID" },
  timeout: { type: "string", description: "Kill the command's whole process tree after this long (500ms, 2s, 5m, 1h) and exit 124" },
} as const;

/**
 * Every value of a repeatable option, in order: `--long V`, `--long=V`, `-s V`,
 * `-s=V`, before `--` (citty keeps only the last one).
 */
export function repeatedArg(argv: readonly string[], long: string, short?: string): string[] {
  const out: string[] = [];
  const names = [`--${long}`, ...(short ? [`-${short}`] : [])];
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    const a = argv[i]!;
    const name = names.find((n) => a === n || a.startsWith(`${n}=`));
    if (!name) continue;
    if (a.length > name.length) out.push(a.slice(name.length + 1));
    else if (i + 1 < argv.length && argv[i + 1] !== "--") out.push(argv[++i]!);
    else throw new BangerError("E_USAGE", `${name} needs a value`);
  }
  return out;
}

/**
 * The options as the daemon takes them: env files first, then -e in order
 * (so -e wins, as in Docker), every value checked. `readText` reads an env
 * file (null: missing).
 */
export async function execOptionsFrom(
  args: { cwd?: unknown; user?: unknown; timeout?: unknown },
  argv: readonly string[],
  readText: (path: string) => Promise<string | null>,
  lookup: (name: string) => string | undefined = (n) => environ()[n],
): Promise<ExecOptions> {
  const env: string[] = [];
  for (const file of repeatedArg(argv, "env-file")) {
    const text = await readText(file);
    if (text === null) throw new BangerError("E_USAGE", `--env-file ${file}: no such file or not readable`);
    env.push(...parseEnvFile(text, file, lookup));
  }
  for (const a of repeatedArg(argv, "env", "e")) {
    const e = envArg(a, lookup);
    if (e !== null) env.push(e);
  }
  // given twice, citty may hand over both: the last one counts, as in Docker
  const last = (v: unknown): unknown => (Array.isArray(v) ? v.at(-1) : v);
  const [cwd, user, timeout] = [last(args.cwd), last(args.user), last(args.timeout)];
  const o: ExecOptions = {};
  if (env.length) o.env = env;
  if (typeof cwd === "string") o.cwd = cwd;
  if (typeof user === "string") o.user = user;
  if (typeof timeout === "string") o.timeoutMs = parseDuration(timeout);
  checkExecOptions(o, "E_USAGE");
  return o;
}

/** execOptionsFrom for this process: its argv, its environment, the host's files. */
export async function execOptions(args: { cwd?: unknown; user?: unknown; timeout?: unknown }): Promise<ExecOptions> {
  const { createFS } = await import("../host/fs.ts");
  const fs = createFS();
  return execOptionsFrom(args, process.argv, (p) => fs.readText(p));
}
