// Workspaces through dist/banger and its daemon, against a real sshd on
// 127.0.0.1 standing in for the guest: prepare a real repo (binary files,
// symlinks, exec bits, empty dirs, a 100 MB file, an ignored node_modules,
// credentials in .git/config), read-only, a failing workspace:prepare plugin,
// and the guest's work back as a patch (git am) and as a fetch.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BANGER, ROOT } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";
import { guestLogin } from "../helpers/sshd.ts";

/** Pieces of a URL carrying fake credentials: no host literal with a scheme in this file. */
const HTTPS = "https://";
const CRED_URL = `${HTTPS}${["user", "s3cret"].join(":")}@${["example", "com"].join(".")}/x.git`;

const g = fakeGuestVM("banger-ws-", "box", [join(ROOT, "test/fixtures/workspace-hook-plugin.ts")]);
const { h, env, scratch, guestRoot, run } = g;
const HOSTILE_NAME = "-rf it's $(touch pwned); `x`.txt";
const BIG = 100 * 1024 * 1024;

const repo = join(scratch, "repo");
const guestId = { GIT_AUTHOR_NAME: "g", GIT_AUTHOR_EMAIL: "g@example.com", GIT_COMMITTER_NAME: "g", GIT_COMMITTER_EMAIL: "g@example.com" };

/** Peak resident set of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

/** The guest path's siblings other than itself: stage/old dirs must never be left behind. */
function leftovers(guestPath: string): string[] {
  const dir = guestPath.slice(0, guestPath.lastIndexOf("/"));
  return readdirSync(dir).filter((e) => e.startsWith(".banger-"));
}

beforeAll(async () => {
  await g.start();

  mkdirSync(repo);
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "README.md"), "hello\n");
  writeFileSync(join(repo, ".gitignore"), "*.log\nnode_modules/\n");
  mkdirSync(join(repo, "src"));
  writeFileSync(join(repo, "src", "main.ts"), "console.log(1);\n");
  writeFileSync(join(repo, "logo.png"), Buffer.from([137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 255]));
  writeFileSync(join(repo, "build.sh"), "#!/bin/sh\necho built\n");
  chmodSync(join(repo, "build.sh"), 0o755);
  symlinkSync("src/main.ts", join(repo, "main-link"));
  git(repo, "add", ".");
  git(repo, "commit", "-q", "-m", "init");
  git(repo, "remote", "add", "origin", CRED_URL);
  git(repo, "config", "http.https://example.com/.extraheader", "AUTHORIZATION: bearer s3cret-header");
  git(repo, "config", "credential.helper", "store --file /s3cret/creds");
  writeFileSync(join(repo, "untracked.txt"), "not yet added\n");
  writeFileSync(join(repo, "build.log"), "ignored\n");
  writeFileSync(join(repo, HOSTILE_NAME), "hostile\n");
  mkdirSync(join(repo, "empty-dir"));
  // 40 MB of ignored dependencies that must stay home
  for (let i = 0; i < 40; i++) {
    mkdirSync(join(repo, "node_modules", `pkg${i}`), { recursive: true });
    writeFileSync(join(repo, "node_modules", `pkg${i}`, "index.js"), Buffer.alloc(1024 * 1024, 65));
  }
}, 60_000);

afterAll(async () => {
  // read-only prepares run as root leave a ro bind mount: unmount ours, by path, before removing the dirs
  const mine = readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((p) => p.startsWith(guestRoot + "/"));
  for (const m of mine.reverse()) Bun.spawnSync(["umount", m.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))]);
  await g.cleanup();
});

