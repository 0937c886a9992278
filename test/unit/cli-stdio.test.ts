import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const STDIO = join(import.meta.dir, "../../src/host/stdio.ts");

// a child process, so fds 1 and 2 are pipes we read back
function child(code: string): { stdout: string; stderr: string; exitCode: number } {
  const p = Bun.spawnSync([process.execPath, "-e", `import { fdIsTTY, writeOut } from ${JSON.stringify(STDIO)};\n${code}`], { stdout: "pipe", stderr: "pipe" });
  return { stdout: p.stdout.toString(), stderr: p.stderr.toString(), exitCode: p.exitCode ?? -1 };
}

describe("cli stdio", () => {
  test("a pipe is not a TTY; writes arrive whole and in order, also right before process.exit", () => {
    const big = "x".repeat(300_000);
    // more than a pipe holds (64 KiB): the reader drains it while the child writes
    const r = child(`writeOut(1, JSON.stringify([fdIsTTY(1), fdIsTTY(2)]) + "\\n"); writeOut(1, "x".repeat(300000)); writeOut(2, "err\\n"); writeOut(1, "\\nend\\n"); process.exit(3);`);
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toBe(`[false,false]\n${big}\nend\n`);
    expect(r.stderr).toBe("err\n");
  });

  test("/dev/null is a character device but not a terminal; a pty is one", () => {
    const p = Bun.spawnSync([process.execPath, "-e", `import { fdIsTTY } from ${JSON.stringify(STDIO)};\nrequire("node:fs").writeSync(2, JSON.stringify(fdIsTTY(1)));`], { stdout: "ignore", stderr: "pipe" });
    expect(p.stderr.toString()).toBe("false");
    // script(1) gives the child a pty on stdout
    const script = Bun.which("script");
    if (!script) {
      console.warn("skip: the pty half of this test needs script(1) (util-linux)");
      return;
    }
    const t = Bun.spawnSync([script, "-qec", `${process.execPath} -e 'import { fdIsTTY } from ${JSON.stringify(STDIO)}; console.log("tty=" + fdIsTTY(1))'`, "/dev/null"], { stdout: "pipe", stderr: "pipe" });
    expect(t.stdout.toString()).toContain("tty=true");
  });

  test("bytes are written as given", () => {
    const r = child(`writeOut(1, new Uint8Array([0xe2, 0x9c, 0x93, 0x0a]));`);
    expect(r.stdout).toBe("✓\n");
  });
});
