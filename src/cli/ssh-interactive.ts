import { config } from "../host/config.ts";
import { BangerError } from "../shared/errors.ts";
import { connectPinned } from "../host/ssh.ts";
import { log } from "./log.ts";
import type { DaemonClient } from "../client/daemon-client.ts";
import { outStream } from "../host/stdio.ts";

/**
 * Hold a VM in use until release(): the daemon does not see what goes over an
 * SSH connection of ours, so without this a VM's idle timeout would stop it
 * under a shell someone is typing in. A hold cut by a daemon restart is taken
 * again once the daemon answers.
 */
export function holdInUse(client: Pick<DaemonClient, "stream">, vm: string, opts: { retryMs?: number; onRefused?: (e: BangerError) => void } = {}): { release(): Promise<void> } {
  const ctl = new AbortController();
  const held = (async () => {
    while (!ctl.signal.aborted) {
      try {
        await client.stream("lifetimeHold", { params: { vm } }, () => {}, ctl.signal);
      } catch (e) {
        // the daemon's own answer that the VM cannot be used (its VMM halted it): no use holding it; a dropped
        // daemon (E_DAEMON, a restart) is held again once it answers
        if (e instanceof BangerError && e.code === "E_STATE" && !ctl.signal.aborted) {
          opts.onRefused?.(e);
          return;
        }
      }
      if (!ctl.signal.aborted) await Bun.sleep(opts.retryMs ?? 1000);
    }
  })();
  return {
    release: async () => {
      ctl.abort();
      await held;
    },
  };
}

/** An interactive PTY shell straight from the CLI (raw mode, window size follows the terminal); `cut` ends it at once (exit 1). */
export async function interactiveShell(info: { host: string; port: number; user: string; privateKey: string; hostKey: string }, cut?: AbortSignal): Promise<number> {
  const conn = await connectPinned(info);
  const stdin = process.stdin;
  const tty = !!stdin.isTTY;
  return new Promise<number>((resolve) => {
    if (cut?.aborted) {
      conn.end();
      return resolve(1);
    }
    const win = { cols: outStream(1).columns || 80, rows: outStream(1).rows || 24, term: config.term || "xterm-256color" };
    conn.shell(win, (err, stream) => {
      if (err) {
        log().error(`ssh shell: ${err.message}`);
        conn.end();
        return resolve(1);
      }
      if (tty) stdin.setRawMode(true);
      stdin.resume();
      stdin.pipe(stream);
      stream.pipe(outStream(1));
      stream.stderr.pipe(outStream(2));
      const onResize = () => stream.setWindow(outStream(1).rows || 24, outStream(1).columns || 80, 0, 0);
      outStream(1).on("resize", onResize);
      let code = 0;
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        cut?.removeEventListener("abort", onCut);
        outStream(1).off("resize", onResize);
        if (tty) stdin.setRawMode(false);
        stdin.unpipe(stream);
        stdin.pause();
        conn.end();
        resolve(code);
      };
      // a guest that cannot answer (halted) never closes the channel: we do
      const onCut = () => {
        code = 1;
        close();
      };
      cut?.addEventListener("abort", onCut, { once: true });
      stream.on("exit", (c: number | null) => (code = c ?? 0));
      stream.on("close", close);
    });
  });
}