guestLogin.describe("workspace CLI over a real sshd", () => {
  const guestPath = join(guestRoot, "repo it's");

  test("prepare: tracked, untracked, binary, symlink, exec bit, empty dir arrive; ignored files and secrets don't; status is clean", () => {
    const r = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", guestPath, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const ws = r.json();
    expect(ws).toMatchObject({ vm: "box", sourcePath: repo, guestPath, readOnly: false, files: 9, base: git(repo, "rev-parse", "HEAD").trim() });
    expect(ws.bytes).toBeLessThan(1024 * 1024); // node_modules (40 MB) stayed home
    expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\n");
    expect(readFileSync(join(guestPath, "untracked.txt"), "utf8")).toBe("not yet added\n");
    expect(readFileSync(join(guestPath, HOSTILE_NAME), "utf8")).toBe("hostile\n");
    expect(readFileSync(join(guestPath, "logo.png")).equals(readFileSync(join(repo, "logo.png")))).toBe(true);
    expect(statSync(join(guestPath, "build.sh")).mode & 0o777).toBe(0o755);
    expect(readlinkSync(join(guestPath, "main-link"))).toBe("src/main.ts");
    expect(lstatSync(join(guestPath, "empty-dir")).isDirectory()).toBe(true);
    expect(existsSync(join(guestPath, "build.log"))).toBe(false);
    expect(existsSync(join(guestPath, "node_modules"))).toBe(false);
    expect(existsSync(join(guestRoot, "pwned")) || existsSync(join(repo, "pwned"))).toBe(false);
    // the hook plugin ran in the guest, over the daemon's connection
    expect(existsSync(join(guestPath, ".hook-stamp"))).toBe(true);
    // the secret is nowhere in the guest copy, yet the remote is still there
    expect(Bun.spawnSync(["grep", "-r", "s3cret", guestPath]).exitCode).toBe(1);
    expect(git(guestPath, "config", "--get", "remote.origin.url").trim()).toBe("https://example.com/x.git");
    expect(git(guestPath, "status", "--porcelain", "-z").split("\0").filter(Boolean).sort()).toEqual(["?? .hook-stamp", `?? ${HOSTILE_NAME}`, "?? untracked.txt"].sort());
    // safe.directory went to the guest user's global config (sshd's HOME)
    expect(readFileSync(join(g.sshd.dir, "home", ".gitconfig"), "utf8")).toContain(guestPath);
    expect(leftovers(guestPath)).toEqual([]);
  });

  test("push is an alias; human output; default source (.) resolved to absolute by the CLI", () => {
    const p = Bun.spawnSync([BANGER, "workspace", "push", "box", "--guest-path", guestPath], { cwd: repo, env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    expect(p.stderr.toString()).toBe("");
    expect(p.exitCode).toBe(0);
    expect(p.stdout.toString()).toMatch(new RegExp(`^prepared ${repo.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} in box:${guestPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(9 files, 0\\.\\d MiB\\)\\n$`));
  });

  test("round trip: guest commit + uncommitted edits → export --patch → git am on a clone reproduces them; --fetch lands in refs/banger/box/main", () => {
    const q = (p: string) => join(guestPath, p);
    writeFileSync(q("src/main.ts"), "console.log(2);\n");
    writeFileSync(q("data.bin"), Buffer.from([0, 255, 1, 254, 10, 0]));
    const c = Bun.spawnSync(["sh", "-c", 'cd "$1" && git add src/main.ts data.bin && git commit -q -m "guest work"', "sh", guestPath], { env: { ...process.env, ...guestId }, stderr: "pipe" });
    expect(c.stderr.toString()).toBe("");
    writeFileSync(q("README.md"), "hello\nedited in the guest\n");
    writeFileSync(q("guest.log"), "ignored in the guest too\n");
    const guestHead = git(guestPath, "rev-parse", "HEAD");
    const patchFile = join(scratch, "guest work.patch");
    const e = run(["workspace", "export", "box", "--guest-path", guestPath, "--patch", patchFile, "--json"]);
    expect(e.stderr).toBe("");
    expect(e.code).toBe(0);
    expect(e.json()).toMatchObject({ vm: "box", patch: patchFile, commits: 2 });
    expect(git(guestPath, "rev-parse", "HEAD")).toBe(guestHead);
    const patch = readFileSync(patchFile, "utf8");
    expect(patch).not.toContain("guest.log");
    const clone = join(scratch, "clone");
    git(scratch, "clone", "-q", repo, clone);
    const am = Bun.spawnSync(["git", "-C", clone, "am", "-q", patchFile], { env: { ...process.env, ...guestId }, stderr: "pipe" });
    expect(am.stderr.toString()).toBe("");
    expect(am.exitCode).toBe(0);
    expect(readFileSync(join(clone, "src", "main.ts"), "utf8")).toBe("console.log(2);\n");
    expect(readFileSync(join(clone, "data.bin")).equals(Buffer.from([0, 255, 1, 254, 10, 0]))).toBe(true);
    expect(readFileSync(join(clone, "README.md"), "utf8")).toBe("hello\nedited in the guest\n");
    expect(readFileSync(join(clone, HOSTILE_NAME), "utf8")).toBe("hostile\n");

    // --fetch: only refs/banger/box/* changes in the source repo
    const before = { head: git(repo, "rev-parse", "HEAD"), status: git(repo, "status", "--porcelain"), index: readFileSync(join(repo, ".git", "index")), heads: git(repo, "for-each-ref", "refs/heads") };
    const f = Bun.spawnSync([BANGER, "workspace", "export", "box", "--guest-path", guestPath, "--fetch", "--json"], { cwd: join(repo, "src"), env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    expect(f.stderr.toString()).toBe("");
    expect(f.exitCode).toBe(0);
    const fetched = JSON.parse(f.stdout.toString());
    expect(fetched.refs.map((r: { ref: string }) => r.ref)).toEqual(["refs/banger/box/main"]);
    expect(git(repo, "show", "refs/banger/box/main:README.md")).toBe("hello\nedited in the guest\n");
    expect(git(repo, "rev-parse", "refs/banger/box/main~1").trim()).toBe(guestHead.trim());
    expect(git(repo, "rev-parse", "HEAD")).toBe(before.head);
    expect(git(repo, "status", "--porcelain")).toBe(before.status);
    expect(git(repo, "for-each-ref", "refs/heads")).toBe(before.heads);
    expect(readFileSync(join(repo, ".git", "index")).equals(before.index)).toBe(true);
    // diff (vs the guest's HEAD) still works
    const d = run(["workspace", "diff", "box", "--guest-path", guestPath]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("+edited in the guest");
    const dj = run(["workspace", "diff", "box", "--guest-path", guestPath, "--json"]);
    expect(dj.code).toBe(0);
    expect(dj.json()).toEqual({ vm: "box", patch: d.stdout });
  });

  test("re-prepare over the guest's own work is refused, naming it, and changes nothing; build output and an edit taken back don't count; --force replaces it", () => {
    const gp = join(guestRoot, "guarded");
    const prepare = (...more: string[]) => run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp, ...more]);
    expect(prepare().code).toBe(0);
    // ignored output (*.log, node_modules/) is the guest's to lose
    writeFileSync(join(gp, "test-run.log"), "ignored\n");
    mkdirSync(join(gp, "node_modules", "dep"), { recursive: true });
    writeFileSync(join(gp, "node_modules", "dep", "index.js"), "x\n");
    const built = prepare("--json");
    expect(built.stderr).toBe("");
    expect(built.code).toBe(0);

    writeFileSync(join(gp, "README.md"), "hello\nedited in the guest\n");
    writeFileSync(join(gp, HOSTILE_NAME), "edited too\n");
    Bun.spawnSync(["rm", join(gp, "src", "main.ts")]);
    const refused = prepare();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `banger: vm box: workspace ${gp} holds work the host does not have: 3 files added, removed or changed since the last prepare: ${HOSTILE_NAME}, README.md, src/main.ts. \`banger workspace export box\` brings it back; prepare with --force to replace it\n`,
    );
    expect(readFileSync(join(gp, "README.md"), "utf8")).toBe("hello\nedited in the guest\n");
    expect(leftovers(gp)).toEqual([]);

    // back to the prepared-from commit's content: nothing to lose (the untracked file and the deletion still are)
    writeFileSync(join(gp, "README.md"), "hello\n");
    expect(prepare().stderr).toContain(": 2 files added, removed or changed since the last prepare: " + HOSTILE_NAME + ", src/main.ts.");

    const c = Bun.spawnSync(["sh", "-c", 'cd "$1" && git checkout -q src/main.ts && echo g > guest.txt && git add guest.txt && git commit -q -m "guest work"', "sh", gp], { env: { ...process.env, ...guestId }, stderr: "pipe" });
    expect(c.stderr.toString()).toBe("");
    const withCommit = prepare("--json");
    expect(withCommit.code).toBe(1);
    expect(withCommit.json()).toMatchObject({ error: { code: "E_CONFLICT" } });
    expect(withCommit.stderr).toContain(`holds work the host does not have: 1 commit made in the guest; 2 files added, removed or changed since the last prepare: ${HOSTILE_NAME}, guest.txt.`);

    const forced = prepare("--force", "--json");
    expect(forced.stderr).toBe("");
    expect(forced.code).toBe(0);
    expect(existsSync(join(gp, "guest.txt"))).toBe(false);
    expect(readFileSync(join(gp, HOSTILE_NAME), "utf8")).toBe("hostile\n");
    expect(git(gp, "rev-parse", "HEAD")).toBe(git(repo, "rev-parse", "HEAD"));
    // and the record is new: a re-prepare goes through
    expect(prepare().code).toBe(0);
  });

  test("read-only: files lose their write bits and a write fails (root gets a read-only bind mount); export still works", () => {
    const ro = join(guestRoot, "ro");
    const r = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", ro, "--read-only", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.json().readOnly).toBe(true);
    for (const f of ["README.md", "src/main.ts", "src", ".git/HEAD", "."]) expect(statSync(join(ro, f)).mode & 0o222).toBe(0);
    const w = Bun.spawnSync(["sh", "-c", 'echo x >> "$1/README.md"', "sh", ro], { stderr: "pipe" });
    expect(w.exitCode).not.toBe(0);
    const d = run(["workspace", "export", "box", "--guest-path", ro, "--patch", "-"]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("b/untracked.txt");
    // a reboot loses root's bind mount (here: unmounted by hand, as the reboot would); the next start makes it again, once
    const touch = () => Bun.spawnSync(["touch", join(ro, "new-file")]).exitCode;
    const roMounts = () => readFileSync("/proc/self/mounts", "utf8").split("\n").filter((l) => l.split(" ")[1] === ro && /(^|,)ro(,|$)/.test(l.split(" ")[3] ?? "")).length;
    expect(Bun.spawnSync(["umount", ro]).exitCode).toBe(0);
    expect(roMounts()).toBe(0);
    expect(run(["vm", "restart", "box"]).code).toBe(0);
    expect([roMounts(), touch()]).toEqual([1, 1]);
    expect(run(["vm", "restart", "box"]).code).toBe(0);
    expect(roMounts()).toBe(1);
    // a re-prepare over it (writable this time) works and leaves no mount or old tree
    const again = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", ro, "--json"]);
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    expect(Bun.spawnSync(["sh", "-c", 'echo x >> "$1/README.md"', "sh", ro]).exitCode).toBe(0);
    expect(leftovers(ro)).toEqual([]);
  });

  test("a failing workspace:prepare plugin undoes the copy: the previous tree is back, nothing staged is left", () => {
    const gp = join(guestRoot, "hook-fails");
    // the hook plugin fails for this path: a first prepare leaves nothing
    const first = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp]);
    expect(first.code).toBe(1);
    expect(first.stderr).toBe("banger: ws-hook:workspace:prepare: dependency install failed\n");
    expect(existsSync(gp)).toBe(false);
    expect(leftovers(gp)).toEqual([]);
  });

  test("re-prepare after local edits sends only what changed (delta), and the guest then matches the host", () => {
    const src = join(scratch, "delta-src");
    git(scratch, "clone", "-q", repo, src);
    for (let i = 0; i < 200; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}\n`.repeat(500));
    git(src, "add", ".");
    git(src, "commit", "-q", "-m", "200 files");
    const gp = join(guestRoot, "delta");
    const first = run(["workspace", "prepare", "box", "--source", src, "--guest-path", gp, "--json"]);
    expect(first.stderr).toBe("");
    expect(first.json().mode).toBe("full");
    for (let i = 0; i < 10; i++) writeFileSync(join(src, `f${i}.txt`), `edited ${i}\n`);
    Bun.spawnSync(["rm", join(src, "f199.txt")]);
    const again = run(["workspace", "prepare", "box", "--source", src, "--guest-path", gp, "--json"]);
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    const a = again.json();
    expect(a.mode).toBe("delta");
    // the 10 edited files, plus .git files that changed (none expected, a few tolerated)
    expect(a.sent).toBeGreaterThanOrEqual(10);
    expect(a.sent).toBeLessThan(15);
    expect(a.bytes).toBeLessThan(first.json().bytes / 5);
    expect(readFileSync(join(gp, "f3.txt"), "utf8")).toBe("edited 3\n");
    expect(readFileSync(join(gp, "f150.txt"), "utf8")).toBe("file 150\n".repeat(500));
    expect(existsSync(join(gp, "f199.txt"))).toBe(false);
    const hostStatus = git(src, "status", "--porcelain").split("\n").filter(Boolean);
    expect(git(gp, "status", "--porcelain").split("\n").filter(Boolean).sort()).toEqual([...hostStatus, "?? .hook-stamp"].sort());
  });

  test("a 100 MB file is streamed: it arrives intact and the daemon's peak memory grows by far less than its size", () => {
    const big = join(scratch, "bigrepo");
    mkdirSync(big);
    git(big, "init", "-q", "-b", "main");
    writeFileSync(join(big, "small.txt"), "s\n");
    git(big, "add", ".");
    git(big, "commit", "-q", "-m", "s");
    const fd = openSync(join(big, "huge.bin"), "w");
    const chunk = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < BIG / chunk.length; i++) {
      chunk.fill(i & 0xff);
      writeSync(fd, chunk);
    }
    closeSync(fd);
    const pid = h.daemonPid();
    const before = peakRss(pid);
    const t0 = performance.now();
    const r = run(["workspace", "prepare", "box", "--source", big, "--guest-path", join(guestRoot, "big"), "--json"]);
    const secs = (performance.now() - t0) / 1000;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const grew = peakRss(pid) - before;
    console.log(`100 MB file: prepare ${secs.toFixed(2)} s, ${(r.json().bytes / 1048576).toFixed(1)} MiB sent, daemon peak RSS +${(grew / 1048576).toFixed(1)} MiB`);
    expect(grew).toBeLessThan(BIG / 2);
    expect(statSync(join(guestRoot, "big", "huge.bin")).size).toBe(BIG);
    const sums = Bun.spawnSync(["sh", "-c", 'cmp "$1" "$2"', "sh", join(big, "huge.bin"), join(guestRoot, "big", "huge.bin")]);
    expect(sums.exitCode).toBe(0);
  }, 120_000);

  test("Ctrl-C on the CLI mid-copy stops the copy in the daemon and undoes it: no guest path, nothing staged left", async () => {
    const big = join(scratch, "bigrepo");
    const target = join(guestRoot, "big-cut");
    const cli = Bun.spawn([BANGER, "workspace", "prepare", "box", "--source", big, "--guest-path", target], { env: { ...h.env, ...env }, stdout: "ignore", stderr: "ignore" });
    // the stage dir is made as the copy starts
    for (let i = 0; i < 500 && leftovers(target).length === 0; i++) await Bun.sleep(10);
    expect(leftovers(target).length).toBe(1);
    cli.kill("SIGINT");
    expect(await cli.exited).toBe(130);
    const log = join(h.home, "daemon.log");
    for (let i = 0; i < 200 && !readFileSync(log, "utf8").includes(`workspace prepare box:${target}: stopped, its requester went away`); i++) await Bun.sleep(50);
    expect(readFileSync(log, "utf8")).toContain(`workspace prepare box:${target}: stopped, its requester went away`);
    for (let i = 0; i < 100 && leftovers(target).length > 0; i++) await Bun.sleep(50);
    expect(leftovers(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
  }, 60_000);

  test("bad input: non-repo, staged changes, root and /etc guest paths, someone else's dir, unknown vm, export without a mode", () => {
    const plain = join(scratch, "plain");
    mkdirSync(plain);
    const notRepo = run(["workspace", "prepare", "box", "--source", plain, "--guest-path", join(guestRoot, "x")]);
    expect(notRepo.code).toBe(2);
    expect(notRepo.stderr).toBe(`banger: ${plain} is not a git repository\n`);
    const missing = run(["workspace", "prepare", "box", join(scratch, "no-such-dir")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split("\n").length).toBe(1);
    for (const bad of ["/", "/etc", "repo"]) {
      const r = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
    const staged = join(scratch, "staged");
    git(scratch, "clone", "-q", repo, staged);
    writeFileSync(join(staged, "README.md"), "staged\n");
    git(staged, "add", "README.md");
    const dirty = run(["workspace", "prepare", "box", "--source", staged, "--guest-path", join(guestRoot, "staged")]);
    expect(dirty.code).toBe(2);
    expect(dirty.stderr).toBe(`banger: ${staged} has staged changes that are not committed: commit them (git commit) or set them aside (git stash) first\n`);
    const theirs = join(guestRoot, "theirs");
    mkdirSync(theirs);
    writeFileSync(join(theirs, "keep.txt"), "k");
    const conflict = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", theirs]);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toBe(`banger: vm box: ${theirs} exists and is not a banger workspace: remove it or pick another --guest-path\n`);
    expect(readdirSync(theirs)).toEqual(["keep.txt"]);
    const noVm = run(["workspace", "prepare", "nope", "--source", repo]);
    expect(noVm.code).toBe(1);
    expect(noVm.stderr).toBe("banger: vm not found: nope\n");
    const noMode = run(["workspace", "export", "box"]);
    expect(noMode.code).toBe(2);
    expect(noMode.stderr).toContain("exactly one of --patch FILE or --fetch");
    const noWs = run(["workspace", "export", "box", "--guest-path", join(guestRoot, "never-prepared"), "--patch", "-"]);
    expect(noWs.code).toBe(1);
    expect(noWs.stderr).toContain("no workspace at");
    expect(run(["workspace", "prepare", "box", repo, "--bogus"]).code).toBe(2);
  });
});
