// The host's tool runner (src/host/exec.ts run) against real processes: output, exit codes, input, env,
// cwd, line progress, a timeout, a tool not found, one not executable, one killed by a signal.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createExec } from "../../src/host/exec.ts";
import { caught } from "../helpers/fakes.ts";
import { waitFor } from "../helpers/cli.ts";

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

/** Is this pid still a process (a zombie counts as gone)? */
function running(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

// The sleeps here (and in exec-agent-host.test.ts) have lengths of their own: image-derive.test.ts looks for any
// `sleep 300` on the host.
test("an abort sends SIGINT to the tool's whole group, lets it clean up, and rejects E_CANCELLED; a run asked after it never starts", async () => {
  const pids = join(dir, "pids");
  const cleaned = join(dir, "cleaned");
  const ac = new AbortController();
  // the tool and a grandchild of its own; on SIGINT the tool takes 300 ms to clean up (as mmdebstrap unmounts)
  const script = `sleep 311 & echo $! > "$1"; trap 'sleep 0.3; echo done > "$2"; exit 1' INT; while :; do sleep 0.05; done`;
  const run = caught(exec.run("bash", ["-c", script, "bash", pids, cleaned], { signal: ac.signal }));
  let grandchild = 0;
  for (let i = 0; i < 200 && !grandchild; i++) {
    await Bun.sleep(10);
    grandchild = Number(readFileSync(pids, { encoding: "utf8", flag: "a+" }).trim()) || 0;
  }
  expect(grandchild).toBeGreaterThan(0);
  const t0 = performance.now();
  ac.abort();
  const e = await run;
  expect(e.code).toBe("E_CANCELLED");
  expect(e.message).toBe("bash was stopped: its request was cancelled");
  expect(performance.now() - t0).toBeLessThan(5000);
  expect(readFileSync(cleaned, "utf8")).toBe("done\n");
  expect(await waitFor(() => !running(grandchild), 2000)).toBe(true);
  // already aborted: refused before it starts (the file is not made)
  const e2 = await caught(exec.run("touch", [join(dir, "never")], { signal: ac.signal }));
  expect(e2.code).toBe("E_CANCELLED");
  expect(existsSync(join(dir, "never"))).toBe(false);
}, 30_000);

test("a tool that ignores SIGINT is killed abortGraceMs after the abort, with its group", async () => {
  const ac = new AbortController();
  const pids = join(dir, "pids2");
  const run = caught(exec.run("bash", ["-c", `trap '' INT; sleep 312 & echo $! > "$1"; while :; do sleep 0.05; done`, "bash", pids], { signal: ac.signal, abortGraceMs: 400 }));
  await waitFor(() => existsSync(pids) && readFileSync(pids, "utf8").trim() !== "", 5000);
  const grandchild = Number(readFileSync(pids, "utf8").trim());
  const t0 = performance.now();
  ac.abort();
  expect((await run).code).toBe("E_CANCELLED");
  const took = performance.now() - t0;
  expect(took).toBeGreaterThanOrEqual(350);
  expect(took).toBeLessThan(5000);
  expect(await waitFor(() => !running(grandchild), 2000)).toBe(true);
}, 30_000);

test("a tool done before any abort is its result; an abort after it ends changes nothing", async () => {
  const ac = new AbortController();
  expect((await exec.run("echo", ["hi"], { signal: ac.signal })).stdout).toBe("hi\n");
  ac.abort();
});
