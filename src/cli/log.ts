import type { ConsolaInstance, LogObject } from "consola/core";
import { config } from "../host/config.ts";
import { writeOut } from "../host/stdio.ts";

/** How much the CLI says on stderr: --quiet (errors and warnings), normal (plus progress), --verbose or BANGER_DEBUG (plus detail). */
export type Verbosity = "quiet" | "normal" | "verbose";

// consola's levels: error 0, warn 1, info 3, debug 4
const LEVEL: Record<Verbosity, number> = { quiet: 1, normal: 3, verbose: 4 };

/**
 * What the CLI prints on stderr besides a command's output, as consola
 * reporters: `banger: message` for errors and warnings, lines tagged "raw"
 * (progress) as their caller shaped them, others as a line. `--json` output never
 * goes through here.
 */
export function cliLine(o: Pick<LogObject, "type" | "tag" | "args">): string {
  const text = o.args.map(String).join(" ");
  if (o.type === "error" || o.type === "fatal" || o.type === "warn") return `banger: ${text}\n`;
  if (o.tag === "raw") return text; // shaped by the caller: a progress line (`[1.2s] msg\n`, or a rewriting one on a TTY)
  return `${text}\n`;
}

let _verbosity: Verbosity = config.debug ? "verbose" : "normal";
let _log: ConsolaInstance | null = null;

export function verbosity(): Verbosity {
  return _verbosity;
}

/** Set once from the command line, before anything is said. */
export function setVerbosity(v: Verbosity): void {
  _verbosity = v;
  if (_log) _log.level = LEVEL[v];
}

/**
 * The CLI's consola, made on first use: consola/core is required here, not
 * imported, so a command that says nothing (vm list --json) never loads it.
 * Synchronous, so fail() can still print and exit at once.
 */
export function log(): ConsolaInstance {
  if (_log) return _log;
  const { createConsola } = require("consola/core") as typeof import("consola/core");
  _log = createConsola({ level: LEVEL[_verbosity], throttle: 0, reporters: [{ log: (o) => writeOut(2, cliLine(o)) }] });
  return _log;
}
