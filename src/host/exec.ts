import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { BangerError } from "../shared/errors.ts";
import { config, environ } from "./config.ts";
import { lastLine, missingToolMessage } from "./tools.ts";
import type { Exec, ExecOptions, ExecResult } from "./types.ts";

/** Real process execution (execa). */
export function createExec(): Exec {
  return {
    async run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
      // loaded on the first command run, not at start-up: an idle daemon does not map its code (VmRSS -2.5 MB)
      const { execa } = await import("execa");
      let child;
      try {
        child = execa(cmd, args, {
          cwd: opts.cwd,
          env: opts.env,
          input: opts.input as string | Uint8Array | undefined,
          timeout: opts.timeoutMs,
          reject: false,
          stripFinalNewline: false,
          encoding: "utf8",
          lines: false,
        });
      } catch (e) {
        throw new BangerError("E_MISSING_TOOL", `cannot run ${cmd}: ${(e as Error).message}`, { cause: e });
      }
      if (opts.onLine) {
        const onLine = opts.onLine;
        let buf = "";
        const feed = (chunk: Buffer | string) => {
          buf += chunk.toString();
          let i: number;
          while ((i = buf.indexOf("\n")) >= 0) {
            onLine(buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        };
        child.stdout?.on("data", feed);
        child.stderr?.on("data", feed);
      }
      const r = await child;
      if (r.failed && r.exitCode === undefined) {
        const notFound = (r as { code?: string }).code === "ENOENT" || /ENOENT/.test(String(r.message));
        if (notFound) throw new BangerError("E_MISSING_TOOL", missingToolMessage(cmd));
        if (r.timedOut) throw new BangerError("E_TIMEOUT", `${cmd} timed out after ${opts.timeoutMs} ms`);
      }
      const result: ExecResult = {
        stdout: String(r.stdout ?? ""),
        stderr: String(r.stderr ?? ""),
        exitCode: r.exitCode ?? (r.signal ? 128 : 1),
      };
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
