import { constants as osConstants } from "node:os";
import type { Client, ClientChannel, ConnectConfig } from "ssh2";
import { BangerError, errorMessage } from "../shared/errors.ts";
import { runScriptOver, uploadOver } from "./guest-exec.ts";
import type { ExecResult, ExecStreamOptions, GuestSSH, SSHDialer, SSHTarget } from "./types.ts";

/** How often a refused exec is asked again (after 25, 50, 100, 200 ms) before the refusal is the answer. */
export const EXEC_REFUSAL_RETRIES = 4;

/** ssh2's words for a server that refused the channel or the exec request itself: nothing ran. */
export function refusedBeforeStart(err: Error): boolean {
  return err.message === "Unable to exec" || /^\(SSH\) Channel open failure/.test(err.message);
}

/** Exit code reported when a channel closes without an exit status (as OpenSSH's client does). */
export const NO_STATUS_EXIT = 255;

/** The base64 key blob of an OpenSSH public key line ("ssh-ed25519 AAAA... comment"). */
function _keyBlob(line: string): Buffer {
  const parts = line.trim().split(/\s+/);
  const b64 = parts.length >= 2 ? parts[1]! : parts[0]!;
  return Buffer.from(b64, "base64");
}

function _signalExit(signal: string | undefined): number {
  if (!signal) return NO_STATUS_EXIT;
  const name = (signal.startsWith("SIG") ? signal : `SIG${signal}`) as keyof typeof osConstants.signals;
  const n = osConstants.signals[name];
  return typeof n === "number" ? 128 + n : NO_STATUS_EXIT;
}

/**
 * A `signal` request on an exec's channel. Not ssh2's Channel.signal: it sends only while the channel is writable,
 * and ours stops being so when its stdin ends (at once, for most commands), so it silently sent nothing.
 */
function _signalChannel(ch: ClientChannel, name: string): void {
  const c = ch as unknown as { outgoing?: { id: number; state: string }; _client?: { _protocol?: { signal(id: number, name: string): void } } };
  try {
    // 'eof' once our stdin ended: the command still runs
    if (c.outgoing && c.outgoing.state !== "closed") c._client?._protocol?.signal(c.outgoing.id, name);
  } catch {} // the connection just closed: the command is done
}

function _abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error("aborted");
  e.name = "AbortError";
  return e;
}

async function _pumpStdin(ch: ClientChannel, stdin: AsyncIterable<Uint8Array>, isDone: () => boolean): Promise<void> {
  try {
    for await (const chunk of stdin) {
      if (isDone()) return;
      // a view, not a copy: a big stream's chunks are garbage the moment they are written
      if (!ch.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
        // Respect the channel window so a big stream never piles up in memory.
        await new Promise<void>((resolve) => {
          const done = () => {
            ch.off("drain", done);
            ch.off("close", done);
            resolve();
          };
          ch.on("drain", done);
          ch.on("close", done);
        });
      }
    }
  } catch {
    // A failing input stream ends our stdin; the command sees EOF.
  }
  if (!isDone()) ch.end();
}

class _SSH2Guest implements GuestSSH {
  private _closed = false;
  constructor(
    private readonly _client: Client,
    private readonly _label: string,
  ) {
    const mark = () => {
      this._closed = true;
    };
    _client.on("close", mark);
    _client.on("end", mark);
    _client.on("error", mark);
  }

  get closed(): boolean {
    return this._closed;
  }

