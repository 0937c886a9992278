/**
 * Record which bytecode `banger vm list --json` runs, for scripts/build.sh's
 * second build (`--bytecode-order`): Bun lays the functions a recorded run
 * used out together at the front of the binary, so the command that bench
 * row P1 times reads less of it to start (bench/results.md, P1).
 *
 * The run is the early path as a user meets it (src/cli/entry.ts): a daemon
 * of this build answers the GET, and the answer is printed without loading
 * the CLI. The daemon is a stand-in served here, on a socket in a temp home,
 * so a build starts no daemon and needs none. Usage: bytecode-order.ts BIN OUT
 */
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";

const [bin, out] = process.argv.slice(2);
if (!bin || !out) throw new Error("usage: bun scripts/bytecode-order.ts BIN OUT");

const version = Bun.spawnSync([bin, "--version"]).stdout.toString().trim().replace(/^banger /, "");
const home = mkdtempSync("/tmp/banger-order-");
const asked: string[] = [];
const server = Bun.serve({
  unix: join(home, "bangerd.sock"),
  fetch(req) {
    asked.push(`${req.method} ${new URL(req.url).pathname}`);
    return Response.json({ vms: [] }, { headers: { "x-banger-version": version } });
  },
});
try {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", BANGER_HOME: home, NO_COLOR: "1", BUN_BYTECODE_ORDER_OUT: out };
  // async: the stand-in answers from this process's event loop
  const p = Bun.spawn([bin, "vm", "list", "--json"], { env, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  // the early path and nothing else: one GET answered and printed (a fallback to the CLI would record other code)
  if (code !== 0 || stdout !== "[]\n" || asked.join() !== "GET /v1/vms") {
    throw new Error(`the recorded run was not an early vm list: exit ${code}, stdout ${JSON.stringify(stdout)}, stderr ${JSON.stringify(stderr.trim())}, asked ${JSON.stringify(asked)}`);
  }
  if (!(await Bun.file(out).exists())) throw new Error(`${bin} wrote no order file (${out}): not a --bytecode build?`);
} finally {
  await server.stop(true);
  rmSync(home, { recursive: true, force: true });
}
