/** Where the daemon's (and a plugin's) log lines go: the daemon writes `ISO LEVEL msg` to daemon.log. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  debug(msg: string): void;
}