  exec(command: string, opts: ExecStreamOptions = {}): Promise<number> {
    if (this._closed) return Promise.reject(new BangerError("E_STATE", `ssh connection to ${this._label} is closed`));
    if (opts.signal?.aborted) return Promise.reject(_abortError(opts.signal));
    return new Promise<number>((resolve, reject) => {
      const execOpts = opts.pty ? { pty: { cols: opts.pty.cols, rows: opts.pty.rows, term: opts.pty.term ?? "xterm-256color" } } : {};
      let refusals = 0;
      const attempt = () => this._client.exec(command, execOpts, (err, ch) => {
        if (err) {
          // A refused channel or exec request started nothing in the guest, so asking again is safe; the guest's
          // dropbear refuses one now and then while it reaps a channel that just ended (seen under TCG with
          // quick successive timed-out commands).
          if (refusedBeforeStart(err) && refusals < EXEC_REFUSAL_RETRIES && !this._closed && !opts.signal?.aborted) {
            setTimeout(attempt, 25 << refusals++);
            return;
          }
          reject(new BangerError("E_STATE", `ssh exec on ${this._label} failed: ${err.message}`, { cause: err }));
          return;
        }
        let code: number | null = null;
        let signalName: string | undefined;
        let finished = false;
        const onAbort = () => {
          if (finished) return;
          finished = true;
          // Ask the server to kill the command (OpenSSH honours it), then drop the channel.
          _signalChannel(ch, "KILL");
          ch.close();
          reject(_abortError(opts.signal!));
        };
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        opts.flow?.({ pause: () => ch.pause(), resume: () => ch.resume() });
        opts.onRunning?.({
          signal: (name) => {
            if (!finished) _signalChannel(ch, name);
          },
        });
        ch.on("data", (d: Buffer) => opts.onStdout?.(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
        ch.stderr.on("data", (d: Buffer) => opts.onStderr?.(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
        ch.on("exit", (c: number | null, sig?: string) => {
          if (typeof c === "number") code = c;
          else signalName = sig;
        });
        ch.on("close", () => {
          opts.signal?.removeEventListener("abort", onAbort);
          if (finished) return;
          finished = true;
          resolve(code ?? _signalExit(signalName));
        });
        const stdin = opts.stdin;
        if (stdin === undefined) ch.end();
        else if (typeof stdin === "string" || stdin instanceof Uint8Array) ch.end(Buffer.from(stdin as never));
        else {
          // _pumpStdin ends stdin itself when the input stream fails; this is the channel failing
          // under a write or end: fail the command rather than leave it waiting for input forever.
          _pumpStdin(ch, stdin, () => finished).catch((e: unknown) => {
            if (finished) return;
            finished = true;
            opts.signal?.removeEventListener("abort", onAbort);
            ch.close();
            reject(new BangerError("E_STATE", `ssh stdin to ${this._label} failed: ${errorMessage(e)}`, { cause: e }));
          });
        }
      });
      attempt();
    });
  }

  runScript(script: string, opts: { signal?: AbortSignal } = {}): Promise<ExecResult> {
    return runScriptOver(this, script, opts);
  }

  upload(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
    return uploadOver(this, this._label, path, data, mode);
  }

  close(): void {
    this._closed = true;
    this._client.end();
  }
}

/**
 * Connect an ssh2 Client with the guest's host key pinned (no TOFU); a
 * mismatch fails with its own message. The dialer wraps the client as a
 * GuestSSH; the CLI's interactive shell uses it raw for a PTY.
 */
export async function connectPinned(target: SSHTarget): Promise<Client> {
  const label = `${target.user}@${target.host}:${target.port}`;
  // ssh2 is loaded on the first connection, not at start-up: an idle daemon
  // (or a CLI command that never dials) does not map its code: idle daemon VmRSS 66 -> 53 MB
  const { Client: SSH2Client } = await import("ssh2");
  return new Promise<Client>((resolve, reject) => {
    const client = new SSH2Client();
    let hostKeyMismatch = false;
    let settled = false;
    const pinned = target.hostKey ? _keyBlob(target.hostKey) : null;
    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey: target.privateKey,
      readyTimeout: target.readyTimeoutMs ?? 20_000,
      // Detect a vanished guest instead of waiting on a dead TCP connection forever.
      keepaliveInterval: 15_000,
      keepaliveCountMax: 3,
      // a guest's dropbear reads (or, with -R, would generate) the key of the algorithm agreed on: only the pinned one's
      ...(target.hostKey?.startsWith("ssh-ed25519 ") ? { algorithms: { serverHostKey: ["ssh-ed25519" as const] } } : {}),
      hostVerifier: (key: Buffer) => {
        if (!pinned) return true;
        const ok = Buffer.isBuffer(key) && key.equals(pinned);
        if (!ok) hostKeyMismatch = true;
        return ok;
      },
    };
    client.once("ready", () => {
      settled = true;
      resolve(client);
    });
    client.on("error", (err: Error) => {
      if (settled) return;
      settled = true;
      client.end();
      if (hostKeyMismatch) {
        reject(new BangerError("E_STATE", `ssh host key mismatch for ${target.host}:${target.port}: the guest did not present its pinned key`, { cause: err }));
      } else {
        reject(new BangerError("E_STATE", `ssh connect to ${label} failed: ${errorMessage(err)}`, { cause: err }));
      }
    });
    client.on("close", () => {
      if (settled) return;
      settled = true;
      reject(new BangerError("E_STATE", `ssh connect to ${label} failed: connection closed`));
    });
    try {
      client.connect(config);
    } catch (e) {
      settled = true;
      reject(new BangerError("E_STATE", `ssh connect to ${label} failed: ${errorMessage(e)}`, { cause: e }));
    }
  });
}

/** A GuestSSH dialer over the ssh2 package, with the guest's host key pinned (no TOFU). */
export function createSSHDialer(): SSHDialer {
  return {
    async dial(target: SSHTarget): Promise<GuestSSH> {
      return new _SSH2Guest(await connectPinned(target), `${target.user}@${target.host}:${target.port}`);
    },
  };
}
