// envd's processes through the unmodified `e2b` SDK on a real QEMU (TCG)
// guest of the `base` template: commands.run output and exit codes, stdin,
// a background process that outlives a kill -9 of the daemon and is
// reconnected by pid, kill, a timeout, a PTY with input and resize, and
// pause/connect keeping a running process and a file. One sandbox for the file.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { AuthenticationError, CommandExitError, Sandbox, TimeoutError } from "e2b";
import { e2e, e2eHome, e2eReady, IMAGE_DIR, qemuPidsUnder } from "../helpers/e2e.ts";
import { killAndWait, waitFor } from "../helpers/cli.ts";

e2e.describe("E2B commands and PTY on a real QEMU guest", () => {
  const h = e2eReady ? e2eHome("banger-e2b-cmd-") : (null as never);
  const run = (args: string[]) => h.run(args);
  let opts = { apiUrl: "", sandboxUrl: "", apiKey: "" };
  let sb: Sandbox;
  const timings: Record<string, number[]> = {};
  const timed = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      (timings[label] ??= []).push(Math.round(performance.now() - t0));
    }
  };

  beforeAll(async () => {
    const cached = join(dirname(IMAGE_DIR), "e2b-base");
    const r = existsSync(join(cached, "rootfs.ext4"))
      ? run(["image", "import", "--name", "e2b-base", "--kernel", join(cached, "vmlinuz"), "--rootfs", join(cached, "rootfs.ext4"), "--initrd", join(cached, "initrd.img")])
      : run(["e2b", "template", "build"]);
    if (r.code !== 0) throw new Error(`e2b-base: ${r.stderr}`);
    expect(run(["e2b", "serve", "--listen", "127.0.0.1:0", "--vmm", "qemu"]).code).toBe(0);
    const vars = Object.fromEntries([...run(["e2b", "env"]).stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    opts = { apiUrl: vars.E2B_API_URL!, sandboxUrl: vars.E2B_SANDBOX_URL!, apiKey: vars.E2B_API_KEY! };
    sb = await Sandbox.create("base", { ...opts, timeoutMs: 900_000, envs: { FROM_CREATE: "c r;$(x)" } });
  }, 600_000);

  afterAll(async () => {
    console.log(`e2b commands e2e timings (ms): ${JSON.stringify(timings)}`);
    for (const v of (run(["vm", "list", "--json"]).json() as { name: string }[]) ?? []) run(["vm", "delete", v.name, "--force"]);
    const left = qemuPidsUnder(h.home);
    await h.cleanup(left);
    expect(left).toEqual([]);
  });

  test("commands.run: stdout, stderr, exit code, envs from create and per call, cwd, user", async () => {
    for (let i = 0; i < 3; i++) await timed("commands.run(true)", () => sb.commands.run("true"));
    const r = await timed("commands.run(echo)", () => sb.commands.run(`echo "$FROM_CREATE|$X|$(pwd)|$(id -un)"; echo oops >&2`, { envs: { X: "it's" }, cwd: "/tmp" }));
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, "c r;$(x)|it's|/tmp|user\n", "oops\n"]);
    expect((await sb.commands.run("id -un", { user: "root" })).stdout).toBe("root\n");
    const failed = await sb.commands.run("echo partial; exit 7").catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CommandExitError);
    expect([(failed as CommandExitError).exitCode, (failed as CommandExitError).stdout]).toEqual([7, "partial\n"]);
  }, 300_000);

  test("one user rule for commands and files: a named user the guest lacks is AuthenticationError for both (a hostile name only a name); none named is `user` for both", async () => {
    for (const user of ["no-such-user", "it's;$(touch /tmp/pwned)"]) {
      const c = await sb.commands.run("true", { user }).catch((e: unknown) => e);
      const f = await sb.files.write("x.txt", "x", { user }).catch((e: unknown) => e);
      for (const e of [c, f]) {
        expect(e).toBeInstanceOf(AuthenticationError);
        expect(String(e)).toContain(`error looking up user '${user}': unknown user`);
      }
    }
    expect((await sb.commands.run("test ! -e /tmp/pwned && echo clean", { user: "root" })).stdout).toBe("clean\n");
    // the base template's default is `user`, for files too
    expect((await sb.files.write("mine.txt", "m")).path).toBe("/home/user/mine.txt");
    // (an image without `user` acting as root: test/integration/e2b-process.test.ts, test/e2e/e2b-files.test.ts)
  }, 300_000);

  test("stdin: sendStdin then closeStdin ends the reader with what was sent", async () => {
    const p = await sb.commands.run("cat; echo done", { background: true, stdin: true });
    await sb.commands.sendStdin(p.pid, "line one\n");
    await sb.commands.sendStdin(p.pid, "line 'two'\n");
    await sb.commands.closeStdin(p.pid);
    const out = await p.wait();
    expect([out.exitCode, out.stdout]).toEqual([0, "line one\nline 'two'\ndone\n"]);
  }, 300_000);

  test("a background process outlives a kill -9 of the daemon: listed and reconnected by pid on the next daemon, then killed", async () => {
    const p = await sb.commands.run("for i in $(seq 1 600); do echo tick-$i; sleep 0.5; done", { background: true });
    const dead = h.daemonPid();
    killAndWait(dead);
    // the next CLI call starts a daemon, which listens on the E2B port it remembered
    expect(run(["e2b", "status", "--json"]).code).toBe(0);
    expect(h.daemonPid()).not.toBe(dead);
    const again = await Sandbox.connect(sb.sandboxId, opts);
    expect((await again.commands.list()).map((x) => x.pid)).toContain(p.pid);
    let seen = "";
    const handle = await again.commands.connect(p.pid, { onStdout: (d) => void (seen += d) });
    expect(await waitFor(() => /tick-\d+/.test(seen), 60_000, 100)).toBe(true);
    expect(await again.commands.kill(p.pid)).toBe(true);
    const end = await handle.wait().catch((e: unknown) => e);
    expect(end).toBeInstanceOf(CommandExitError); // killed: no clean exit
    expect((await again.commands.list()).map((x) => x.pid)).not.toContain(p.pid);
    sb = again;
  }, 300_000);

  test("timeoutMs: the SDK's TimeoutError and the process gone from the guest", async () => {
    const err = await sb.commands.run("sleep 301", { timeoutMs: 4000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    // -x: the whole command line is exactly that, so the asking shell (whose line contains it) is not counted
    const sleeping = async () => (await sb.commands.run("pgrep -fx 'sleep 301' || true")).stdout;
    expect(await waitFor(async () => (await sleeping()) === "", 60_000, 1000)).toBe(true);
  }, 300_000);

  test("PTY: a shell with a terminal, input, resize, kill", async () => {
    let out = "";
    const dec = new TextDecoder();
    const t = await sb.pty.create({ cols: 80, rows: 24, onData: (d) => void (out += dec.decode(d)) });
    await sb.pty.sendInput(t.pid, new TextEncoder().encode("stty size; echo x-$((6*7))\n"));
    expect(await waitFor(() => out.includes("24 80") && out.includes("x-42"), 60_000, 100)).toBe(true);
    await sb.pty.resize(t.pid, { cols: 100, rows: 40 });
    await sb.pty.sendInput(t.pid, new TextEncoder().encode("stty size\n"));
    expect(await waitFor(() => out.includes("40 100"), 60_000, 100)).toBe(true);
    expect(await sb.pty.kill(t.pid)).toBe(true);
  }, 300_000);

  test("pause and connect keep a running process and a file", async () => {
    await sb.files.write("keep.txt", "kept across pause\n");
    const p = await sb.commands.run("sleep 900", { background: true });
    expect(await sb.pause()).toBe(true);
    const again = await Sandbox.connect(sb.sandboxId, opts);
    expect(await again.files.read("keep.txt")).toBe("kept across pause\n");
    expect((await again.commands.list()).map((x) => x.pid)).toContain(p.pid);
    expect(await again.commands.kill(p.pid)).toBe(true);
    expect(await Sandbox.kill(sb.sandboxId, opts)).toBe(true);
  }, 300_000);
});
