import { BangerError } from "../../src/plugin-api.ts";
import type { ExecStreamOptions, FifoEnd, Host } from "../../src/plugin-api.ts";

/**
 * The host side of the guest agent (plugins/image/init.sh: a resident bash
 * reading a virtio-serial port, which QEMU puts on a pipe chardev: FIFOs
 * `${pipe}.in`, `${pipe}.out`). A script sent there runs in a subshell of
 * that bash: no SSH handshake and no bash start, ~0.15 s less guest CPU per
 * restore under TCG than the same script over an SSH exec (measured). Used
 * right after a restore (clock, a clone's identity); everything else goes
 * over SSH.
 */

/** What the guest's init prints on its console once its agent reads the port (before BANGER-READY). */
export const AGENT_MARKER = "BANGER-AGENT";

/** Runs a bash script in the guest, its stdin, stdout and stderr as an SSH exec's; resolves with its exit code. */
export type GuestRunner = (script: string, io: ExecStreamOptions) => Promise<number>;

/** How often the FIFOs are looked at during an exchange (a clock ping's round trip is a few ms). */
const _POLL_MS = 2;
/** How often, meanwhile, the VM's process is looked at: a VMM that died answers nothing, and should fail at once. */
const _ALIVE_EVERY_MS = 200;
/** A guest may write anything: a line longer than this is not one of ours. */
const _MAX_LINE = 64 * 1024;

/**
 * The agent said nothing at all by `silentBy`: it is not reading the port (killed in the guest before the
 * snapshot was taken, say). Nothing of the script has run, or it runs without us: the caller may go over SSH.
 */
export class AgentSilent extends BangerError {
  constructor() {
    super("E_TIMEOUT", "the guest agent did not answer");
  }
}

/**
 * A GuestRunner over the agent at `pipe`; each run fails past `deadline` (the host's clock, ms) or on `signal`,
 * and with AgentSilent when not a byte came back by `silentBy`.
 */
export function agentRunner(host: Host, pipe: string, o: { deadline: number; silentBy?: number; alive?: () => Promise<boolean> }): GuestRunner {
  return (script, io) => agentRun(host, pipe, script, { ...io, ...o });
}

/**
 * One exchange: `run NONCE LENGTH`, the script; the guest's stdout lines come
 * back until `banger-agent NONCE exit CODE LAST-STDERR-LINE`. stdin chunks are
 * written as they come, until that line. What an earlier exchange left unread
 * is dropped first, and lines of another nonce are the script's output, never
 * its end.
 */
export async function agentRun(host: Host, pipe: string, script: string, io: ExecStreamOptions & { deadline: number; silentBy?: number; alive?: () => Promise<boolean> }): Promise<number> {
  const out = await host.fs.openFifo(`${pipe}.out`, "read");
  let into: FifoEnd | undefined;
  let ended = false;
  const now = () => host.clock.now().getTime();
  let answered = false;
  const check = () => {
    if (io.signal?.aborted) throw new BangerError("E_STATE", "guest agent exchange cancelled");
    if (!answered && io.silentBy !== undefined && now() >= io.silentBy) throw new AgentSilent();
    if (now() >= io.deadline) throw new BangerError("E_TIMEOUT", "the guest agent did not answer in time");
  };
  const writeAll = async (data: Uint8Array) => {
    let off = 0;
    while (off < data.length && !ended) {
      const n = into!.write(data.subarray(off));
      off += n;
      if (n === 0) {
        check();
        await host.clock.sleep(_POLL_MS);
      }
    }
  };
  try {
    into = await host.fs.openFifo(`${pipe}.in`, "write");
    out.read();
    const nonce = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex");
    const body = new TextEncoder().encode(script);
    await writeAll(new Uint8Array(Buffer.concat([Buffer.from(`run ${nonce} ${body.length}\n`), body])));
    const stdin = io.stdin;
    if (stdin && typeof stdin !== "string" && !(stdin instanceof Uint8Array)) {
      // the exchange's end (or failure) ends it: it writes nothing after that
      void (async () => {
        for await (const chunk of stdin) {
          if (ended) break;
          await writeAll(chunk);
        }
      })().catch(() => {});
    } else if (stdin !== undefined) {
      await writeAll(typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin);
    }
    const decoder = new TextDecoder();
    const end = new RegExp(`^banger-agent ${nonce} exit (\\d+) ?(.*)$`);
    let buf = "";
    let lookedAlive = now();
    for (;;) {
      const got = out.read();
      if (got.length === 0) {
        check();
        if (io.alive && now() - lookedAlive >= _ALIVE_EVERY_MS) {
          lookedAlive = now();
          if (!(await io.alive())) throw new BangerError("E_STATE", "the VM's process exited while its guest agent was asked");
        }
        await host.clock.sleep(_POLL_MS);
        continue;
      }
      answered = true;
      buf += decoder.decode(got, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = end.exec(line);
        if (m) {
          ended = true;
          if (m[2]) io.onStderr?.(new TextEncoder().encode(m[2] + "\n"));
          return Number(m[1]);
        }
        io.onStdout?.(new TextEncoder().encode(line + "\n"));
      }
      if (buf.length > _MAX_LINE) throw new BangerError("E_STATE", `the guest agent sent a line over ${_MAX_LINE} bytes`);
    }
  } finally {
    ended = true;
    into?.close();
    out.close();
  }
}
