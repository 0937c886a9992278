// The seed's flow in a real VM: prepare a git workspace (clean `git status`
// inside), start a session in it (cwd preflight passes, git is found), a
// read-only workspace refuses writes even from root, `vm run --workspace`
// runs in the repo, and a guest commit comes back through export --fetch and
// export --patch. A repo with a nested submodule, an uninitialized one and an lfs
// pointer is prepared (status and submodule status clean) and its submodule work fetched back.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";
import { git } from "../helpers/git.ts";

/** Pieces of a URL carrying fake credentials: no host literal with a scheme in this file. */
const HTTPS = "https://";
const CRED_URL = `${HTTPS}${["user", "s3cret"].join(":")}@${["example", "com"].join(".")}/x.git`;

e2e.describe("workspace in a real VM", () => {
  const h = e2eReady ? e2eHome("banger-e2e-ws-") : (null as never);
  const repo = mkdtempSync(join(tmpdir(), "banger-ws-repo-"));
  const subsDir = mkdtempSync(join(tmpdir(), "banger-ws-subs-"));
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "devbox", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
    rmSync(repo, { recursive: true, force: true });
    rmSync(subsDir, { recursive: true, force: true });
  });

  test("prepare: git status is clean inside, credentials stayed home, a session in it passes the cwd and command preflight", async () => {
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "hello\n");
    writeFileSync(join(repo, "run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
    git(repo, "add", ".");
    git(repo, "commit", "-q", "-m", "initial");
    git(repo, "remote", "add", "origin", CRED_URL);
    expect(h.run(["vm", "create", "devbox", "--vmm", "qemu", "--start"]).code).toBe(0);
    const t0 = performance.now();
    const prepared = h.run(["workspace", "prepare", "devbox", "--source", repo, "--json"]);
    console.log(`prepare into a TCG guest: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    expect(prepared.stderr).toBe("");
    expect(prepared.code).toBe(0);
    expect(prepared.json().guestPath).toBe("/root/repo");
    const status = h.run(["vm", "exec", "devbox", "--", "git", "-C", "/root/repo", "status", "--porcelain"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toBe("");
    expect(h.run(["vm", "exec", "devbox", "--", "/root/repo/run.sh"]).stdout).toBe("ran\n");
    expect(h.run(["vm", "exec", "devbox", "--", "grep", "-r", "s3cret", "/root/repo/.git"]).code).toBe(1);
    const s = h.run(["session", "start", "devbox", "--name", "pi", "--cwd", "/root/repo", "--require", "git", "--stdin", "closed", "--json", "--", "git", "log", "--format=%s"]);
    expect(s.code).toBe(0);
    expect(s.json().launchStage).toBe("");
    expect(await waitFor(() => h.run(["session", "logs", "devbox", "pi"]).stdout === "initial\n", 20_000, 250)).toBe(true);
  }, 300_000);

  test("read-only: a write inside fails, even as root", () => {
    const ro = h.run(["workspace", "prepare", "devbox", "--source", repo, "--guest-path", "/root/ro", "--read-only", "--json"]);
    expect(ro.stderr).toBe("");
    expect(ro.code).toBe(0);
    const w = h.run(["vm", "exec", "devbox", "--", "sh", "-c", "echo x >> /root/ro/README.md"]);
    expect(w.code).not.toBe(0);
    expect(w.stderr).toContain("Read-only file system");
    expect(h.run(["vm", "exec", "devbox", "--", "cat", "/root/ro/README.md"]).stdout).toBe("hello\n");
    // a reboot takes root's bind mount with it; the start after it makes it again
    expect(h.run(["vm", "restart", "devbox"]).code).toBe(0);
    const again = h.run(["vm", "exec", "devbox", "--", "sh", "-c", "echo x >> /root/ro/README.md"]);
    expect([again.code === 0, again.stderr]).toEqual([false, expect.stringContaining("Read-only file system")]);
  }, 180_000);

  test("vm run --workspace prepares the repo and runs the command inside it", () => {
    const r = h.run(["vm", "run", "--vmm", "qemu", "--name", "devbox", "--workspace", repo, "--", "git", "log", "--format=%s"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("initial\n");
  }, 120_000);

  test("a guest commit comes back: export --fetch into refs/banger/devbox/main, export --patch applies with git am", () => {
    const edit = h.run(["vm", "exec", "devbox", "--", "sh", "-c", "cd /root/repo && echo guest >> README.md && git -c user.name=g -c user.email=g@example.com commit -q -am 'from the guest' && echo wip > wip.txt"]);
    expect(edit.stderr).toBe("");
    expect(edit.code).toBe(0);
    const head = git(repo, "rev-parse", "HEAD");
    const f = h.run(["workspace", "export", "devbox", "--fetch", "--source", repo, "--json"]);
    expect(f.stderr).toBe("");
    expect(f.code).toBe(0);
    expect(f.json().refs.map((r: { ref: string }) => r.ref)).toEqual(["refs/banger/devbox/main"]);
    expect(git(repo, "log", "--format=%s", "refs/banger/devbox/main")).toBe("banger: uncommitted work in /root/repo\nfrom the guest\ninitial\n");
    expect(git(repo, "show", "refs/banger/devbox/main:wip.txt")).toBe("wip\n");
    expect(git(repo, "rev-parse", "HEAD")).toBe(head);
    expect(git(repo, "status", "--porcelain")).toBe("");
    const patch = join(repo, "..", `${repo.split("/").pop()}.patch`);
    const p = h.run(["workspace", "export", "devbox", "--patch", patch]);
    expect(p.code).toBe(0);
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "am", "-q", patch);
    rmSync(patch);
    expect(readFileSync(join(repo, "README.md"), "utf8")).toBe("hello\nguest\n");
    expect(readFileSync(join(repo, "wip.txt"), "utf8")).toBe("wip\n");
  }, 120_000);

  test("submodules: a nested, an uninitialized one and an lfs pointer arrive; git status and submodule status are clean in the guest; submodule work comes back", () => {
    const FILE = ["-c", "protocol.file.allow=always"];
    const mk = (name: string, files: Record<string, string>) => {
      const d = join(subsDir, name);
      git(subsDir, "init", "-q", "-b", "main", name);
      for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
      git(d, "add", ".");
      git(d, "commit", "-q", "-m", `${name}: init`);
      return d;
    };
    const pointer = `version https://${["git-lfs", "github", "com"].join(".")}/spec/v1\noid sha256:${"ab".repeat(32)}\nsize 42\n`;
    const deep = mk("deep", { "n.txt": "nested\n" });
    const one = mk("one", { "a.txt": "one\n" });
    git(one, ...FILE, "submodule", "add", "-q", `file://${deep}`, "deep");
    git(one, "commit", "-q", "-m", "one: deep");
    const two = mk("two", { "t.txt": "two\n" });
    const sup = mk("sup", { ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n", "m.bin": pointer });
    git(sup, ...FILE, "submodule", "add", "-q", `file://${one}`, "one");
    git(sup, ...FILE, "submodule", "add", "-q", `file://${two}`, "two");
    git(sup, "commit", "-q", "-m", "sup: submodules");
    const work = join(subsDir, "work");
    git(subsDir, "clone", "-q", sup, work);
    git(work, ...FILE, "submodule", "update", "-q", "--init", "--recursive", "--", "one");
    const r = h.run(["workspace", "prepare", "devbox", "--source", work, "--guest-path", "/root/sub", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const inGuest = (...argv: string[]) => h.run(["vm", "exec", "devbox", "--", ...argv]);
    expect(inGuest("git", "-C", "/root/sub", "status", "--porcelain", "--ignore-submodules=none").stdout).toBe("");
    const subStatus = inGuest("git", "-C", "/root/sub", "submodule", "status", "--recursive");
    expect(subStatus.code).toBe(0);
    expect(subStatus.stdout).toBe(git(work, "submodule", "status", "--recursive"));
    expect(subStatus.stdout).toMatch(/^-[0-9a-f]{40} two$/m);
    expect(inGuest("cat", "/root/sub/one/deep/n.txt").stdout).toBe("nested\n");
    expect(inGuest("cat", "/root/sub/m.bin").stdout).toBe(pointer);
    const edit = inGuest("sh", "-c", "cd /root/sub/one/deep && echo guest >> n.txt && git -c user.name=g -c user.email=g@example.com commit -q -am 'guest: deep'");
    expect(edit.stderr).toBe("");
    const f = h.run(["workspace", "export", "devbox", "--guest-path", "/root/sub", "--fetch", "--source", work, "--json"]);
    expect(f.stderr).toBe("");
    expect(f.code).toBe(0);
    expect(f.json().refs.map((x: { ref: string; repo?: string }) => `${x.repo ?? "."} ${x.ref}`).sort()).toEqual(["one refs/banger/devbox/HEAD", "one/deep refs/banger/devbox/HEAD"]); // the superproject's HEAD and files did not move
    expect(git(join(work, "one/deep"), "show", "refs/banger/devbox/HEAD:n.txt")).toBe("nested\nguest\n");
  }, 120_000);
});
