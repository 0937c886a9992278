import type { Exec } from "./types.ts";

/**
 * `exec` whose every tool run stops when `signal` aborts (see ExecOptions.signal): for a long
 * operation (an image build) whose requester may go away, so that each step it runs need not
 * pass the signal itself. A run asked after the abort is refused before it starts.
 */
export function execStoppedBy(exec: Exec, signal: AbortSignal): Exec {
  return {
    run: (cmd, args, opts = {}) => exec.run(cmd, args, { ...opts, signal: opts.signal ?? signal }),
    spawnDetached: (cmd, args, opts) => exec.spawnDetached(cmd, args, opts),
    which: (cmd) => exec.which(cmd),
  };
}
