import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { BangerError } from "../shared/errors.ts";
import { config, environ } from "./config.ts";
import { lastLine, missingToolMessage } from "./tools.ts";
import type { Exec, ExecOptions, ExecResult } from "./types.ts";

/** Real process execution. */
export function createExec(): Exec {
  return {
    async run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
      if (opts.signal?.aborted) throw _cancelled(cmd, false);
      const r = await _runChild(cmd, args, opts);
      // not found is its own error; any other failure to start (not executable…) is exit 1 with the reason, as before
      if (r.error?.code === "ENOENT") throw new BangerError("E_MISSING_TOOL", missingToolMessage(cmd));
      if (r.aborted) throw _cancelled(cmd, true);
      if (r.timedOut) throw new BangerError("E_TIMEOUT", `${cmd} timed out after ${opts.timeoutMs} ms`);
      const result: ExecResult = { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
      if ((opts.check ?? true) && result.exitCode !== 0) {
        // one line: the CLI prints errors as one line, and a tool's last line is usually the reason
        const why = lastLine(result.stderr, result.stdout);
        // a subcommand ("dmsetup create") says which step; paths and flags would only make the line long
        const sub = args[0] && /^[a-z][a-z-]*$/.test(args[0]) ? ` ${args[0]}` : "";
        throw new BangerError("E_INTERNAL", `${cmd}${sub} failed (exit ${result.exitCode})${why ? `: ${why}` : ""}`);
      }
      return result;
    },

    async spawnDetached(cmd, args, opts = {}): Promise<number> {
      const out = opts.logPath ? openSync(opts.logPath, "a") : "ignore";
      try {
        const child = spawn(cmd, args, {
          cwd: opts.cwd,
          env: (opts.env ?? environ()) as NodeJS.ProcessEnv,
          detached: true, // setsid: a kill of our process group never reaches it
          stdio: ["ignore", out, out],
        });
        const pid = await new Promise<number>((resolve, reject) => {
          child.once("error", (e) => {
            const notFound = (e as NodeJS.ErrnoException).code === "ENOENT";
            reject(new BangerError("E_MISSING_TOOL", notFound ? missingToolMessage(cmd) : `cannot start ${cmd}: ${e.message}`, { cause: e }));
          });
          child.once("spawn", () => resolve(child.pid!));
        });
        child.unref();
        return pid;
      } finally {
        if (typeof out === "number") closeSync(out);
      }
    },

    async which(cmd: string): Promise<string | null> {
      if (cmd.includes("/")) return (await Bun.file(cmd).exists()) ? cmd : null;
      return Bun.which(cmd, { PATH: `${config.path ?? ""}:/usr/sbin:/sbin` });
    },
  };
}

/** After SIGTERM at its timeout, a tool that is still there this long later is killed (as execa did). */
const _FORCE_KILL_AFTER_MS = 5000;
/** After SIGINT at an abort, what is left of the tool's process group this long later is killed. */
const _ABORT_GRACE_MS = 10_000;

function _cancelled(cmd: string, ran: boolean): BangerError {
  return new BangerError("E_CANCELLED", ran ? `${cmd} was stopped: its request was cancelled` : `${cmd} not run: its request was cancelled`);
}

interface _ChildResult {
  stdout: string;
  stderr: string;
  /** The tool's exit code; 128 when a signal ended it, 1 when it could not be run. */
  exitCode: number;
  timedOut: boolean;
  /** Stopped because its signal aborted. */
  aborted?: boolean;
  /** Why it could not be started (ENOENT: not found). */
  error?: { code: string; message: string };
}

/**
 * One tool run to its end, its output collected: node's spawn and nothing more. execa did this for
 * ~4 ms of the daemon's CPU per run (its stream plumbing), ten times the spawn's own, and a clone
 * or a snapshot runs several tools (issue 15, P8c). Without `input` the tool's stdin is /dev/null
 * (a tool that reads it sees EOF instead of waiting on a pipe no one writes).
 */
function _runChild(cmd: string, args: string[], opts: ExecOptions): Promise<_ChildResult> {
  return new Promise((resolve) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...environ(), ...opts.env })) if (v !== undefined) env[k] = v;
    let child: ChildProcess;
    try {
      // detached: a process group of its own (setsid), so an abort reaches all of it, as Ctrl-C would
      child = spawn(cmd, args, { cwd: opts.cwd, env, detached: !!opts.signal, stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      resolve({ stdout: "", stderr: `${cmd}: ${err.message}\n`, exitCode: 1, timedOut: false, error: { code: err.code ?? "E_SPAWN", message: err.message } });
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const lineFeed = () => {
      let buf = "";
      return (chunk: Buffer) => {
        buf += chunk.toString();
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          opts.onLine!(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      };
    };
    const feedOut = opts.onLine ? lineFeed() : null;
    const feedErr = opts.onLine ? lineFeed() : null;
    child.stdout!.on("data", (c: Buffer) => {
      out.push(c);
      feedOut?.(c);
    });
    child.stderr!.on("data", (c: Buffer) => {
      err.push(c);
      feedErr?.(c);
    });
    let timedOut = false;
    let force: ReturnType<typeof setTimeout> | undefined;
    const timer =
      opts.timeoutMs !== undefined && opts.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            child.kill("SIGTERM");
            force = setTimeout(() => child.kill("SIGKILL"), _FORCE_KILL_AFTER_MS);
          }, opts.timeoutMs)
        : undefined;
    let aborted = false;
    let abortKill: ReturnType<typeof setTimeout> | undefined;
    const group = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig);
      } catch {} // the group is gone already
    };
    const onAbort = () => {
      if (child.pid === undefined) return;
      aborted = true;
      group("SIGINT");
      abortKill = setTimeout(() => group("SIGKILL"), opts.abortGraceMs ?? _ABORT_GRACE_MS);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const settle = (r: _ChildResult) => {
      clearTimeout(timer);
      clearTimeout(force);
      opts.signal?.removeEventListener("abort", onAbort);
      clearTimeout(abortKill);
      resolve(aborted ? { ...r, aborted: true } : r);
    };
    child.once("error", (e: NodeJS.ErrnoException) => {
      // never started (not found, not executable): there is no exit to wait for
      if (child.pid !== undefined) return;
      opts.signal?.removeEventListener("abort", onAbort);
      clearTimeout(timer);
      resolve({ stdout: "", stderr: `${cmd}: ${e.message}\n`, exitCode: 1, timedOut: false, error: { code: e.code ?? "E_SPAWN", message: e.message } });
    });
    if (opts.input !== undefined) {
      // a tool that exits without reading all of its input (EPIPE) is answered by its exit code, not by this
      child.stdin!.on("error", () => {});
      child.stdin!.end(typeof opts.input === "string" ? opts.input : Buffer.from(opts.input.buffer, opts.input.byteOffset, opts.input.byteLength));
    }
    // a tool killed at its timeout, or stopped, may leave a child of its own holding the pipes: its exit is the end
    child.once("exit", (code: number | null) => {
      if (aborted) {
        // the tool is done with its clean-up: what is left of its group (a child that ignores SIGINT, as a
        // shell's background jobs do) is a straggler
        group("SIGKILL");
        child.stdout!.destroy();
        child.stderr!.destroy();
        settle({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), exitCode: code ?? 128, timedOut: false });
        return;
      }
      if (!timedOut || code !== null) return;
      clearTimeout(force);
      child.stdout!.destroy();
      child.stderr!.destroy();
      settle({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), exitCode: 128, timedOut: true });
    });
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      settle({ stdout, stderr, exitCode: code ?? (signal ? 128 : 1), timedOut: timedOut && code === null });
    });
  });
}
