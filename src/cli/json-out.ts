import { writeLine } from "../host/line.ts";

/**
 * A command's --json output: one document, indented, on stdout (context.ts out(), and entry.ts's early answers).
 * A line of its own through the console, as writeOut (src/host/stdio.ts) writes any whole line; not through
 * writeOut, so entry.ts loads no terminal checks to print an early answer.
 */
export function writeJson(data: unknown): void {
  writeLine(1, JSON.stringify(data, null, 2));
}
