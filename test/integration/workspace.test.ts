// Workspaces through dist/banger and its daemon, against a real sshd on
// 127.0.0.1 standing in for the guest: push a real repo, check what arrived,
// read-only, and changes back as a patch that `git apply` reproduces.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BANGER } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";

/** Scheme prefix for URLs carrying fake credentials. */
const HTTPS = "https://";

const g = fakeGuestVM("banger-ws-");
const { h, env, scratch, guestRoot, run } = g;
const HOSTILE_NAME = "-rf it's $(touch pwned); `x`.txt";


const repo = join(scratch, "repo");

beforeAll(async () => {
  await g.start();

  mkdirSync(repo);
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "README.md"), "hello\n");
  writeFileSync(join(repo, ".gitignore"), "*.log\n");
  mkdirSync(join(repo, "src"));
  writeFileSync(join(repo, "src", "main.ts"), "console.log(1);\n");
  git(repo, "add", ".");
  git(repo, "commit", "-q", "-m", "init");
  git(repo, "remote", "add", "origin", `${HTTPS}user:s3cret@example.com/x.git`);
  git(repo, "config", "http.https://example.com/.extraheader", "AUTHORIZATION: bearer s3cret-header");
  git(repo, "config", "credential.helper", "store --file /s3cret/creds");
  writeFileSync(join(repo, "untracked.txt"), "not yet added\n");
  writeFileSync(join(repo, "build.log"), "ignored\n");
  writeFileSync(join(repo, HOSTILE_NAME), "hostile\n");
}, 30_000);

afterAll(() => g.cleanup());

