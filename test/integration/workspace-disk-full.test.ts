// Workspace prepare into a guest whose disk fills up: the "guest" is the real
// sshd on 127.0.0.1 (fake-guest.ts) and the guest path lies on a real 16 MiB
// ext4 filesystem on a loop device, so tar in the "guest" hits a real ENOSPC.
// Needs root (losetup, mount); skipped otherwise.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";
import { needs } from "../helpers/skip.ts";

const isRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;

const g = fakeGuestVM("banger-wsfull-", "box");
const { scratch, guestRoot, run } = g;
/** Mount point of the small filesystem: below the allowed root /tmp, inside this test's own guest dir. */
const small = join(guestRoot, "small");
const image = join(scratch, "small.ext4");
let loop = "";
let mounted = false;

function sh(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

/** Bytes used on the small filesystem. */
function used(): number {
  return Number(sh(["df", "-B1", "--output=used", small]).trim().split("\n")[1]);
}

/** Entries on the small filesystem other than lost+found. */
function onSmallFs(): string[] {
  return readdirSync(small).filter((e) => e !== "lost+found").sort();
}

/** Hash of a whole tree: every path, its type, mode, and content or link target. */
function treeHash(dir: string): string {
  const h = createHash("sha256");
  const walk = (rel: string) => {
    const p = join(dir, rel);
    const st = lstatSync(p);
    h.update(`${rel}\0${st.mode}\0`);
    if (st.isSymbolicLink()) h.update(readlinkSync(p));
    else if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(rel ? `${rel}/${e}` : e);
    else h.update(readFileSync(p));
  };
  walk("");
  return h.digest("hex");
}

/** A file of incompressible bytes, written 1 MiB at a time. */
function randomFile(path: string, bytes: number): void {
  const fd = openSync(path, "w");
  for (let i = 0; i < bytes / MiB; i++) writeSync(fd, randomBytes(MiB));
  closeSync(fd);
}

function newRepo(name: string): string {
  const repo = join(scratch, name);
  mkdirSync(repo);
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "README.md"), "hello\n");
  mkdirSync(join(repo, "src"));
  writeFileSync(join(repo, "src", "main.ts"), "console.log(1);\n");
  git(repo, "add", ".");
  git(repo, "commit", "-q", "-m", "init");
  return repo;
}

/** stderr without the progress lines ("[1.2s] sent 38.3 MiB") a prepare over a second prints. */
function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l !== "" && !/^\[\d+(\.\d+)?s\] /.test(l));
}

function expectDaemonAnswers(): void {
  const l = run(["vm", "list", "--json"]);
  expect(l.code).toBe(0);
  expect(l.json().map((v: { name: string }) => v.name)).toContain("box");
}

beforeAll(async () => {
  if (!isRoot) return;
  await g.start();
  writeFileSync(image, "");
  sh(["truncate", "-s", "16M", image]);
  sh(["mkfs.ext4", "-q", image]);
  loop = sh(["losetup", "--find", "--show", image]).trim();
  mkdirSync(small);
  sh(["mount", loop, small]);
  mounted = true;
}, 60_000);

afterAll(async () => {
  if (!isRoot) {
    // nothing was started: only the dirs fakeGuestVM made up front
    for (const d of [guestRoot, scratch, g.h.home]) rmSync(d, { recursive: true, force: true });
    return;
  }
  // only what this file made: its mount point, its loop device
  if (mounted) Bun.spawnSync(["umount", small]);
  if (loop) Bun.spawnSync(["losetup", "-d", loop]);
  await g.cleanup();
});

