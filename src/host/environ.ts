/**
 * The process's environment, apart from src/host/config.ts (the list of
 * what banger reads, and its getters): every command's first module
 * (src/cli/entry.ts) needs the environment, and each function loaded at
 * start costs a command's start-up whether or not it runs (P1 in
 * bench/results.md).
 */

/** An environment: the process's own (environ()) or one a test made. */
export type Env = Readonly<Record<string, string | undefined>>;

/** The process's environment, live: the default for an `env` parameter, and what children we start inherit. */
export function environ(): Record<string, string | undefined> {
  return process.env;
}
