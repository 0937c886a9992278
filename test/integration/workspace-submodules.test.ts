// Workspaces with submodules, through dist/banger and its daemon against a real sshd on
// 127.0.0.1 standing in for the guest: a superproject with an initialized submodule that has
// a nested one, an uninitialized submodule, one at a path hostile as shell text, and a git-lfs
// pointer file (no git-lfs needed).
// The guest's `git status` and `git submodule status` match the host's; a re-prepare after
// an edit inside the nested submodule sends only the delta; export --fetch brings work made
// inside the submodules back into their own host repos.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";
import { guestLogin } from "../helpers/sshd.ts";

const g = fakeGuestVM("banger-wsub-", "box");
const { scratch, guestRoot, run } = g;
const FILE = ["-c", "protocol.file.allow=always"];
/** A credential in a submodule's remote URL: it must not reach the guest. */
const CRED_URL = `${"https"}://${["u", "s3cret"].join(":")}@${["example", "com"].join(".")}/deep.git`;
/** A git-lfs pointer as `git lfs` would commit it: it must arrive byte for byte. */
const LFS_POINTER = `version https://${["git-lfs", "github", "com"].join(".")}/spec/v1\noid sha256:${"4d7a2146".repeat(8)}\nsize 1048576\n`;

const work = join(scratch, "work");
/** A submodule path that is hostile as shell text: it reaches the guest's export script as a value. */
const HOSTILE = "libs/it's $(touch pwned); `x`";
const guestPath = join(guestRoot, "super repo");

/** A repo with one commit of `files`. */
function makeRepo(name: string, files: Record<string, string>): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  git(dir, "add", ".");
  git(dir, "commit", "-q", "-m", `${name}: init`);
  return dir;
}

