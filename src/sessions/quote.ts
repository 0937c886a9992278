/**
 * Quote a value for a POSIX shell: wrap it in single quotes and turn every
 * `'` into `'\''`. Safe for `;`, `$()`, backticks, globs, spaces and real
 * newlines — nothing inside single quotes is special to the shell.
 */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Quote each word and join them with spaces: one shell command line. */
export function shellJoin(words: string[]): string {
  return words.map(shellQuote).join(" ");
}