describe("workspace CLI over a real sshd", () => {
  const guestPath = join(guestRoot, "repo it's");

  test("push: tracked, untracked and hostile names arrive; ignored files and secrets don't; status is clean", () => {
    const r = run(["workspace", "push", "box", repo, "--guest-path", guestPath, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.json()).toEqual({ vm: "box", sourcePath: repo, guestPath, readOnly: false, files: 5 });
    expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\n");
    expect(readFileSync(join(guestPath, "src", "main.ts"), "utf8")).toBe("console.log(1);\n");
    expect(readFileSync(join(guestPath, "untracked.txt"), "utf8")).toBe("not yet added\n");
    expect(readFileSync(join(guestPath, HOSTILE_NAME), "utf8")).toBe("hostile\n");
    expect(existsSync(join(guestPath, "build.log"))).toBe(false);
    expect(existsSync(join(guestPath, ".git", "HEAD"))).toBe(true);
    expect(existsSync(join(guestRoot, "pwned")) || existsSync(join(repo, "pwned"))).toBe(false);
    // the secret is nowhere in the guest copy, yet the remote is still there
    expect(Bun.spawnSync(["grep", "-r", "s3cret", guestPath]).exitCode).toBe(1);
    expect(git(guestPath, "config", "--get", "remote.origin.url").trim()).toBe("https://example.com/x.git");
    // clean but for the untracked files we sent: nothing modified, nothing deleted
    expect(git(guestPath, "status", "--porcelain", "-z").split("\0").filter(Boolean).sort()).toEqual([`?? ${HOSTILE_NAME}`, "?? untracked.txt"]);
    expect(git(guestPath, "log", "--format=%s")).toBe("init\n");
    // safe.directory went to the guest user's global config (sshd's HOME), added once
    const gitconfig = readFileSync(join(g.sshd.dir, "home", ".gitconfig"), "utf8");
    expect(gitconfig).toContain("[safe]");
    expect(gitconfig).toContain(guestPath);
  });

  test("human output, default PATH (.) resolved to absolute by the CLI", () => {
    const p = Bun.spawnSync([BANGER, "workspace", "push", "box", "--guest-path", guestPath], { cwd: repo, env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    expect(p.stdout.toString()).toBe(`pushed ${repo} to box:${guestPath} (5 files)\n`);
  });

  test("diff: guest edits and new files come back as a patch that git apply reproduces on a fresh clone", () => {
    writeFileSync(join(guestPath, "README.md"), "hello\nedited in the guest\n");
    writeFileSync(join(guestPath, "src", "new.ts"), "export const n = 2;\n");
    writeFileSync(join(guestPath, "blob.bin"), Buffer.from([0, 255, 1, 254, 10]));
    writeFileSync(join(guestPath, "guest.log"), "ignored in the guest too\n");
    const indexBefore = readFileSync(join(guestPath, ".git", "index"));
    const d = run(["workspace", "diff", "box", "--guest-path", guestPath]);
    expect(d.stderr).toBe("");
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("+edited in the guest");
    expect(d.stdout).toContain("b/src/new.ts");
    expect(d.stdout).not.toContain("guest.log");
    expect(readFileSync(join(guestPath, ".git", "index")).equals(indexBefore)).toBe(true);

    // raw bytes for git apply (the binary hunk must survive the trip)
    const raw = Bun.spawnSync([BANGER, "workspace", "diff", "box", "--guest-path", guestPath], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    const clone = join(scratch, "clone");
    git(scratch, "clone", "-q", repo, clone);
    const applied = Bun.spawnSync(["git", "-C", clone, "apply", "-"], { stdin: raw.stdout, stderr: "pipe" });
    expect(applied.stderr.toString()).toBe("");
    expect(applied.exitCode).toBe(0);
    expect(readFileSync(join(clone, "README.md"), "utf8")).toBe("hello\nedited in the guest\n");
    expect(readFileSync(join(clone, "src", "new.ts"), "utf8")).toBe("export const n = 2;\n");
    expect(readFileSync(join(clone, "blob.bin")).equals(Buffer.from([0, 255, 1, 254, 10]))).toBe(true);
    expect(readFileSync(join(clone, "untracked.txt"), "utf8")).toBe("not yet added\n");
    expect(readFileSync(join(clone, HOSTILE_NAME), "utf8")).toBe("hostile\n");
  });

  test("read-only: files lose their write bits; diff still works on it", () => {
    const ro = join(guestRoot, "ro");
    const r = run(["workspace", "push", "box", repo, "--guest-path", ro, "--read-only", "--json"]);
    expect(r.code).toBe(0);
    expect(r.json().readOnly).toBe(true);
    for (const f of ["README.md", "src/main.ts", "src", ".git/HEAD", "."]) expect(statSync(join(ro, f)).mode & 0o222).toBe(0);
    const d = run(["workspace", "diff", "box", "--guest-path", ro]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("b/untracked.txt");
  });

  test("bad input: a non-repo path, an unknown vm, a relative guest path, a diff with no workspace", () => {
    const plain = join(scratch, "plain");
    mkdirSync(plain);
    const notRepo = run(["workspace", "push", "box", plain, "--guest-path", join(guestRoot, "x")]);
    expect(notRepo.code).toBe(2);
    expect(notRepo.stderr).toBe(`banger: ${plain} is not a git repository\n`);
    const missing = run(["workspace", "push", "box", join(scratch, "no-such-dir")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split("\n").length).toBe(1);
    const noVm = run(["workspace", "push", "nope", repo]);
    expect(noVm.code).toBe(1);
    expect(noVm.stderr).toBe("banger: vm not found: nope\n");
    const rel = run(["workspace", "push", "box", repo, "--guest-path", "repo"]);
    expect(rel.code).toBe(2);
    expect(rel.stderr).toContain("guest path must be absolute");
    const noWs = run(["workspace", "diff", "box", "--guest-path", join(guestRoot, "never-pushed")]);
    expect(noWs.code).toBe(1);
    expect(noWs.stderr).toContain("no workspace at");
    const noVmDiff = run(["workspace", "diff", "nope"]);
    expect(noVmDiff.code).toBe(1);
    expect(noVmDiff.stderr).toBe("banger: vm not found: nope\n");
    expect(run(["workspace", "push", "box", repo, "--bogus"]).code).toBe(2);
  });
});
