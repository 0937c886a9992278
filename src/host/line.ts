/**
 * One line to stdout or stderr through the console, which writes it
 * synchronously, all of it, and loads nothing (src/host/stdio.ts). Apart
 * from stdio.ts (terminal checks, node:fs) so that entry.ts's early
 * `--json` answer loads only this (P1 in bench/results.md).
 */
export function writeLine(fd: 1 | 2, line: string): void {
  (fd === 1 ? console.log : console.error)(line);
}
