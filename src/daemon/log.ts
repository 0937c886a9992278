import type { Logger } from "../core/plugin.ts";

/** Timestamped lines on stderr (daemon.log when auto-started). */
export function createDaemonLogger(debug = !!process.env.BANGER_DEBUG): Logger {
  const line = (level: string, msg: string) => process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`);
  return {
    info: (m) => line("INFO", m),
    warn: (m) => line("WARN", m),
    error: (m) => line("ERROR", m),
    debug: (m) => (debug ? line("DEBUG", m) : undefined),
  };
}