beforeAll(async () => {
  await g.start();
  const deep = makeRepo("deep-up", { "n.txt": "nested\n" });
  const one = makeRepo("one-up", { "a.txt": "one\n" });
  git(one, ...FILE, "submodule", "add", "-q", `file://${deep}`, "deep");
  git(one, "commit", "-q", "-m", "one: add deep");
  const two = makeRepo("two-up", { "t.txt": "two\n" });
  const sup = makeRepo("super-up", { "README.md": "super\n", ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n", "model.bin": LFS_POINTER });
  git(sup, ...FILE, "submodule", "add", "-q", `file://${one}`, "libs/one");
  git(sup, ...FILE, "submodule", "add", "-q", `file://${two}`, "libs/two");
  git(sup, ...FILE, "submodule", "add", "-q", `file://${two}`, HOSTILE);
  git(sup, "commit", "-q", "-m", "super: add submodules");
  // a clone with libs/one (and its nested deep) and the hostile one initialized, libs/two left uninitialized
  git(scratch, "clone", "-q", sup, work);
  git(work, ...FILE, "submodule", "update", "-q", "--init", "--recursive", "--", "libs/one", HOSTILE);
  git(join(work, "libs/one/deep"), "config", "remote.origin.url", CRED_URL);
}, 60_000);

afterAll(async () => {
  await g.cleanup();
});

const status = (dir: string) => git(dir, "status", "--porcelain", "--ignore-submodules=none");
const subStatus = (dir: string) => git(dir, "submodule", "status", "--recursive");

guestLogin.describe("workspace with submodules over a real sshd", () => {
  test("prepare: initialized submodules arrive with their git data, nested too; the uninitialized one stays so; lfs pointers unchanged; status clean", () => {
    expect(status(work)).toBe("");
    const r = run(["workspace", "prepare", "box", "--source", work, "--guest-path", guestPath, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({ vm: "box", sourcePath: work, guestPath, mode: "full" });
    expect(readFileSync(join(guestPath, "libs/one/a.txt"), "utf8")).toBe("one\n");
    expect(readFileSync(join(guestPath, "libs/one/deep/n.txt"), "utf8")).toBe("nested\n");
    expect(readFileSync(join(guestPath, "libs/one/.git"), "utf8")).toBe(readFileSync(join(work, "libs/one/.git"), "utf8"));
    expect(existsSync(join(guestPath, ".git/modules/libs/one/modules/deep/HEAD"))).toBe(true);
    expect(readdirSync(join(guestPath, "libs/two"))).toEqual([]);
    expect(existsSync(join(guestPath, ".git/modules/libs/two"))).toBe(false);
    expect(readFileSync(join(guestPath, "model.bin"), "utf8")).toBe(LFS_POINTER);
    expect(readFileSync(join(guestPath, ".gitattributes"), "utf8")).toBe("*.bin filter=lfs diff=lfs merge=lfs -text\n");
    // the submodule's remote keeps its URL, without the credential
    expect(git(join(guestPath, "libs/one/deep"), "config", "remote.origin.url").trim()).toBe(CRED_URL.replace(/\/\/[^@]*@/, "//"));
    expect(Bun.spawnSync(["grep", "-r", "s3cret", guestPath]).exitCode).toBe(1);
    expect(status(guestPath)).toBe("");
    expect(subStatus(guestPath)).toBe(subStatus(work));
    expect(subStatus(guestPath)).toMatch(/^-[0-9a-f]{40} libs\/two$/m);
    expect(readFileSync(join(guestPath, HOSTILE, "t.txt"), "utf8")).toBe("two\n");
  });

  test("re-prepare after an edit inside the nested submodule sends only the delta, and the guest matches the host", () => {
    // the status calls above rewrote the guest's indexes: this one is a full copy, the next can be a delta
    expect(run(["workspace", "prepare", "box", "--source", work, "--guest-path", guestPath, "--json"]).json().mode).toBe("full");
    const deep = join(work, "libs/one/deep");
    writeFileSync(join(deep, "n.txt"), "nested, edited and committed on the host\n");
    git(deep, "commit", "-q", "-am", "deep: edit");
    writeFileSync(join(work, "libs/one/scratch.txt"), "untracked in a submodule\n");
    const r = run(["workspace", "prepare", "box", "--source", work, "--guest-path", guestPath, "--json"]);
    expect(r.code).toBe(0);
    const ws = r.json();
    expect(ws.mode).toBe("delta");
    expect(ws.sent).toBeLessThan(30);
    expect(readFileSync(join(guestPath, "libs/one/deep/n.txt"), "utf8")).toBe("nested, edited and committed on the host\n");
    expect(readFileSync(join(guestPath, "libs/one/scratch.txt"), "utf8")).toBe("untracked in a submodule\n");
    expect(status(guestPath)).toBe(status(work));
    expect(subStatus(guestPath)).toBe(subStatus(work));
  });

  test("export --fetch: guest work inside each submodule lands in refs/banger/box/* of that submodule's host repo; --patch carries the superproject", () => {
    const env = { ...process.env, GIT_AUTHOR_NAME: "g", GIT_AUTHOR_EMAIL: "g@example.com", GIT_COMMITTER_NAME: "g", GIT_COMMITTER_EMAIL: "g@example.com" };
    const gdeep = join(guestPath, "libs/one/deep");
    writeFileSync(join(gdeep, "n.txt"), "committed in the guest's nested submodule\n");
    expect(Bun.spawnSync(["git", "-C", gdeep, "commit", "-q", "-am", "guest: deep"], { env }).exitCode).toBe(0);
    writeFileSync(join(guestPath, "libs/one/a.txt"), "uncommitted in the guest's submodule\n");
    writeFileSync(join(guestPath, "README.md"), "super, edited in the guest\n");
    writeFileSync(join(guestPath, HOSTILE, "t.txt"), "two, edited under a hostile path\n");
    const r = run(["workspace", "export", "box", "--guest-path", guestPath, "--fetch", "--source", work, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const refs: { ref: string; commit: string; repo?: string }[] = r.json().refs;
    expect(refs.map((x) => `${x.repo ?? "."} ${x.ref}`).sort()).toEqual([". refs/banger/box/main", `${HOSTILE} refs/banger/box/HEAD`, "libs/one refs/banger/box/HEAD", "libs/one/deep refs/banger/box/HEAD"]);
    expect(git(join(work, HOSTILE), "show", "refs/banger/box/HEAD:t.txt")).toBe("two, edited under a hostile path\n");
    for (const d of [scratch, guestRoot, work, guestPath, join(guestPath, "libs")]) expect(existsSync(join(d, "pwned"))).toBe(false);
    expect(git(join(work, "libs/one/deep"), "show", "refs/banger/box/HEAD:n.txt")).toBe("committed in the guest's nested submodule\n");
    expect(git(join(work, "libs/one"), "show", "refs/banger/box/HEAD:a.txt")).toBe("uncommitted in the guest's submodule\n");
    expect(git(work, "show", "refs/banger/box/main:README.md")).toBe("super, edited in the guest\n");
    // nothing of the user's moved
    expect(readFileSync(join(work, "libs/one/a.txt"), "utf8")).toBe("one\n");
    // a submodule initialized on the host since the prepare is an empty dir in the guest: skipped, never given the superproject's work
    git(work, ...FILE, "submodule", "update", "-q", "--init", "--", "libs/two");
    const again = run(["workspace", "export", "box", "--guest-path", guestPath, "--fetch", "--source", work, "--json"]);
    expect(again.code).toBe(0);
    expect(again.json().refs.map((x: { repo?: string }) => x.repo ?? ".").sort()).toEqual([".", HOSTILE, "libs/one", "libs/one/deep"]);
    expect(git(join(work, "libs/two"), "for-each-ref", "refs/banger")).toBe("");
    const human = run(["workspace", "export", "box", "--guest-path", guestPath, "--fetch", "--source", work]);
    expect(human.stdout).toContain("libs/one/deep: refs/banger/box/HEAD ");
    // the patch is the superproject's alone (libs/one's HEAD did not move, so no gitlink change either)
    const patch = run(["workspace", "export", "box", "--guest-path", guestPath, "--patch", "-"]).stdout;
    expect(patch).toContain("+super, edited in the guest");
    expect(patch).not.toContain("a.txt");
  });
});
