import { BangerError, isBangerError, errorMessage, undoFailuresOf, withUndoNote } from "../shared/errors.ts";
import { resolveHome } from "../shared/paths.ts";
import { nowMs } from "../host/clock.ts";
import { config, environ } from "../host/config.ts";
import { mark } from "../host/profile.ts";
import { DaemonClient } from "../client/daemon-client.ts";
import type { RequestOf, StreamOf, StreamRoute } from "../shared/routes.ts";
import type { StreamEvent } from "../shared/api.ts";
import { log, verbosity } from "./log.ts";
import { fdIsTTY, onReaderGone, outStream, writeAll, writeOut, writePaced } from "../host/stdio.ts";
import { writeJson } from "./json-out.ts";

/** Words after `--` on the command line (the guest command), kept away from citty's flag parsing. */
export const passthrough: { argv: string[] } = { argv: [] };

/** Both stdout and stderr are terminals and colour is allowed (asked on first use: see src/host/stdio.ts). */
export const isTTY = (): boolean => fdIsTTY(1) && fdIsTTY(2) && !config.noColor;

export function out(data: unknown, json: boolean, human: () => string | void): void {
  mark("parsed");
  if (json) writeJson(data);
  else {
    const text = human();
    if (typeof text === "string" && text.length) writeOut(1, text.endsWith("\n") ? text : text + "\n");
  }
  mark("rendered");
}

/** Progress on stderr: a rewriting status line on a TTY, plain lines otherwise (no spinners, no colour). */
export function progress(quiet = false): { update(msg: string): void; done(): void } {
  const started = nowMs();
  let shown = false;
  const line = log().withTag("raw");
  return {
    update(msg: string) {
      if (quiet) return;
      const secs = ((nowMs() - started) / 1000).toFixed(1);
      if (isTTY()) {
        line.info(`\r\x1b[2K… ${msg} (${secs}s)`);
        shown = verbosity() !== "quiet";
      } else {
        line.info(`[${secs}s] ${msg}\n`);
      }
    },
    done() {
      if (shown) outStream(2).write("\r\x1b[2K");
      shown = false;
    },
  };
}

let client: DaemonClient | null = null;
/**
 * The client for this BANGER_HOME. Its requests carry the version handshake
 * and start or replace the daemon when they must (see DaemonClient.fetch), so
 * a command is one round trip. recheck: make sure of the daemon now (after
 * it went away mid-stream).
 */
export async function daemon(recheck = false): Promise<DaemonClient> {
  client ??= new DaemonClient(resolveHome(environ()), { onStart: (why) => log().debug(why) });
  if (recheck) await client.ensure();
  return client;
}

/**
 * The reader of our output went away (`banger … | head`): exit as a program that SIGPIPE kills would, quietly, with
 * 128 + 13. Our connection to the daemon closes with us, so it stops what it ran for this command (a guest command
 * is killed). Anything else is left to the caller.
 */
export function exitIfBrokenPipe(e: unknown): void {
  if ((e as { code?: string } | null)?.code === "EPIPE") process.exit(141);
}

/** A chunk of a command's output to stdout (1) or stderr (2), which may be a pipe its reader closed (exitIfBrokenPipe). */
export function writeChunk(fd: 1 | 2, chunk: Uint8Array | string): void {
  try {
    // synchronous: a slow reader holds back our reading of the daemon's stream, and so the guest's writer
    writeAll(fd, chunk);
  } catch (e) {
    exitIfBrokenPipe(e);
    throw e;
  }
}

/**
 * A chunk of a streamed command's output (writePaced): a full pipe is waited for without blocking, so the CLI
 * reads no more of the daemon's stream (which pauses the guest) while a Ctrl-C is still forwarded at once.
 */
export function writeStreamed(fd: 1 | 2, chunk: Uint8Array): Promise<void> | undefined {
  const broken = (e: unknown): never => {
    exitIfBrokenPipe(e);
    throw e;
  };
  try {
    return writePaced(fd, chunk)?.catch(broken);
  } catch (e) {
    return broken(e);
  }
}

/** Run a streaming route: progress to stderr, output chunks to stdout/stderr; returns the final event. */
export async function streamCall<K extends StreamRoute>(
  name: K,
  req: RequestOf<K>,
  opts: { json: boolean; quiet?: boolean; signal?: AbortSignal; onEvent?: (ev: StreamEvent) => void; endWithReader?: boolean },
): Promise<StreamOf<K>> {
  const c = await daemon();
  const p = progress(opts.quiet || opts.json);
  // a stream that may go quiet for good (a follow, a command that waits) ends with its reader, as at a write's EPIPE
  const stopWatch = opts.endWithReader ? onReaderGone(1, () => process.exit(141)) : null;
  try {
    return await c.stream(name, req, (ev) => {
      if (ev.type === "progress") p.update(ev.message);
      else if (ev.type === "stdout") {
        p.done();
        return writeStreamed(1, Buffer.from(ev.data, "base64"));
      } else if (ev.type === "stderr") {
        p.done();
        return writeStreamed(2, Buffer.from(ev.data, "base64"));
      } else opts.onEvent?.(ev);
    }, opts.signal);
  } finally {
    stopWatch?.();
    p.done();
  }
}

/** Where a --json error goes: stdout, except for a command whose stdout is a guest command's own (vm exec, run, ssh). */
let _jsonErrorFd: 1 | 2 = 1;
/** The command's stdout is a guest command's output: a --json error (like its --json result) goes to stderr, alone. */
export function jsonErrorsOnStderr(): void {
  _jsonErrorFd = 2;
}

export function fail(e: unknown, json: boolean): never {
  const code = isBangerError(e) ? e.code : "E_INTERNAL";
  const message = errorMessage(e);
  const undoFailures = undoFailuresOf(e);
  // synchronous: process.exit below would drop a pending stream write
  if (json) writeOut(_jsonErrorFd, JSON.stringify({ error: undoFailures.length ? { code, message, undoFailures } : { code, message } }) + "\n");
  if (!json || _jsonErrorFd === 1) log().error(withUndoNote(message, undoFailures));
  process.exit(isBangerError(e) ? e.exitCode : 1);
}

/**
 * All of stdin, for a request that carries it whole; refused past `max` bytes in one line (exit 2) while reading,
 * so an endless producer (`yes | banger …`) cannot fill our memory. `what` names the input, `why` says what to do.
 */
export async function readStdinUpTo(max: number, what: string, why: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of Bun.stdin.stream() as ReadableStream<Uint8Array>) {
    n += chunk.length;
    if (n > max) usage(`${what} takes at most ${(max / 1048576).toFixed(1)} MiB of stdin (${why})`);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

export function usage(message: string): never {
  throw new BangerError("E_USAGE", message);
}

export function intArg(v: unknown, what: string, min = 0): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) usage(`${what} must be a whole number (${min} or more), got ${JSON.stringify(v)}`);
  return n;
}

/** Sizes like 512, 512M, 2G → MiB. */
export function sizeArg(v: unknown, what: string): number | undefined {
  if (v === undefined || v === "") return undefined;
  const m = /^(\d+)(?:([MmGg])(?:i?B)?)?$/.exec(String(v));
  if (!m) usage(`${what} must be a size like 512M or 2G, got ${JSON.stringify(v)}`);
  const n = Number(m[1]);
  return (m[2] ?? "").toLowerCase() === "g" ? n * 1024 : n;
}

export const jsonArg = { json: { type: "boolean", description: "Machine-readable JSON output" } } as const;
