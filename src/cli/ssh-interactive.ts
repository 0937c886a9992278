import { config } from "../host/config.ts";
import { connectPinned } from "../host/ssh.ts";
import { log } from "./log.ts";

/** An interactive PTY shell straight from the CLI (raw mode, window size follows the terminal). */
export async function interactiveShell(info: { host: string; port: number; user: string; privateKey: string; hostKey: string }): Promise<number> {
  const conn = await connectPinned(info);
  const stdin = process.stdin;
  const tty = !!stdin.isTTY;
  return new Promise<number>((resolve) => {
    const win = { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24, term: config.term || "xterm-256color" };
    conn.shell(win, (err, stream) => {
      if (err) {
        log().error(`ssh shell: ${err.message}`);
        conn.end();
        return resolve(1);
      }
      if (tty) stdin.setRawMode(true);
      stdin.resume();
      stdin.pipe(stream);
      stream.pipe(process.stdout);
      stream.stderr.pipe(process.stderr);
      const onResize = () => stream.setWindow(process.stdout.rows || 24, process.stdout.columns || 80, 0, 0);
      process.stdout.on("resize", onResize);
      let code = 0;
      stream.on("exit", (c: number | null) => (code = c ?? 0));
      stream.on("close", () => {
        process.stdout.off("resize", onResize);
        if (tty) stdin.setRawMode(false);
        stdin.unpipe(stream);
        stdin.pause();
        conn.end();
        resolve(code);
      });
    });
  });
}
