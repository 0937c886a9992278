// The host's tool runner (src/host/exec.ts run) against real processes: output, exit codes, input, env,
// cwd, line progress, a timeout, a tool not found, one not executable, one killed by a signal.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createExec } from "../../src/host/exec.ts";
import { caught } from "../helpers/fakes.ts";

const exec = createExec();
const dir = mkdtempSync(join(tmpdir(), "banger-exec-it's; $(x)\n"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const HOSTILE = "it's; $(touch /tmp/pwned) `x` \"q\"\n\\ ünï\0end";

test("stdout and stderr apart and whole (no trailing newline stripped), exit 0", async () => {
  expect(await exec.run("sh", ["-c", 'printf "out\\n"; printf "err\\n" >&2; printf "more"'])).toEqual({ stdout: "out\nmore", stderr: "err\n", exitCode: 0 });
});

test("a non-zero exit: one line with the subcommand and the tool's last line; with check false, the result", async () => {
  const e = await caught(exec.run("sh", ["-c", "echo first >&2; echo 'the reason' >&2; exit 3"]));
  expect(e.code).toBe("E_INTERNAL");
  expect(e.message).toBe("sh failed (exit 3): the reason");
  expect((await caught(exec.run("sh", ["create", "x"]))).message).toMatch(/^sh create failed \(exit 2\): .*create/);
  expect(await exec.run("sh", ["-c", "echo o; exit 4"], { check: false })).toEqual({ stdout: "o\n", stderr: "", exitCode: 4 });
});

test("input reaches stdin byte for byte (hostile text, NUL, bytes); without input stdin is empty, not a pipe left open", async () => {
  expect((await exec.run("cat", [], { input: HOSTILE })).stdout).toBe(HOSTILE);
  const bytes = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff);
  const r = await exec.run("sh", ["-c", "od -An -v -tu1 | wc -w"], { input: bytes.subarray(1000) });
  expect(r.stdout.trim()).toBe(String(bytes.length - 1000));
  // cat would wait forever on an open pipe
  expect((await exec.run("cat", [], { timeoutMs: 10_000 })).stdout).toBe("");
  // a tool that exits without reading its input is answered by its exit code
  expect((await exec.run("sh", ["-c", "exit 0"], { input: "x".repeat(1 << 20) })).exitCode).toBe(0);
});

test("env adds to the daemon's own (an undefined value leaves it out); cwd is where it runs", async () => {
  const r = await exec.run("sh", ["-c", 'printf "%s|%s|%s" "$BANGER_T_A" "${BANGER_T_B-unset}" "$PATH"'], { env: { BANGER_T_A: HOSTILE.replace("\0", ""), BANGER_T_B: undefined } });
  expect(r.stdout).toBe(`${HOSTILE.replace("\0", "")}|unset|${process.env.PATH}`);
  expect((await exec.run("pwd", [], { cwd: dir })).stdout).toBe(`${dir}\n`);
});

test("onLine gets every whole line of stdout and stderr as it comes, each stream's own", async () => {
  const lines: string[] = [];
  await exec.run("sh", ["-c", 'printf "a1\\na"; printf "b1\\nb" >&2; sleep 0.1; printf "2\\n"; printf "2\\n" >&2; printf "tail"'], { onLine: (l) => lines.push(l) });
  expect(lines.sort()).toEqual(["a1", "a2", "b1", "b2"]);
});

test("a timeout ends the tool (SIGTERM) and is E_TIMEOUT; one that ignores SIGTERM is killed", async () => {
  const t0 = performance.now();
  const e = await caught(exec.run("sleep", ["30"], { timeoutMs: 200 }));
  expect(e.code).toBe("E_TIMEOUT");
  expect(e.message).toBe("sleep timed out after 200 ms");
  expect(performance.now() - t0).toBeLessThan(5000);
  // SIGTERM ignored: SIGKILL 5 s later
  const t1 = performance.now();
  const stubborn = await caught(exec.run("sh", ["-c", "trap '' TERM; while :; do sleep 0.05; done"], { timeoutMs: 200 }));
  expect(stubborn.code).toBe("E_TIMEOUT");
  expect(performance.now() - t1).toBeGreaterThan(5000);
}, 30_000);

test("not found is E_MISSING_TOOL naming it; not executable is exit 1 with the reason; killed by a signal is exit 128", async () => {
  const e = await caught(exec.run("banger-no-such-tool", ["x"]));
  expect(e.code).toBe("E_MISSING_TOOL");
  expect(e.message).toContain("banger-no-such-tool");
  const notExec = join(dir, "not-exec");
  writeFileSync(notExec, "#!/bin/sh\necho hi\n");
  chmodSync(notExec, 0o644);
  const r = await exec.run(notExec, [], { check: false });
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toMatch(/EACCES|permission denied/i);
  expect((await exec.run("sh", ["-c", "kill -9 $$"], { check: false })).exitCode).toBe(128);
});
