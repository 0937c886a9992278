import { createClock } from "./clock.ts";
import { createExec } from "./exec.ts";
import { createFileLocks } from "./flock.ts";
import { createFS } from "./fs.ts";
import { createProcs } from "./procs.ts";
import type { Host, SSHDialer } from "./types.ts";

/** The real host. The SSH dialer is passed in so this module doesn't load ssh2 for commands that never dial. */
export function createHost(ssh: SSHDialer): Host {
  return { exec: createExec(), procs: createProcs(), clock: createClock(), fs: createFS(), ssh, locks: createFileLocks() };
}
