import { BangerError } from "../shared/errors.ts";
import { shellQuote } from "../shared/quote.ts";
import type { ExecResult, GuestSSH } from "./types.ts";

// GuestSSH's runScript and upload, over any connection's exec: SSH's (./ssh.ts) and the guest plugin's
// AgentFirstSSH (its exec agent when the stdin fits it). Kept out of ssh.ts: importing these loads no ssh2.

/** GuestSSH.runScript by `conn`'s exec: the script on stdin to `bash -s`. */
export async function runScriptOver(conn: Pick<GuestSSH, "exec">, script: string, opts: { signal?: AbortSignal } = {}): Promise<ExecResult> {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const exitCode = await conn.exec("bash -s", {
    stdin: script,
    signal: opts.signal,
    onStdout: (c) => out.push(c.slice()),
    onStderr: (c) => err.push(c.slice()),
  });
  return { exitCode, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

/** GuestSSH.upload by `conn`'s exec (`label` names the guest in an error). */
export async function uploadOver(conn: Pick<GuestSSH, "exec">, label: string, path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const q = shellQuote(path);
  // exec + cat rather than SFTP: a minimal guest (dropbear) may have no sftp-server.
  const cmd = `umask 077 && cat > ${q} && chmod ${(mode & 0o7777).toString(8)} ${q}`;
  const err: Uint8Array[] = [];
  const code = await conn.exec(cmd, { stdin: data, onStderr: (c) => err.push(c.slice()) });
  if (code !== 0) {
    const msg = Buffer.concat(err).toString("utf8").trim();
    throw new BangerError("E_STATE", `upload to ${label}:${path} failed (exit ${code})${msg ? `: ${msg}` : ""}`);
  }
}
