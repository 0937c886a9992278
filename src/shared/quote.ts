import { BangerError } from "./errors.ts";

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

/**
 * A command line for people to read (a table cell, a `show` line): plain words as they are, others quoted as bash
 * reads them back, control characters (a newline) as $'\n' so the line stays one line. Not for running: shellJoin is.
 */
export function readableCommand(words: readonly string[]): string {
  return words
    .map((w) => {
      if (/^[A-Za-z0-9_\-+=.,/:@%^]+$/.test(w)) return w;
      if (!/[\x00-\x1f\x7f]/.test(w)) return `'${w.replace(/'/g, `'\\''`)}'`;
      const body = [...w].map((c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "'" ? "\\'" : c === "\\" ? "\\\\" : c < " " || c === "\x7f" ? `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}` : c)).join("");
      return `$'${body}'`;
    })
    .join(" ");
}

/** A value a guest script is given: a string or number, or (bash only) a list that becomes an array. */
export type ScriptValue = string | number | readonly string[];

/**
 * Build a guest script the one way every banger script is built: `NAME='value'`
 * lines, each value quoted with shellQuote (a list becomes a bash array
 * `NAME=('a' 'b')`), followed by the parts as written in their `.sh` files.
 * The body only ever refers to "$NAME": no value is spliced into it. A first
 * part's `#!` line stays first.
 */
export function renderScript(parts: string | readonly string[], vars: Record<string, ScriptValue>): string {
  const body = typeof parts === "string" ? parts : parts.join("");
  const lines: string[] = [];
  for (const [name, value] of Object.entries(vars)) {
    // a typo'd or unused name is a bug here, not something for the guest to find out
    if (!/^[A-Z][A-Z0-9_]*$/.test(name) || !(body.includes("$" + name) || body.includes("${" + name))) {
      throw new BangerError("E_INTERNAL", `script value ${JSON.stringify(name)} is not a shell name the script uses`);
    }
    if (typeof value === "number" && !Number.isFinite(value)) throw new BangerError("E_INTERNAL", `script value ${name} is not a finite number: ${value}`);
    lines.push(typeof value === "object" ? `${name}=(${shellJoin([...value])})` : `${name}=${shellQuote(String(value))}`);
  }
  const prelude = lines.length ? lines.join("\n") + "\n" : "";
  if (!body.startsWith("#!")) return prelude + body;
  const nl = body.indexOf("\n") + 1;
  return body.slice(0, nl) + prelude + body.slice(nl);
}
