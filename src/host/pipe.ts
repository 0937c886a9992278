import { BangerError } from "../shared/errors.ts";
import { missingToolMessage } from "./tools.ts";

/** A host process whose stdin and/or stdout are byte streams (a tar going in or out). */
export interface PipedProcess {
  /** Its stdout, when asked for with `stdout: "pipe"`. */
  readonly stdout: ReadableStream<Uint8Array> | null;
  /** Exit code and stderr, once it ended. */
  readonly exited: Promise<{ code: number; stderr: string }>;
  kill(): void;
}

/**
 * Run argv with stdin fed from a stream (or ours, or nothing) and stdout
 * piped back or dropped. Exec buffers output as text; these
 * are binary and may be large, so they go through Bun.spawn's streams, read
 * as fast as their consumer reads.
 */
export function spawnPiped(argv: string[], o: { stdin: ReadableStream<Uint8Array> | "inherit" | "ignore"; stdout: "pipe" | "ignore"; cwd?: string }): PipedProcess {
  let proc;
  try {
    proc = Bun.spawn(argv, { stdin: o.stdin, stdout: o.stdout, stderr: "pipe", cwd: o.cwd });
  } catch (e) {
    throw new BangerError("E_MISSING_TOOL", missingToolMessage(argv[0]!), { cause: e });
  }
  const stderr = new Response(proc.stderr).text();
  return {
    stdout: o.stdout === "pipe" ? (proc.stdout as ReadableStream<Uint8Array>) : null,
    exited: Promise.all([proc.exited, stderr]).then(([code, err]) => ({ code, stderr: err })),
    kill: () => proc.kill(),
  };
}
