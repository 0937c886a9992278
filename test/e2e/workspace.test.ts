// The seed's flow in a real VM: push a git workspace, start a session in it
// (cwd preflight passes, git is found), change it in the guest, diff it back.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../helpers/cli.ts";
import { e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";
import { git } from "../helpers/git.ts";

/** Scheme prefix for URLs carrying fake credentials. */
const HTTPS = "https://";


describe.skipIf(!e2eReady)("workspace in a real VM", () => {
  const h = e2eReady ? e2eHome("banger-e2e-ws-") : (null as never);
  const repo = mkdtempSync(join(tmpdir(), "banger-ws-repo-"));
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "devbox", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
    rmSync(repo, { recursive: true, force: true });
  });

  test("push, then a session in the workspace passes the cwd and command preflight", async () => {
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "hello\n");
    git(repo, "add", ".");
    git(repo, "commit", "-q", "-m", "initial");
    git(repo, "remote", "add", "origin", `${HTTPS}user:s3cret@example.com/x.git`);
    expect(h.run(["vm", "create", "devbox", "--start"]).code).toBe(0);
    const pushed = h.run(["workspace", "push", "devbox", repo, "--json"]);
    expect(pushed.code).toBe(0);
    const s = h.run(["session", "start", "devbox", "--name", "pi", "--cwd", "/root/repo", "--require", "git", "--stdin", "closed", "--json", "--", "git", "log", "--format=%s"]);
    expect(s.code).toBe(0);
    expect(s.json().launchStage).toBe("");
    expect(await waitFor(() => h.run(["session", "logs", "devbox", "pi"]).stdout === "initial\n", 20_000, 250)).toBe(true);
    expect(h.run(["vm", "exec", "devbox", "--", "grep", "-r", "s3cret", "/root/repo/.git"]).code).toBe(1);
  }, 300_000);

  test("a change made in the guest comes back as a patch that applies on the host", () => {
    const edit = h.run(["vm", "exec", "devbox", "--", "sh", "-c", "cd /root/repo && echo guest >> README.md && echo new > added.txt"]);
    expect(edit.code).toBe(0);
    const d = h.run(["workspace", "diff", "devbox"]);
    expect(d.code).toBe(0);
    const patch = join(repo, "..", `${repo.split("/").pop()}.patch`);
    writeFileSync(patch, d.stdout);
    git(repo, "apply", patch);
    rmSync(patch);
    expect(readFileSync(join(repo, "README.md"), "utf8")).toBe("hello\nguest\n");
    expect(readFileSync(join(repo, "added.txt"), "utf8")).toBe("new\n");
  }, 60_000);
});
