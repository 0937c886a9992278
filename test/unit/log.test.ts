// The CLI's stderr lines and the daemon log go through consola (core only) with reporters
// that print exactly banger's formats; tests elsewhere grep both.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createDaemonLogger } from "../../src/daemon/log.ts";

const LOG = join(import.meta.dir, "../../src/cli/log.ts");

function child(code: string, env: Record<string, string> = {}): { stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, "-e", `import { log, setVerbosity } from ${JSON.stringify(LOG)};\n${code}`], { stdout: "pipe", stderr: "pipe", env: { ...process.env, BANGER_DEBUG: "", ...env } });
  return { stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("daemon log", () => {
  test("`ISO LEVEL message` lines; debug only when asked; repeats are never throttled", () => {
    const lines: string[] = [];
    const log = createDaemonLogger(false, (l) => lines.push(l));
    log.info("listening on /x");
    log.warn("careful");
    log.error("broken");
    log.debug("hidden");
    for (let i = 0; i < 8; i++) log.info("same line");
    expect(lines.length).toBe(11);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO listening on \/x\n$/);
    expect(lines[1]).toEndWith(" WARN careful\n");
    expect(lines[2]).toEndWith(" ERROR broken\n");
    const chatty: string[] = [];
    createDaemonLogger(true, (l) => chatty.push(l)).debug("shown");
    expect(chatty[0]).toMatch(/Z DEBUG shown\n$/);
  });
});

describe("CLI stderr lines", () => {
  test("errors and warnings are `banger: …`; raw (progress) lines as shaped; nothing on stdout", () => {
    const r = child(`log().error("vm not found: x"); log().warn("careful"); log().withTag("raw").info("[0.1s] booting\\n"); log().debug("hidden");`);
    expect(r.stderr).toBe("banger: vm not found: x\nbanger: careful\n[0.1s] booting\n");
    expect(r.stdout).toBe("");
  });

  test("--quiet keeps errors and warnings only; --verbose (or BANGER_DEBUG) adds detail", () => {
    const say = `log().error("e"); log().warn("w"); log().withTag("raw").info("[0.0s] p\\n"); log().debug("d");`;
    expect(child(`setVerbosity("quiet"); ${say}`).stderr).toBe("banger: e\nbanger: w\n");
    expect(child(`setVerbosity("verbose"); ${say}`).stderr).toBe("banger: e\nbanger: w\n[0.0s] p\nd\n");
    expect(child(say, { BANGER_DEBUG: "1" }).stderr).toBe("banger: e\nbanger: w\n[0.0s] p\nd\n");
  });
});
