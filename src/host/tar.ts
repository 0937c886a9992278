import { BangerError } from "../shared/errors.ts";
import { lastLine, missingToolMessage } from "./tools.ts";

/** Bytes of a tar stream, as produced by a tar process. */
export type TarStream = AsyncIterable<Uint8Array>;

/** Runs `tar` on the host; injected so tests can record or replace it. */
export interface TarRunner {
  /** `tar -C cwd --null -T - -cf -` with `paths` on stdin (NUL-separated), minus `excludes`. */
  create(cwd: string, paths: string[], excludes: string[]): TarStream;
}

/** The real tar, through Bun.spawn (Exec buffers output as text; a tar is binary and may be large). */
export function createTarRunner(): TarRunner {
  return {
    async *create(cwd, paths, excludes) {
      const args = ["tar", "-C", cwd, "--anchored", ...excludes.map((e) => `--exclude=${e}`), "--no-anchored", "--null", "--verbatim-files-from", "-T", "-", "-cf", "-"];
      let proc;
      try {
        proc = Bun.spawn(args, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
      } catch (e) {
        throw new BangerError("E_MISSING_TOOL", missingToolMessage("tar"), { cause: e });
      }
      const errText = new Response(proc.stderr).text();
      try {
        // awaited so a failing pending write lands in this catch, not as an unhandled rejection
        await proc.stdin.write(paths.join("\0") + (paths.length ? "\0" : ""));
        await proc.stdin.end();
      } catch {
        // a tar that died before reading its list: its exit code and stderr below say why
      }
      let finished = false;
      let bytes = 0;
      try {
        for await (const chunk of proc.stdout) {
          bytes += chunk.length;
          yield chunk;
        }
        finished = true;
      } finally {
        if (!finished) proc.kill();
      }
      const code = await proc.exited;
      // 1 = "some files changed while being read": the archive is still whole (but then there is one)
      if (code !== 0 && !(code === 1 && bytes > 0)) throw new BangerError("E_INTERNAL", `tar failed (exit ${code}) in ${cwd}: ${lastLine(await errText)}`);
    },
  };
}
