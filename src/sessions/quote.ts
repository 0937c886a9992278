import { BangerError } from "../core/errors.ts";

function _brief(s: string): string {
  const j = JSON.stringify(s);
  return j.length > 60 ? `${j.slice(0, 60)}…` : j;
}

/**
 * Quote a value for a POSIX shell: wrap it in single quotes and turn every
 * `'` into `'\''`. Safe for `;`, `$()`, backticks, globs, spaces and real
 * newlines — nothing inside single quotes is special to the shell.
 */
export function shellQuote(s: string): string {
  // a shell word cannot hold NUL: it would be cut there, silently running something else
  if (s.includes("\0")) throw new BangerError("E_BAD_REQUEST", `a NUL byte cannot be passed in a command, argument or path: ${_brief(s)}`);
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Quote each word and join them with spaces: one shell command line. */
export function shellJoin(words: string[]): string {
  return words.map(shellQuote).join(" ");
}
