import { createConsola, LogLevels, type LogObject } from "consola/core";
import type { Logger } from "../core/plugin.ts";
import { config } from "../host/config.ts";
import { writeOut } from "../host/stdio.ts";

/** `ISO-TIME LEVEL message`: the daemon log's line, which people and tests grep. */
export function daemonLogLine(o: Pick<LogObject, "date" | "type" | "args">): string {
  return `${o.date.toISOString()} ${o.type.toUpperCase()} ${o.args.map(String).join(" ")}\n`;
}

/**
 * Timestamped lines on stderr (daemon.log when auto-started), through a
 * consola instance: its levels (debug with BANGER_DEBUG) and one reporter
 * that prints daemonLogLine. consola/core only: the full package's fancy
 * reporters cost a process ~8 ms to load and are not what we print.
 * No throttling: every line is written when it happens, synchronously: the
 * lines just before a crash are the ones a person needs, and a queued write
 * dies with a kill -9 (process.stderr.write lost them under load).
 */
export function createDaemonLogger(debug = config.debug, write: (line: string) => void = (line) => writeOut(2, line)): Logger {
  const c = createConsola({
    level: debug ? LogLevels.debug : LogLevels.info,
    throttle: 0,
    reporters: [{ log: (o) => write(daemonLogLine(o)) }],
  });
  return {
    info: (m) => c.info(m),
    warn: (m) => c.warn(m),
    error: (m) => c.error(m),
    debug: (m) => c.debug(m),
  };
}