needs(isRoot, "needs root (losetup, mount)").describe("workspace prepare into a guest filesystem that fills up (16 MiB ext4 on a loop device)", () => {
  test("first prepare of a 30 MB repo: one clear no-space error, no guest path, nothing staged left, df back to empty, daemon answers", () => {
    const repo = newRepo("big");
    randomFile(join(repo, "blob.bin"), 30 * MiB);
    git(repo, "add", "blob.bin");
    git(repo, "commit", "-q", "-m", "30 MB of random data");
    const empty = used();
    const gp = join(small, "repo");
    const r = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp]);
    console.log(`disk full, first prepare: exit ${r.code}, stderr ${JSON.stringify(r.stderr)}; used before ${empty} B, after ${used()} B`);
    expect(r.code).not.toBe(0);
    expect(errorLines(r.stderr)).toHaveLength(1);
    expect(errorLines(r.stderr)[0]).toMatch(/^banger: vm box: workspace .*: the guest's disk is full \(no space left on device under .*\): nothing was changed/);
    expect(existsSync(gp)).toBe(false);
    expect(onSmallFs()).toEqual([]);
    expect(used()).toBeLessThanOrEqual(empty + 64 * 1024);
    expectDaemonAnswers();
    // --json: the same error as {error: {code, message}} on stdout, same exit code
    const j = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp, "--json"]);
    expect(j.code).toBe(r.code);
    expect(j.json().error).toEqual({ code: "E_STATE", message: errorLines(r.stderr)[0]!.slice("banger: ".length) });
    expect(onSmallFs()).toEqual([]);
  }, 120_000);

  test("out of inodes rather than blocks (5000 empty files, a 4096-inode fs): the same disk-full line, nothing left", () => {
    const repo = newRepo("many");
    const inodesFree = Number(sh(["df", "-Pi", small]).trim().split("\n")[1]!.split(/\s+/)[3]);
    expect(inodesFree).toBeLessThan(5000);
    mkdirSync(join(repo, "many"));
    for (let i = 0; i < 5000; i++) writeFileSync(join(repo, "many", `f${i}`), "");
    git(repo, "add", ".");
    git(repo, "commit", "-q", "-m", "5000 empty files");
    const gp = join(small, "many");
    const listed = onSmallFs();
    const usedBefore = used();
    const r = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp, "--json"]);
    console.log(`out of inodes: exit ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe("E_STATE");
    expect(r.json().error.message).toBe(`vm box: workspace ${gp}: the guest's disk is full (no space left on device under ${small}): nothing was changed; free space in the guest or pick another --guest-path`);
    expect(existsSync(gp)).toBe(false);
    expect(onSmallFs()).toEqual(listed);
    expect(used()).toBeLessThanOrEqual(usedBefore + 64 * 1024);
    expectDaemonAnswers();
  }, 120_000);

  test("re-prepare after adding a file that does not fit: error, the previous tree is intact byte for byte, nothing left over", () => {
    const repo = newRepo("grows");
    const gp = join(small, "grows");
    const first = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp, "--json"]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const head = git(gp, "rev-parse", "HEAD").trim();
    expect(head).toBe(git(repo, "rev-parse", "HEAD").trim());
    const before = treeHash(gp);
    const usedBefore = used();

    // untracked (not ignored) files travel too; uncommitted so that deleting it really shrinks the repo again
    randomFile(join(repo, "huge.bin"), 24 * MiB);
    writeFileSync(join(repo, "README.md"), "edited\n");
    const r = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp]);
    console.log(`disk full, re-prepare: exit ${r.code}, stderr ${JSON.stringify(r.stderr)}; used before ${usedBefore} B, after ${used()} B`);
    expect(r.code).not.toBe(0);
    expect(errorLines(r.stderr)).toHaveLength(1);
    expect(errorLines(r.stderr)[0]).toMatch(/^banger: vm box: workspace .*: the guest's disk is full \(no space left on device under .*\): nothing was changed/);
    expect(git(gp, "rev-parse", "HEAD").trim()).toBe(head);
    expect(readFileSync(join(gp, "README.md"), "utf8")).toBe("hello\n");
    expect(existsSync(join(gp, "huge.bin"))).toBe(false);
    expect(treeHash(gp)).toBe(before);
    expect(onSmallFs()).toEqual(["grows"]);
    expect(used()).toBeLessThanOrEqual(usedBefore + 64 * 1024);
    expectDaemonAnswers();

    // once the file is gone again the same path prepares fine (full copy: the failure dropped the manifest)
    rmSync(join(repo, "huge.bin"));
    const again = run(["workspace", "prepare", "box", "--source", repo, "--guest-path", gp, "--json"]);
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    expect(readFileSync(join(gp, "README.md"), "utf8")).toBe("edited\n");
    expect(git(gp, "rev-parse", "HEAD").trim()).toBe(git(repo, "rev-parse", "HEAD").trim());
    expect(onSmallFs()).toEqual(["grows"]);
  }, 120_000);
});
