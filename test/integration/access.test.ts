// Access: the daemon's socket and state dir are private, a state dir or socket
// owned by another user is refused (by the CLI and the daemon), per-VM keys are
// 0600, and credentials and session payloads never reach the daemon log or any
// --json output. Needs root for the chown cases (skipped otherwise).
// No TCP listener: test/integration/daemon.test.ts; a changed guest host key: test/integration/ssh.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BANGER, tempHome } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";
import { needs } from "../helpers/skip.ts";
import { guestLogin } from "../helpers/sshd.ts";

const ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
const HTTPS = "https://";
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function cli(home: string, args: string[]) {
  const p = Bun.spawnSync([BANGER, ...args], { env: { ...process.env, BANGER_HOME: home, NO_COLOR: "1" } });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

needs(ROOT, "needs root (chowns a state dir and a socket to another user)").describe("another user's state dir or socket is refused", () => {
  test("a state dir owned by nobody: the CLI refuses, starts no daemon, touches nothing", () => {
    const home = mkdtempSync(join(tmpdir(), "banger-foreign-"));
    dirs.push(home);
    chownSync(home, NOBODY, NOBODY);
    const before = statSync(home).mode & 0o777;
    const r = cli(home, ["vm", "list", "--json"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`belongs to uid ${NOBODY}`);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(readdirSync(home)).toEqual([]);
    expect(statSync(home).mode & 0o777).toBe(before);
    // the daemon itself refuses too
    const d = cli(home, ["daemon"]);
    expect(d.code).toBe(1);
    expect(d.stderr).toContain(`belongs to uid ${NOBODY}`);
    expect(readdirSync(home)).toEqual([]);
  });

  test("a socket owned by nobody in our own state dir: neither used nor removed", () => {
    const home = mkdtempSync(join(tmpdir(), "banger-foreign-sock-"));
    dirs.push(home);
    const sock = join(home, "bangerd.sock");
    const made = Bun.spawnSync(["python3", "-c", `import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])`, sock]);
    expect(made.exitCode).toBe(0);
    chownSync(sock, NOBODY, NOBODY);
    const r = cli(home, ["vm", "list"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`daemon socket ${sock} belongs to uid ${NOBODY}`);
    const d = cli(home, ["daemon"]);
    expect(d.code).toBe(1);
    expect(d.stderr).toContain(`belongs to uid ${NOBODY}`);
    expect(lstatSync(sock).isSocket()).toBe(true);
    expect(lstatSync(sock).uid).toBe(NOBODY);
    expect(existsSync(join(home, "daemon.pid"))).toBe(false);
  });
});

describe("private files", () => {
  test("socket 0600 in a 0700 dir; per-VM dir and keys dir 0700, private keys 0600", () => {
    const h = tempHome("banger-keys-");
    dirs.push(h.home);
    try {
      for (const [f, body] of [["k", "k"], ["i", "i"]]) writeFileSync(join(h.home, f!), body!);
      writeFileSync(join(h.home, "r"), Buffer.alloc(1 << 20));
      expect(h.run(["image", "import", "--name", "t", "--kernel", join(h.home, "k"), "--rootfs", join(h.home, "r"), "--initrd", join(h.home, "i")]).code).toBe(0);
      const c = h.run(["vm", "create", "kv", "--image", "t", "--driver", "qemu", "--json"]);
      expect(c.stderr).not.toContain("banger:");
      expect(c.code).toBe(0);
      expect(statSync(h.home).mode & 0o777).toBe(0o700);
      expect(statSync(join(h.home, "bangerd.sock")).mode & 0o777).toBe(0o600);
      const vmDir = c.json().runtime.vmDir as string;
      expect(statSync(vmDir).mode & 0o777).toBe(0o700);
      expect(statSync(join(vmDir, "keys")).mode & 0o777).toBe(0o700);
      const privates = readdirSync(join(vmDir, "keys")).filter((f) => !f.endsWith(".pub"));
      expect(privates.length).toBeGreaterThanOrEqual(2); // client key + guest host key
      for (const f of privates) expect(statSync(join(vmDir, "keys", f)).mode & 0o777).toBe(0o600);
      // no --json view carries a private key
      for (const args of [["vm", "show", "kv", "--json"], ["vm", "list", "--json"]]) expect(h.run(args).stdout).not.toContain("PRIVATE KEY");
    } finally {
      h.run(["vm", "delete", "kv", "--force"]);
      void h.cleanup();
    }
  });
});

guestLogin.describe("credentials and payloads never in the daemon log or --json output", () => {
  const g = fakeGuestVM("banger-secrets-");
  const MARK = `MARKER${Math.random().toString(36).slice(2)}`;
  const outputs: string[] = [];
  beforeAll(async () => {
    Object.assign(g.env, { BANGER_DEBUG: "1" }); // the chattiest log level
    await g.start();
  }, 30_000);
  afterAll(() => g.cleanup());

  test("session payloads (text and binary), exec stdin and a repo's credentials leave no trace", () => {
    const keep = (r: { code: number; stdout: string; stderr: string }) => {
      expect(r.code).toBe(0);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    keep(g.run(["session", "start", "box", "--name", "sink", "--json", "--", "bash", "-c", "cat > /dev/null"]));
    keep(g.run(["session", "send", "box", "sink", "--json"], `payload-${MARK}\n`));
    writeFileSync(join(g.scratch, "nul"), Buffer.concat([Buffer.from(`nul-${MARK}`), Buffer.from([0, 1])]));
    keep(g.run(["session", "send", "box", "sink", "--json", "--file", join(g.scratch, "nul")]));
    keep(g.run(["vm", "exec", "box", "--stdin", "--json", "--", "bash", "-c", "cat > /dev/null"], `stdin-${MARK}\n`));
    const repo = join(g.scratch, "repo");
    mkdirSync(repo);
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "f"), "x\n");
    git(repo, "add", ".");
    git(repo, "commit", "-q", "-m", "init");
    git(repo, "remote", "add", "origin", `${HTTPS}user:cred-${MARK}@example.com/x.git`);
    git(repo, "config", "http.extraheader", `AUTHORIZATION: bearer header-${MARK}`);
    keep(g.run(["workspace", "push", "box", repo, "--guest-path", join(g.guestRoot, "ws"), "--json"]));
    for (const args of [["vm", "show", "box", "--json"], ["vm", "list", "--json"], ["session", "list", "box", "--json"], ["session", "show", "box", "sink", "--json"]]) keep(g.run(args));

    const log = readFileSync(join(g.h.home, "daemon.log"), "utf8");
    expect(log.length).toBeGreaterThan(0);
    expect(log).toContain("workspace"); // the log does speak about what happened…
    for (const text of [log, ...outputs]) {
      expect(text).not.toContain(MARK); // …but never carries the bytes or the credentials
      expect(text).not.toContain("PRIVATE KEY");
    }
  });
});
