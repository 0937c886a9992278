// What `vm exec`, `vm run` and `session start` accept besides the command:
// environment, working directory, user and a timeout. The CLI checks them to
// give a usage error before any request; the daemon checks them again, since
// any client may call its routes. Pure functions: no file or env access here.
import { parseDuration as parseAnyDuration } from "./duration.ts";
import { BangerError } from "./errors.ts";

/** Exit status of a command that ran out of time (what timeout(1) uses). */
export const TIMEOUT_EXIT = 124;

/** The longest timeout accepted: a day (a typo like 5000h should not be taken at its word). */
export const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

/** What a command in the guest is run with; every field optional (absent: as before, root in its home). */
export interface ExecOptions {
  /** `KEY=VALUE` entries (Docker's API shape), applied in order: a later KEY wins. */
  env?: string[];
  cwd?: string;
  /** `user`, `uid`, `user:group` or `uid:gid`, as Docker's `-u`. */
  user?: string;
  /** Kill the command's whole process tree after this many ms; it then exits TIMEOUT_EXIT. */
  timeoutMs?: number;
}

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

function _brief(s: string): string {
  const j = JSON.stringify(s);
  return j.length > 60 ? `${j.slice(0, 60)}…` : j;
}

function _bad(code: "E_USAGE" | "E_BAD_REQUEST", message: string): never {
  throw new BangerError(code, message);
}

/** Is `name` an environment variable name a shell can export? */
export function isEnvName(name: string): boolean {
  return ENV_NAME_RE.test(name);
}

/** Refuse an env entry that is not `NAME=value` with a valid NAME (and no NUL, which no process environment can hold). */
export function checkEnvEntry(entry: string, code: "E_USAGE" | "E_BAD_REQUEST" = "E_BAD_REQUEST"): void {
  const eq = entry.indexOf("=");
  const name = eq < 0 ? entry : entry.slice(0, eq);
  if (eq < 0) _bad(code, `env entry ${_brief(entry)} has no '=': use KEY=VALUE`);
  if (!isEnvName(name)) _bad(code, `bad env name ${_brief(name)}: use letters, digits and '_', not starting with a digit`);
  if (entry.includes("\0")) _bad(code, `env value of ${name} holds a NUL byte, which no environment can carry`);
}

/**
 * One `-e` value, Docker's way: `KEY=VALUE` as given; a bare `KEY` takes the
 * value it has in `lookup` (the CLI's own environment) and is dropped when
 * it has none there. Returns the entry, or null when dropped.
 */
export function envArg(arg: string, lookup: (name: string) => string | undefined, what = "-e"): string | null {
  if (!arg.includes("=")) {
    if (!isEnvName(arg)) _bad("E_USAGE", `${what} ${_brief(arg)}: bad env name (use KEY=VALUE, or a bare KEY to pass on its value here)`);
    const v = lookup(arg);
    return v === undefined ? null : `${arg}=${v}`;
  }
  const name = arg.slice(0, arg.indexOf("="));
  if (!isEnvName(name)) _bad("E_USAGE", `${what} ${_brief(arg)}: bad env name ${_brief(name)} (letters, digits and '_', not starting with a digit)`);
  checkEnvEntry(arg, "E_USAGE");
  return arg;
}

/**
 * An env file in Docker's format: one `KEY=VALUE` or bare `KEY` a line,
 * `#` comment lines and blank lines skipped, the value taken literally (no
 * quotes removed, no expansion). Leading whitespace of a line is ignored.
 */
export function parseEnvFile(text: string, file: string, lookup: (name: string) => string | undefined): string[] {
  const out: string[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.replace(/^\s+/, "");
    if (line === "" || line.startsWith("#")) return;
    try {
      const e = envArg(line, lookup, "");
      if (e !== null) out.push(e);
    } catch (err) {
      _bad("E_USAGE", `${file}:${i + 1}: ${(err as Error).message.replace(/^ /, "")}`);
    }
  });
  return out;
}

/** A command's time limit (500ms, 2s, 1.5s, 5m, 1h, 1m30s; a bare number is seconds) → ms, at most 24h. */
export function parseDuration(v: string, what = "--timeout"): number {
  const ms = parseAnyDuration(v);
  if (ms === null) {
    if (/^[\d.]+$/.test(v.trim()) || /^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(v.trim())) _bad("E_USAGE", `${what} must be more than 0, got ${_brief(v)}`);
    _bad("E_USAGE", `${what} must be a duration like 500ms, 2s, 5m or 1h, got ${_brief(v)}`);
  }
  if (ms > MAX_TIMEOUT_MS) _bad("E_USAGE", `${what} must be at most 24h, got ${_brief(v)}`);
  return ms;
}

/**
 * Refuse options no guest can be given: bad env entries, NUL or newlines in
 * cwd or user, an empty user part, a timeout out of range. The guest still
 * says whether the user and the directory exist.
 */
/** The largest uid or gid (2^32-1 is -1, "no id"). */
export const MAX_ID = 4294967294;

export function checkExecOptions(o: ExecOptions, code: "E_USAGE" | "E_BAD_REQUEST" = "E_BAD_REQUEST"): void {
  for (const e of o.env ?? []) checkEnvEntry(e, code);
  if (o.cwd !== undefined) {
    if (o.cwd === "") _bad(code, "the working directory is empty");
    if (o.cwd.includes("\0")) _bad(code, `a NUL byte cannot be in a path: ${_brief(o.cwd)}`);
    // as docker exec -w: relative to what would be a guess (the login's home? the image's workdir?)
    if (!o.cwd.startsWith("/")) _bad(code, `the working directory must be an absolute path, got ${_brief(o.cwd)}`);
  }
  if (o.user !== undefined) {
    const parts = o.user.split(":");
    // a name with a control character (a newline) cannot exist, and would split the guest's one-line answer
    if (parts.length > 2 || parts.some((p) => p === "") || /[\x00-\x1f\x7f]/.test(o.user)) {
      _bad(code, `bad user ${_brief(o.user)}: use NAME, UID, NAME:GROUP or UID:GID`);
    }
    // past 2^32-2 an id wraps (getent) or means "unchanged" (setpriv's -1): the command would run as root
    for (const p of parts) {
      if (/^\d+$/.test(p) && (p.length > 10 || Number(p) > MAX_ID)) _bad(code, `bad user ${_brief(o.user)}: an id is at most ${MAX_ID}`);
    }
  }
  if (o.timeoutMs !== undefined && (!Number.isInteger(o.timeoutMs) || o.timeoutMs <= 0 || o.timeoutMs > MAX_TIMEOUT_MS)) {
    _bad(code, `timeoutMs must be a whole number of ms from 1 to ${MAX_TIMEOUT_MS}, got ${o.timeoutMs}`);
  }
}

/** Any option set? (None: the command runs exactly as it always did, with no wrapper.) */
export function hasExecOptions(o: ExecOptions): boolean {
  return (o.env?.length ?? 0) > 0 || o.cwd !== undefined || o.user !== undefined || o.timeoutMs !== undefined;
}
