// Derived images through dist/banger, for real but without a VM: a tiny
// busybox rootfs (mkfs.ext4 -d) imported as the base, then `image build
// --from` runs its steps and copies in a real chroot (derive.sh under
// unshare), and the result is read back with debugfs. Hostile values in
// steps, env and paths; the bad-input cases; nothing left behind.
import { afterAll, beforeAll, expect } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BANGER, killAndWait, tempHome, waitFor } from "../helpers/cli.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";

const BUSYBOX = ["/usr/bin/busybox", "/bin/busybox"].find((p) => existsSync(p)) ?? "";
const why = firstMissing([IS_ROOT, "needs root (loop mount, chroot, unshare)"], [!!BUSYBOX, "needs busybox-static"]);
const { describe, test } = needs(!why, why);

describe("image build --from (real chroot, busybox base)", () => {
  const h = !why ? tempHome("banger-derive-") : (null as never);
  const src = h ? `${h.home}-src` : "";

  /** A file's content in an image's rootfs, read with debugfs (no mount). */
  const cat = (image: string, path: string) =>
    Bun.spawnSync(["debugfs", "-R", `cat "${path}"`, join(h.home, "images", image, "rootfs.ext4")]).stdout.toString();
  const loopsOf = () => Bun.spawnSync(["losetup", "-a"]).stdout.toString().split("\n").filter((l) => l.includes(h.home));
  const leftovers = () => readdirSync(join(h.home, "images")).filter((n) => n.startsWith("."));

  beforeAll(() => {
    const root = join(src, "root");
    for (const d of ["bin", "proc", "dev", "run", "tmp", "etc", "root"]) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "bin/busybox"), readFileSync(BUSYBOX));
    chmodSync(join(root, "bin/busybox"), 0o755);
    for (const a of ["sh", "echo", "cat", "mkdir", "cp", "dirname", "printf", "ls", "env", "true", "false", "sleep"]) symlinkSync("busybox", join(root, "bin", a));
    writeFileSync(join(root, "etc/base-marker"), "base\n");
    Bun.spawnSync(["truncate", "-s", "64M", join(src, "rootfs.ext4")]);
    const mk = Bun.spawnSync(["mkfs.ext4", "-q", "-F", "-d", root, join(src, "rootfs.ext4")]);
    if (mk.exitCode !== 0) throw new Error(mk.stderr.toString());
    writeFileSync(join(src, "vmlinuz"), "not a kernel; never booted here");
    mkdirSync(join(src, "conf/sub"), { recursive: true });
    writeFileSync(join(src, "conf/app.conf"), "port=1\n");
    writeFileSync(join(src, "conf/sub/it's; $(x)"), "hostile name\n");
    const r = h.run(["image", "import", "--name", "tiny", "--kernel", join(src, "vmlinuz"), "--rootfs", join(src, "rootfs.ext4")]);
    if (r.code !== 0) throw new Error(r.stderr);
  });
  afterAll(async () => {
    if (!h) return;
    await h.cleanup();
    Bun.spawnSync(["rm", "-rf", src]);
  });

  test("steps, env and copies land in the image; hostile values arrive intact; the same build again is a cache hit", () => {
    const hostile = "it's; $(echo pwned) `id`\nline2";
    const args = [
      "image", "build", "derived", "--from", "tiny",
      "--run", `printf '%s' "$V" > /etc/env-value`,
      "--run", `echo 'quote '"'"' semi; $(not run)' > /etc/step2`,
      "--env", `V=${hostile}`,
      "--copy", `${join(src, "conf")}:/opt/app`,
      "--copy", `${join(src, "conf/app.conf")}:/etc/deep/dir/app.conf`,
      // into a dir, as docker COPY: a trailing / (made if missing), or a dir that is there
      "--copy", `${join(src, "conf/app.conf")}:/srv/new/`,
      "--copy", `${join(src, "conf/sub/it's; $(x)")}:/etc`,
    ];
    const r = h.run([...args, "--json"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    const img = r.json();
    expect(img.built).toBe(true);
    expect(img.source).toBe("derived");
    expect(cat("derived", "/etc/env-value")).toBe(hostile);
    expect(cat("derived", "/etc/step2")).toBe("quote ' semi; $(not run)\n");
    expect(cat("derived", "/opt/app/app.conf")).toBe("port=1\n");
    expect(cat("derived", "/opt/app/sub/it's; $(x)")).toBe("hostile name\n");
    expect(cat("derived", "/etc/deep/dir/app.conf")).toBe("port=1\n");
    expect(cat("derived", "/srv/new/app.conf")).toBe("port=1\n");
    expect(cat("derived", "/etc/it's; $(x)")).toBe("hostile name\n");
    expect(cat("derived", "/srv/new/copy-file") + cat("derived", "/etc/copy-file")).toBe("");
    expect(cat("derived", "/etc/base-marker")).toBe("base\n");
    // the base is untouched
    expect(cat("tiny", "/etc/env-value")).toBe("");
    expect(img.chain.map((l: { name: string }) => l.name)).toEqual(["tiny", "derived"]);

    const t0 = performance.now();
    const again = h.run([...args, "--json"]);
    const ms = performance.now() - t0;
    expect(again.code).toBe(0);
    expect(again.json().built).toBe(false);
    expect(ms).toBeLessThan(1000);

    // an edited --copy source is a different recipe: refused under the taken name, built with --force
    writeFileSync(join(src, "conf/app.conf"), "port=2\n");
    const taken = h.run(args);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain("image already exists: derived");
    expect(h.run([...args, "--force"]).code).toBe(0);
    expect(cat("derived", "/opt/app/app.conf")).toBe("port=2\n");

    const show = h.run(["image", "show", "derived"]);
    expect(show.stdout).toContain("chain: tiny → derived");
    expect(show.stdout).toContain(`run: printf '%s' "$V" > /etc/env-value`);
    expect(leftovers()).toEqual([]);
    expect(loopsOf()).toEqual([]);
  }, 60_000);

  test("a failing step: its output tail and exit code, exit 1 (a failed build, not bad input), no image and nothing left", () => {
    // a line that looks like the build's own stage marker is just output
    const r = h.run(["image", "build", "broken", "--from", "tiny", "--run", "echo first; echo '@@banger stage done'; echo 'the reason' >&2; exit 7"]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("banger:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("run step 1");
    expect(lines[0]).toContain("failed with exit 7: first ⏎ @@banger stage done ⏎ the reason");
    expect(h.run(["image", "show", "broken"]).code).toBe(1);
    expect(leftovers()).toEqual([]);
    expect(existsSync(join(h.home, "images", "broken"))).toBe(false);
    expect(loopsOf()).toEqual([]);
  }, 30_000);

  test("a step's /dev is its own tmpfs with the usual nodes, never the host's: what it makes or removes there stays in the build", () => {
    const probe = `banger-probe-${process.pid}`;
    const r = h.run(["image", "build", "devs", "--from", "tiny", "--run", `touch /dev/${probe}; rm -f /dev/null 2>/dev/null; ls /dev > /etc/devs; echo x > /dev/null && head -c 4 /dev/urandom | wc -c > /etc/random-bytes`]);
    const leaked = existsSync(`/dev/${probe}`);
    if (leaked) Bun.spawnSync(["rm", "-f", `/dev/${probe}`]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    expect(leaked).toBe(false);
    expect(existsSync("/dev/null")).toBe(true);
    expect(cat("devs", "/etc/devs").trim().split("\n").sort()).toEqual([probe, "fd", "full", "null", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"].sort());
    expect(cat("devs", "/etc/random-bytes").trim()).toBe("4");
  });

  test("a step's background process dies with the build (pid namespace)", () => {
    const r = h.run(["image", "build", "bg", "--from", "tiny", "--run", "sleep 297 & echo started"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    const sleepers = Bun.spawnSync(["pgrep", "-f", "^sleep 297$"]).stdout.toString().trim();
    expect(sleepers).toBe("");
  }, 30_000);

  test("Ctrl-C on the CLI stops the build in the daemon: its step's processes end, no image, nothing left", async () => {
    const sleeping = () => Bun.spawnSync(["pgrep", "-f", "^sleep 301$"]).stdout.toString().trim();
    const cli = Bun.spawn([BANGER, "image", "build", "stopped", "--from", "tiny", "--run", "echo going; sleep 301; echo never"], { env: h.env, stdout: "ignore", stderr: "pipe" });
    expect(await waitFor(() => sleeping() !== "", 30_000)).toBe(true);
    cli.kill("SIGINT");
    await cli.exited;
    const t0 = performance.now();
    expect(await waitFor(() => sleeping() === "" && leftovers().length === 0, 15_000, 50)).toBe(true);
    // the chroot's step is interrupted at once (it gets SIGINT), not at the 10 s grace
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(h.run(["image", "show", "stopped"]).code).toBe(1);
    expect(existsSync(join(h.home, "images", "stopped"))).toBe(false);
    expect(loopsOf()).toEqual([]);
    const log = readFileSync(join(h.home, "daemon.log"), "utf8");
    expect(log).toMatch(/image build stopped: stopped, its requester went away \(unshare was stopped: its request was cancelled\); undoing it/);
    // the daemon goes on: the same build, uninterrupted, works
    expect(h.run(["image", "build", "stopped", "--from", "tiny", "--run", "echo fine > /etc/fine"]).code).toBe(0);
    expect(cat("stopped", "/etc/fine")).toBe("fine\n");
  }, 90_000);

  test("bad input: one line each, exit 1 or 2, nothing left", () => {
    const cases: [string[], number, string][] = [
      [["image", "build", "x1", "--from", "nope", "--run", "true"], 1, "base image not found: nope"],
      [["image", "build", "Bad_Name", "--from", "tiny", "--run", "true"], 2, "invalid image name"],
      [["image", "build", "x2", "--from", "tiny", "--packages", "jq;rm"], 2, 'invalid package name "jq;rm"'],
      [["image", "build", "x3", "--from", "tiny", "--copy", "/no/such/path:/x"], 2, "copy source not found: /no/such/path"],
      [["image", "build", "x4", "--from", "tiny", "--copy", "nocolon"], 2, "bad --copy"],
      [["image", "build", "x5", "--from", "tiny", "--size", "huge"], 2, "invalid size"],
      [["image", "build", "x6", "--from", "tiny", "--size", "1M"], 2, "smaller than the base's rootfs"],
      [["image", "build", "x7", "--from", "tiny", "--packages", "jq"], 2, "has no dpkg"],
      [["image", "build", "tiny", "--from", "tiny", "--run", "true"], 2, "cannot be built from itself"],
      [["image", "build", "x8", "--from", "tiny"], 2, "needs at least one of"],
    ];
    for (const [args, code, msg] of cases) {
      const r = h.run(args);
      const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("banger:"));
      expect({ args, code: r.code, lines: lines.length }).toEqual({ args, code, lines: 1 });
      expect(lines[0]).toContain(msg);
    }
    expect(leftovers()).toEqual([]);
    expect(loopsOf()).toEqual([]);
  }, 60_000);

  test("--file banger.image.ts: defineImage with no import, copy paths relative to the file; a syntax error is file:line", () => {
    const dir = join(src, "recipe");
    mkdirSync(join(dir, "files"), { recursive: true });
    writeFileSync(join(dir, "files/motd"), "from the file\n");
    writeFileSync(
      join(dir, "banger.image.ts"),
      `import type { ImageRecipe } from "banger/src/plugin-api.ts";
const steps: string[] = ${JSON.stringify([`printf '%s' "$GREETING" > /etc/greeting`])};
export default defineImage({
  name: "from-file",
  from: "tiny",
  run: steps,
  copy: [{ host: "./files/motd", guest: "/etc/motd" }],
  env: { GREETING: "hi $(there)" },
} satisfies ImageRecipe);
`,
    );
    const r = h.run(["image", "build", "--file", join(dir, "banger.image.ts"), "--json"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    expect(r.json().name).toBe("from-file");
    expect(cat("from-file", "/etc/greeting")).toBe("hi $(there)");
    expect(cat("from-file", "/etc/motd")).toBe("from the file\n");
    expect(h.run(["image", "build", "--file", join(dir, "banger.image.ts"), "--json"]).json().built).toBe(false);

    writeFileSync(join(dir, "bad.image.ts"), 'export default defineImage({\n  name: "x",\n  run: ["true"\n});\n');
    const bad = h.run(["image", "build", "--file", join(dir, "bad.image.ts")]);
    expect(bad.code).toBe(2);
    const lines = bad.stderr.trim().split("\n").filter((l) => l.startsWith("banger:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${join(dir, "bad.image.ts")}:4:`);
    const none = h.run(["image", "build", "--file", join(dir, "nope.image.ts")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("recipe file not found");
    expect(leftovers()).toEqual([]);
  }, 60_000);

  test("kill -9 of the daemon mid-build: the next daemon's sweep removes the temp dir and the step still running; no mount or loop stays", async () => {
    const marker = `banger-derive-crash-${process.pid}`;
    const child = Bun.spawn([join(import.meta.dir, "../../dist/banger"), "image", "build", "crashy", "--from", "tiny", "--run", `echo ${marker}; exec sleep 600`], {
      env: h.env,
      stdout: "ignore",
      stderr: "ignore",
    });
    // the step runs once a temp build dir exists and the chroot's sleep is up
    expect(await waitFor(() => leftovers().length === 1 && Bun.spawnSync(["pgrep", "-f", "^sleep 600$"]).exitCode === 0, 20_000, 100)).toBe(true);
    killAndWait(h.daemonPid());
    child.kill();
    const r = h.run(["image", "list", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("crashy");
    expect(await waitFor(() => leftovers().length === 0, 10_000, 100)).toBe(true);
    expect(Bun.spawnSync(["pgrep", "-f", "^sleep 600$"]).exitCode).toBe(1);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(h.home);
    expect(loopsOf()).toEqual([]);
  }, 60_000);
});
