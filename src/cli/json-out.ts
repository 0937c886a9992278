import { writeOut } from "../host/stdio.ts";

/** A command's --json output: one document, indented, on stdout (context.ts out(), and entry.ts's early answers). */
export function writeJson(data: unknown): void {
  writeOut(1, JSON.stringify(data, null, 2) + "\n");
}
