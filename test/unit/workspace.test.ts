import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import type { VMRecord } from "../../src/shared/model.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";
import type { Exec, ExecResult, ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import { shellQuote } from "../../src/shared/quote.ts";
import { CWDPreflightScript } from "../../src/sessions/scripts.ts";
import { WorkspaceEngine } from "../../src/workspace/engine.ts";
import { ActivateScript, DISK_FULL_EXIT, DiffScript, ExtractIntoStageCommand, ExportScript, FinalizeScript, RollbackScript, StageCommand, checkGuestPath, stagePaths } from "../../src/workspace/scripts.ts";
import { createTarRunner, listWorkspaceFiles, sanitizeGitConfig, stripUrlCredentials, type TarRunner } from "../../src/workspace/tar.ts";
import { fakeHost, testLogger } from "../helpers/fakes.ts";
import { git } from "../helpers/git.ts";

/** Scheme prefix for URLs carrying fake credentials. */
const HTTPS = "https://";

const scratch = mkdtempSync(join(tmpdir(), "banger-ws-unit-"));
afterAll(() => {
  unmountUnder(scratch);
  Bun.spawnSync(["chmod", "-R", "u+w", scratch]);
  rmSync(scratch, { recursive: true, force: true });
});

/** Read-only prepares run as root bind-mount the tree read-only: unmount ours (by path, only under our scratch dir). */
function unmountUnder(dir: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p.startsWith(dir + "/"))
    .reverse();
  for (const m of mounts) Bun.spawnSync(["umount", m]);
}
let n = 0;
const tmp = (name = "d") => {
  const d = join(scratch, `${n++}-${name}`);
  mkdirSync(d, { recursive: true });
  return d;
};

const HOSTILE = ["it's", "a; touch pwned", "$(touch pwned2)", "two\nlines", "`touch pwned3`", "-rf"];
const IS_ROOT = process.getuid?.() === 0;

function bash(script: string, opts: { cwd?: string; env?: Record<string, string>; stdin?: Uint8Array } = {}) {
  const p = Bun.spawnSync(["bash", "-s"], { cwd: opts.cwd, env: { PATH: process.env.PATH!, ...opts.env }, stdin: new TextEncoder().encode(script), stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout, stderr: p.stderr.toString() };
}
function sh(cmd: string, opts: { cwd?: string; env?: Record<string, string>; stdin?: Uint8Array } = {}) {
  const p = Bun.spawnSync(["bash", "-c", cmd], { cwd: opts.cwd, env: { PATH: process.env.PATH!, ...opts.env }, stdin: opts.stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout, stderr: p.stderr.toString() };
}
const SECRET_CONFIG = `[core]
	repositoryformatversion = 0
	bare = false
[remote "origin"]
	url = ${HTTPS}user:s3cret@example.com/x.git
	pushurl = "${HTTPS}tok3n-s3cret@example.com/x.git"
	fetch = +refs/heads/*:refs/remotes/origin/*
[http]
	extraheader = AUTHORIZATION: basic s3cret
[http "https://example.com/"]
	extraHeader = Authorization: Bearer s3cret
[credential]
	helper = store --file /root/s3cret
[credential "https://example.com"]
	username = s3cret-user
[url "${HTTPS}bot:s3cret@example.com/"]
	insteadOf = https://example.com/
[user]
	name = Keep Me
[http]
	proxy = http://proxyuser:s3cret@proxy.example.com:3128
[remote "mirror"]
	proxy = "socks5://s3cret@proxy.example.com"
[github]
	token = s3cret-gh
[gitlab "example.com"]
	Password = s3cret-gl
	apiKey = s3cret-api
[core]
	editor = vim
`;

/** A real repo: tracked, untracked, ignored, a hostile name, and credentials in .git/config. */
function makeRepo(): string {
  const dir = tmp("repo");
  git(dir, "init", "-q", "-b", "main");
  writeFileSync(join(dir, "README.md"), "hello\n");
  writeFileSync(join(dir, ".gitignore"), "*.log\n");
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src", "a.ts"), "export const a = 1;\n");
  git(dir, "add", ".");
  git(dir, "commit", "-q", "-m", "init");
  writeFileSync(join(dir, "untracked.txt"), "new\n");
  writeFileSync(join(dir, "debug.log"), "ignored\n");
  writeFileSync(join(dir, "-rf it's $(x);\nname"), "hostile\n");
  writeFileSync(join(dir, ".git", "config"), SECRET_CONFIG);
  return dir;
}

/** Records what the engine asked for; runs it with real bash against local dirs standing in for the guest (HOME isolated). */
class LocalGuestSSH implements GuestSSH {
  execs: string[] = [];
  scripts: string[] = [];
  stdinBytes: Uint8Array[] = [];
  closed = false;
  /** Shell put before every exec'd command, e.g. `ulimit -f 64;` to play a full disk. */
  prefix = "";
  constructor(
    private readonly home: string,
    readonly events: string[] = [],
  ) {}
  async exec(command: string, opts: ExecStreamOptions = {}): Promise<number> {
    this.execs.push(command);
    this.events.push("exec");
    const chunks: Uint8Array[] = [];
    const s = opts.stdin;
    if (typeof s === "string") chunks.push(new TextEncoder().encode(s));
    else if (s instanceof Uint8Array) chunks.push(s);
    else if (s) for await (const c of s) chunks.push(c.slice());
    const input = new Uint8Array(Buffer.concat(chunks));
    this.stdinBytes.push(input);
    const p = Bun.spawnSync(["bash", "-c", this.prefix + command], { env: { PATH: process.env.PATH!, HOME: this.home }, stdin: input, stdout: "pipe", stderr: "pipe" });
    if (p.stdout.length) opts.onStdout?.(new Uint8Array(p.stdout));
    if (p.stderr.length) opts.onStderr?.(new Uint8Array(p.stderr));
    return p.exitCode ?? 255;
  }
  async runScript(script: string): Promise<ExecResult> {
    this.scripts.push(script);
    this.events.push(script.includes("safe.directory") ? "activate" : script.includes("OLD") && script.includes("_rm") ? "rollback" : "finalize");
    const r = bash(script, { env: { HOME: this.home } });
    return { exitCode: r.code ?? 255, stdout: r.stdout.toString(), stderr: r.stderr };
  }
  async upload(): Promise<void> {
    throw new Error("not used");
  }
  close(): void {
    this.closed = true;
  }
}

function recordingExec(): Exec & { calls: string[][] } {
  const real = createExec();
  const calls: string[][] = [];
  return {
    calls,
    run: (cmd, args, opts) => {
      calls.push([cmd, ...args]);
      return real.run(cmd, args, opts);
    },
    spawnDetached: () => Promise.reject(new Error("not used")),
    which: (c) => real.which(c),
  };
}

const VM = { id: "vm-1", name: "box", runtime: { state: "running" } } as unknown as VMRecord;

/** A workspace engine over a LocalGuestSSH, with the real hook engine so plugin undos run as in the daemon. */
function setup() {
  const events: string[] = [];
  const home = tmp("home");
  const guest = new LocalGuestSSH(home, events);
  const exec = recordingExec();
  const hooks = new HookEngine();
  const ws = new WorkspaceEngine({ host: fakeHost(), log: testLogger(), dial: async () => guest, exec, hooks, token: () => "tok" });
  return { ws, guest, exec, hooks, events, home };
}

/** Entries next to the guest path other than it: stage/old dirs a prepare must never leave behind. */
function leftovers(guestPath: string): string[] {
  const base = guestPath.slice(guestPath.lastIndexOf("/") + 1);
  return readdirSync(dirname(guestPath)).filter((e) => e !== base);
}

describe("workspace scripts", () => {
  test("stage: one bash -c that refuses foreign dirs, makes the stage, then tars into it", () => {
    const c = StageCommand("/root/repo", "/root/.banger-stage.x");
    expect(c.startsWith("bash -c '")).toBe(true);
    expect(c).toContain("DIR='\\''/root/repo'\\''");
    expect(c).toContain("is not a banger workspace");
    expect(c.indexOf(`mkdir -- "$STAGE"`)).toBeLessThan(c.indexOf("tar -x -i --no-same-owner -f - -C"));
    // a failed tar is classified as disk full from df of the stage's parent, before anything removes the stage
    expect(c).toContain(`DISK_FULL_EXIT='\\''${DISK_FULL_EXIT}'\\''`);
    expect(c).toContain(`exit "$DISK_FULL_EXIT"`);
    expect(ExtractIntoStageCommand("/root/.banger-stage.x")).toContain(`DISK_FULL_EXIT='\\''${DISK_FULL_EXIT}'\\''`);
  });

  test("activate: DIR on its own line, old tree aside before the stage moves in, safe.directory with the path", () => {
    const a = ActivateScript("/root/repo", "/root/.banger-stage.x", "/root/.banger-old.x");
    expect(a).toContain("DIR='/root/repo'\n");
    expect(a).toContain(`git config --global --add safe.directory "$DIR"`);
    expect(a.indexOf(`mv -T -- "$DIR" "$OLD"`)).toBeLessThan(a.indexOf(`mv -T -- "$STAGE" "$DIR"`));
    expect(a.indexOf(`mv -T -- "$STAGE" "$DIR"`)).toBeLessThan(a.indexOf("safe.directory"));
    expect(a).not.toContain("chmod");
    // the seed's fake dispatches on `echo "missing cwd: $DIR"`: nothing here may look like a cwd preflight
    expect(a).not.toContain("missing cwd");
  });

  test("finalize: freezes (chmod -R a-w) only when READ_ONLY is yes, only after checking the tree exists; no \\n escapes anywhere", () => {
    const rw = FinalizeScript("/root/repo", "/root/.banger-old.x", false, "tok");
    expect(rw).toContain("READ_ONLY='no'\n");
    const ro = FinalizeScript("/root/repo", "/root/.banger-old.x", true, "tok");
    expect(ro.indexOf(`test -d "$DIR"`)).toBeGreaterThan(-1);
    expect(ro.indexOf(`test -d "$DIR"`)).toBeLessThan(ro.indexOf(`chmod -R a-w "$DIR"`));
    expect(ro).toContain("READ_ONLY='yes'\n");
    expect(ro).toContain("remount,bind,ro");
    for (const s of [rw, ro, ActivateScript("/r/x", "/r/s", "/r/o"), RollbackScript("/r/x", "/r/s", "/r/o", true), DiffScript("/r/x"), ExportScript("/r/x", "patch"), ExportScript("/r/x", "bundle")]) {
      expect(s).not.toContain("\\n");
    }
  });

  test("guest paths: below an allowed root; never /, /etc, /usr/..., a root itself or .ssh", () => {
    expect(checkGuestPath("/root/repo/")).toBe("/root/repo");
    expect(checkGuestPath("/home/me/./src")).toBe("/home/me/src");
    expect(checkGuestPath("/tmp/w s")).toBe("/tmp/w s");
    for (const bad of ["", "repo", "/", "//", "/./", "/root/../etc", "/a\0b", "/etc", "/etc/x", "/usr/local/src", "/root", "/home", "/root/.ssh/x", "/var/lib/x", "/bin/x"]) {
      expect(() => checkGuestPath(bad)).toThrow(BangerError);
    }
    expect(() => checkGuestPath("/etc/repo")).toThrow("outside the allowed roots");
  });

  test("stage and old dirs are siblings of the guest path", () => {
    expect(stagePaths("/root/repo", "t")).toEqual({ stage: "/root/.banger-stage.t", old: "/root/.banger-old.t" });
  });
});

/**
 * The seed's fakeGuestSSHClient, in TypeScript: it knows which guest dirs
 * exist and answers scripts by what they contain. It fails a cwd preflight
 * for a dir that is not there, a finalize whose DIR is not /root/repo, and a
 * chmod on a tree that does not exist yet.
 */
class SeedFakeGuest implements GuestSSH {
  dirs = new Set<string>();
  log: string[] = [];
  closed = false;
  async exec(command: string, opts: ExecStreamOptions = {}): Promise<number> {
    const s = opts.stdin;
    if (s && typeof s !== "string" && !(s instanceof Uint8Array)) for await (const _ of s);
    const stage = /STAGE='\\''([^']*)'\\''/.exec(command)?.[1];
    if (!command.includes("/root/repo") || !stage) throw new Error(`unexpected stage command: ${command}`);
    this.dirs.add(stage);
    this.log.push(`stage ${stage}`);
    return 0;
  }
  async runScript(script: string): Promise<ExecResult> {
    const ok = { exitCode: 0, stdout: "", stderr: "" };
    const fail = (why: string) => ({ exitCode: 1, stdout: "", stderr: why + "\n" });
    if (script.includes("\\n")) return fail(`escaped newline literal in ${JSON.stringify(script)}`);
    const dir = /^DIR='([^']*)'\n/m.exec(script)?.[1];
    if (script.includes(`echo "missing cwd: $DIR"`)) return dir && this.dirs.has(dir) ? ok : fail(`missing cwd: ${dir}`);
    if (script.includes(`git config --global --add safe.directory "$DIR"`)) {
      const stage = /^STAGE='([^']*)'\n/m.exec(script)?.[1];
      if (!script.includes("DIR='/root/repo'\n")) return fail("workspace finalize used unexpected guest path");
      if (!stage || !this.dirs.delete(stage)) return fail("activate before the stage exists");
      this.dirs.add("/root/repo");
      this.log.push("activate /root/repo");
      return ok;
    }
    if (script.includes("READ_ONLY='yes'\n")) {
      if (!this.dirs.has("/root/repo")) return fail("workspace path missing during readonly chmod");
      this.log.push("chmod /root/repo");
      return ok;
    }
    if (script.includes("_rm")) {
      this.log.push("rollback");
      return ok;
    }
    this.log.push("finalize");
    return ok;
  }
  async upload(): Promise<void> {}
  close(): void {
    this.closed = true;
  }
}

describe("prepare against the seed's fake guest", () => {
  test("read-only prepare of /root/repo: stage, activate (safe.directory), hook, chmod; then the session cwd preflight passes", async () => {
    const repo = makeRepo();
    const fake = new SeedFakeGuest();
    const hooks = new HookEngine();
    const seenByHook: string[] = [];
    hooks.hook("deps", "workspace:prepare", async ({ guestPath, readOnly, guest }) => {
      // the tree is in place, not yet frozen
      seenByHook.push(`${guestPath} ro=${readOnly} exists=${fake.dirs.has(guestPath)} chmodded=${fake.log.includes("chmod /root/repo")}`);
      expect(guest).toBe(fake);
    });
    const ws = new WorkspaceEngine({ host: fakeHost(), log: testLogger(), dial: async () => fake, exec: createExec(), hooks, token: () => "t1" });
    expect((await fake.runScript(CWDPreflightScript("/root/repo"))).stderr).toBe("missing cwd: /root/repo\n");
    const r = await ws.prepare({ vm: VM, sourcePath: repo, readOnly: true });
    expect(r.guestPath).toBe("/root/repo");
    expect(r.readOnly).toBe(true);
    expect(fake.log).toEqual(["stage /root/.banger-stage.t1", "activate /root/repo", "chmod /root/repo"]);
    expect(seenByHook).toEqual(["/root/repo ro=true exists=true chmodded=false"]);
    expect(fake.dirs.has("/root/.banger-stage.t1")).toBe(false);
    expect((await fake.runScript(CWDPreflightScript("/root/repo"))).exitCode).toBe(0);
  });

  test("a failing hook rolls the guest back and names plugin and hook; nothing is chmodded", async () => {
    const fake = new SeedFakeGuest();
    const hooks = new HookEngine();
    hooks.hook("deps", "workspace:prepare", () => {
      throw new Error("npm ci failed");
    });
    const ws = new WorkspaceEngine({ host: fakeHost(), log: testLogger(), dial: async () => fake, exec: createExec(), hooks, token: () => "t2" });
    const err = await ws.prepare({ vm: VM, sourcePath: makeRepo(), readOnly: true }).catch((e) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.message).toBe("deps:workspace:prepare: npm ci failed");
    expect(fake.log).toEqual(["stage /root/.banger-stage.t2", "activate /root/repo", "rollback", "rollback"]);
  });
});
describe("config sanitizing", () => {
  test("credentials, extraheaders and userinfo are gone; the rest stays", () => {
    const s = sanitizeGitConfig(SECRET_CONFIG);
    expect(s).not.toContain("s3cret");
    expect(s).not.toMatch(/extraheader/i);
    expect(s).not.toContain("[credential");
    expect(s).toContain("url = https://example.com/x.git");
    expect(s).toContain(`pushurl = "https://example.com/x.git"`);
    expect(s).toContain(`[url "https://example.com/"]`);
    expect(s).toContain("name = Keep Me");
    expect(s).toContain("fetch = +refs/heads/*:refs/remotes/origin/*");
    expect(s).toContain("[http]");
    // userinfo in any URL value (proxies too); keys named for secrets go whole, wherever they are
    expect(s).toContain("proxy = http://proxy.example.com:3128");
    expect(s).toContain(`proxy = "socks5://proxy.example.com"`);
    expect(s).toContain("[github]");
    expect(s).toContain("editor = vim");
  });

  test("git itself reads the sanitized config", () => {
    const dir = tmp("cfg");
    git(dir, "init", "-q");
    writeFileSync(join(dir, ".git", "config"), sanitizeGitConfig(SECRET_CONFIG));
    expect(git(dir, "config", "--get", "remote.origin.url").trim()).toBe("https://example.com/x.git");
    expect(git(dir, "config", "--get", "user.name").trim()).toBe("Keep Me");
  });

  test("stripUrlCredentials: user:pass@ and token@ go, scp-style stays", () => {
    expect(stripUrlCredentials(`${HTTPS}user:pw@example.com/x`)).toBe("https://example.com/x");
    expect(stripUrlCredentials(`${HTTPS}ghp_tok@example.com/x`)).toBe("https://example.com/x");
    expect(stripUrlCredentials("ssh://git@example.com/x")).toBe("ssh://example.com/x");
    expect(stripUrlCredentials("git@example.com:o/r.git")).toBe("git@example.com:o/r.git");
    expect(stripUrlCredentials("/srv/repo.git")).toBe("/srv/repo.git");
  });
});


/** A repo with the awkward cases: binary, symlinks (file, dir, dangling), exec bit, an empty dir. */
function makeRichRepo(): string {
  const dir = makeRepo();
  writeFileSync(join(dir, "blob.bin"), Buffer.from([0, 1, 2, 255, 254, 0, 10]));
  writeFileSync(join(dir, "run.sh"), "#!/bin/sh\necho hi\n");
  chmodSync(join(dir, "run.sh"), 0o755);
  symlinkSync("README.md", join(dir, "link-to-readme"));
  symlinkSync("src", join(dir, "link-to-src"));
  symlinkSync("nowhere", join(dir, "dangling"));
  git(dir, "add", "blob.bin", "run.sh", "link-to-readme", "link-to-src", "dangling");
  git(dir, "commit", "-q", "-m", "rich");
  mkdirSync(join(dir, "empty", "nested-empty"), { recursive: true });
  mkdirSync(join(dir, "src", "empty-too"));
  mkdirSync(join(dir, "node_modules", "big"), { recursive: true });
  writeFileSync(join(dir, ".gitignore"), "*.log\nnode_modules/\n");
  git(dir, "commit", "-q", "-am", "ignore node_modules");
  writeFileSync(join(dir, "node_modules", "big", "index.js"), "x".repeat(100_000));
  return dir;
}

describe("workspace engine (real git and tar on the host, real bash dirs as the guest)", () => {
  test("file list: git ls-files --cached --others --exclude-standard, ./-prefixed, empty dirs, plus .git", async () => {
    const repo = makeRichRepo();
    const exec = recordingExec();
    const files = await listWorkspaceFiles(exec, join(repo, "src"));
    expect(files.root).toBe(repo);
    expect(files.head).toBe(git(repo, "rev-parse", "HEAD").trim());
    expect(exec.calls).toContainEqual(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
    expect(files.paths).toContain("./README.md");
    expect(files.paths).toContain("./untracked.txt");
    expect(files.paths).toContain("./-rf it's $(x);\nname");
    expect(files.paths).toContain("./src/empty-too");
    expect(files.paths).not.toContain("./debug.log");
    expect(files.paths.some((p) => p.includes("node_modules"))).toBe(false);
    expect(files.paths.at(-1)).toBe("./.git");
  });

  test("prepare: what arrives is the repo (symlinks, exec bits, empty dirs, binary) without secrets or ignored files; nothing left beside it", async () => {
    const repo = makeRichRepo();
    const { ws, guest, events, home } = setup();
    const guestPath = join(tmp("guest"), "repo");
    const r = await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: false });
    expect(r).toMatchObject({ vm: "box", sourcePath: repo, guestPath, readOnly: false, base: git(repo, "rev-parse", "HEAD").trim() });
    expect(r.bytes).toBe(guest.stdinBytes[0]!.length);
    expect(events).toEqual(["exec", "activate", "finalize"]);
    expect(guest.execs).toEqual([StageCommand(guestPath, stagePaths(guestPath, "tok").stage)]);
    expect(Buffer.from(guest.stdinBytes[0]!).includes("s3cret")).toBe(false);
    expect(Buffer.from(guest.stdinBytes[0]!).includes("x".repeat(1000))).toBe(false); // node_modules stayed home
    expect(readFileSync(join(guestPath, "-rf it's $(x);\nname"), "utf8")).toBe("hostile\n");
    expect(existsSync(join(guestPath, "untracked.txt"))).toBe(true);
    expect(existsSync(join(guestPath, "debug.log"))).toBe(false);
    expect(existsSync(join(guestPath, "node_modules"))).toBe(false);
    expect(readFileSync(join(guestPath, "blob.bin")).equals(Buffer.from([0, 1, 2, 255, 254, 0, 10]))).toBe(true);
    expect(statSync(join(guestPath, "run.sh")).mode & 0o111).toBe(0o111);
    expect(statSync(join(guestPath, "README.md")).mode & 0o111).toBe(0);
    expect(readlinkSync(join(guestPath, "link-to-readme"))).toBe("README.md");
    expect(readlinkSync(join(guestPath, "link-to-src"))).toBe("src");
    expect(lstatSync(join(guestPath, "dangling")).isSymbolicLink()).toBe(true);
    expect(readdirSync(join(guestPath, "empty"))).toEqual(["nested-empty"]);
    expect(readdirSync(join(guestPath, "src", "empty-too"))).toEqual([]);
    expect(readFileSync(join(guestPath, ".git", "config"), "utf8")).toBe(sanitizeGitConfig(SECRET_CONFIG));
    expect(readFileSync(join(guestPath, ".git", "BANGER_BASE"), "utf8")).toBe(r.base + "\n");
    expect(sh(`grep -r s3cret ${shellQuote(guestPath)}`).code).toBe(1);
    const env = { HOME: home };
    expect(sh(`git -C ${shellQuote(guestPath)} status --porcelain`, { env }).stdout.toString()).toBe(`?? "-rf it's $(x);\\nname"\n?? untracked.txt\n`);
    expect(sh("git config --global --get-all safe.directory", { env }).stdout.toString()).toBe(guestPath + "\n");
    expect(leftovers(guestPath)).toEqual([]);
  });

  test("read-only: no write bits, and as root a write still fails (read-only bind mount); a second prepare over it works and leaves no old tree", async () => {
    const repo = makeRepo();
    const { ws } = setup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: true });
    expect(statSync(join(guestPath, "README.md")).mode & 0o222).toBe(0);
    const write = sh(`echo x >> ${shellQuote(join(guestPath, "README.md"))}`);
    expect(write.code).not.toBe(0);
    if (IS_ROOT) expect(write.stderr).toContain("Read-only file system");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: false });
    expect(statSync(join(guestPath, "README.md")).mode & 0o200).toBe(0o200);
    expect(sh(`echo x >> ${shellQuote(join(guestPath, "README.md"))}`).code).toBe(0);
    expect(leftovers(guestPath)).toEqual([]);
  });

  test("a failing workspace:prepare hook puts the previous tree back and runs the plugin's own undo", async () => {
    const repo = makeRepo();
    const { ws, hooks, events } = setup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath });
    writeFileSync(join(guestPath, "made-in-guest.txt"), "keep me\n");
    writeFileSync(join(repo, "README.md"), "new on the host\n");
    const undone: string[] = [];
    hooks.hook("deps", "workspace:prepare", ({ guestPath: gp }) => {
      writeFileSync(join(gp, "node_modules.stamp"), "x");
      return () => void undone.push("deps undo");
    });
    hooks.hook("lint", "workspace:prepare", ({ guestPath: gp }) => {
      expect(readFileSync(join(gp, "README.md"), "utf8")).toBe("new on the host\n");
      throw new Error("lint failed");
    });
    events.length = 0;
    // force: made-in-guest.txt is the guest's own work, which a prepare otherwise refuses to replace
    await expect(ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: true, force: true })).rejects.toThrow("lint:workspace:prepare: lint failed");
    expect(undone).toEqual(["deps undo"]);
    expect(events).toEqual(["exec", "activate", "rollback", "rollback"]);
    expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\n");
    expect(readFileSync(join(guestPath, "made-in-guest.txt"), "utf8")).toBe("keep me\n");
    expect(existsSync(join(guestPath, "node_modules.stamp"))).toBe(false);
    expect(statSync(join(guestPath, "README.md")).mode & 0o200).toBe(0o200);
    expect(leftovers(guestPath)).toEqual([]);

    // a first prepare whose hook fails leaves no guest path at all
    const fresh = join(tmp("guest"), "repo");
    await expect(ws.prepare({ vm: VM, sourcePath: repo, guestPath: fresh })).rejects.toThrow("lint failed");
    expect(existsSync(fresh)).toBe(false);
    expect(leftovers(fresh)).toEqual([]);
  });

  test("guest disk full (ulimit -f): a clear error, the previous workspace intact, no stage dir left", async () => {
    const repo = makeRepo();
    const { ws, guest } = setup();
    const guestPath = join(tmp("guest"), "repo it's");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath });
    writeFileSync(join(repo, "big.bin"), Buffer.alloc(2 * 1024 * 1024, 7));
    guest.prefix = "ulimit -f 512; ";
    const err = await ws.prepare({ vm: VM, sourcePath: repo, guestPath }).catch((e) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.message).toMatch(/^vm box: workspace .*: copying into the guest failed \(exit \d+\)/);
    expect(err.message).not.toContain("\n"); // tar's per-entry complaints are cut to the first one
    expect(existsSync(join(guestPath, "big.bin"))).toBe(false);
    expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\n");
    expect(leftovers(guestPath)).toEqual([]);
  });

  test("a guest path holding someone else's files is refused and left alone; a file there too", async () => {
    const { ws } = setup();
    const guestPath = join(tmp("guest"), "project");
    mkdirSync(guestPath);
    writeFileSync(join(guestPath, "precious.txt"), "mine\n");
    const err = await ws.prepare({ vm: VM, sourcePath: makeRepo(), guestPath }).catch((e) => e);
    expect(err.code).toBe("E_CONFLICT");
    expect(err.message).toBe(`vm box: ${guestPath} exists and is not a banger workspace: remove it or pick another --guest-path`);
    expect(readdirSync(guestPath)).toEqual(["precious.txt"]);
    expect(leftovers(guestPath)).toEqual([]);
    const file = join(tmp("guest"), "f");
    writeFileSync(file, "");
    await expect(ws.prepare({ vm: VM, sourcePath: makeRepo(), guestPath: file })).rejects.toThrow("exists and is not a directory");
  });

  test("bad input before any SSH: not a repo, relative paths, outside allowed roots, staged changes, submodules that cannot travel", async () => {
    const { ws, events } = setup();
    const notRepo = tmp("plain");
    await expect(ws.prepare({ vm: VM, sourcePath: notRepo })).rejects.toThrow(`${notRepo} is not a git repository`);
    await expect(ws.prepare({ vm: VM, sourcePath: "relative/path" })).rejects.toThrow("source path must be absolute");
    await expect(ws.prepare({ vm: VM, sourcePath: makeRepo(), guestPath: "/" })).rejects.toThrow("root directory");
    await expect(ws.prepare({ vm: VM, sourcePath: makeRepo(), guestPath: "/etc" })).rejects.toThrow("outside the allowed roots");
    const staged = makeRepo();
    writeFileSync(join(staged, "README.md"), "staged\n");
    git(staged, "add", "README.md");
    const e1 = await ws.prepare({ vm: VM, sourcePath: staged }).catch((e) => e);
    expect(e1.code).toBe("E_BAD_REQUEST");
    expect(e1.message).toBe(`${staged} has staged changes that are not committed: commit them (git commit) or set them aside (git stash) first`);
    const sub = makeRepo();
    const inner = makeRepo();
    git(sub, "-c", "protocol.file.allow=always", "submodule", "add", "-q", inner, "vendor/inner");
    git(sub, "commit", "-q", "-m", "sub");
    // staged work inside a submodule is refused like the superproject's
    writeFileSync(join(sub, "vendor/inner/README.md"), "staged in the submodule\n");
    git(join(sub, "vendor/inner"), "add", "README.md");
    await expect(ws.prepare({ vm: VM, sourcePath: sub })).rejects.toThrow("submodule vendor/inner has staged changes that are not committed");
    git(join(sub, "vendor/inner"), "reset", "-q", "--hard");
    // a submodule whose git dir lives in its work tree (cloned in by hand, never absorbed)
    const embedded = makeRepo();
    git(embedded, "clone", "-q", inner, "lib");
    git(embedded, "-c", "protocol.file.allow=always", "submodule", "add", "-q", inner, "lib");
    git(embedded, "commit", "-q", "-m", "embedded");
    await expect(ws.prepare({ vm: VM, sourcePath: embedded })).rejects.toThrow("submodule lib keeps its git dir inside its work tree: run `git submodule absorbgitdirs`");
    // a submodule's own checkout is not a workspace source: its superproject is
    await expect(ws.prepare({ vm: VM, sourcePath: join(sub, "vendor/inner") })).rejects.toThrow("worktrees and submodule checkouts are not supported; prepare the superproject");
    expect(events).toEqual([]);
  });

  test("a failing tar on the host is an error and the stage is removed", async () => {
    const repo = makeRepo();
    const events: string[] = [];
    const g2 = new LocalGuestSSH(tmp("home"), events);
    const badTar: TarRunner = {
      async *create() {
        yield new Uint8Array(10);
        throw new Error("tar exploded");
      },
    };
    const ws2 = new WorkspaceEngine({ host: fakeHost(), log: testLogger(), dial: async () => g2, exec: createExec(), hooks: new HookEngine(), tar: badTar, token: () => "bad" });
    const guestPath = join(tmp("guest"), "repo");
    g2.exec = async (c, opts) => {
      try {
        if (opts?.stdin && typeof opts.stdin !== "string" && !(opts.stdin instanceof Uint8Array)) for await (const _ of opts.stdin);
      } catch {}
      // the guest got a cut stream: the stage dir exists, half full
      mkdirSync(stagePaths(guestPath, "bad").stage, { recursive: true });
      return 0;
    };
    await expect(ws2.prepare({ vm: VM, sourcePath: repo, guestPath })).rejects.toThrow("tar exploded");
    expect(events).toEqual(["rollback"]);
    expect(existsSync(dirname(guestPath)) ? leftovers(guestPath) : []).toEqual([]);
  });

  test("hostile guest paths through real bash: prepare (read-only), diff, export — nothing injected", async () => {
    const repo = makeRepo();
    for (const h of HOSTILE) {
      const { ws, home } = setup();
      const root = tmp("hostile");
      const guestPath = join(root, `ws ${h}`);
      await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: true });
      expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\n");
      expect(statSync(join(guestPath, "README.md")).mode & 0o222).toBe(0);
      expect(sh("git config --global --get-all safe.directory", { env: { HOME: home } }).stdout.toString()).toBe(guestPath + "\n");
      expect(new TextDecoder().decode(await ws.diff(VM, guestPath))).toContain("+++ b/untracked.txt");
      expect(new TextDecoder().decode(await ws.exportPatch({ vm: VM, guestPath }))).toContain("banger: uncommitted work in");
      await ws.prepare({ vm: VM, sourcePath: repo, guestPath });
      expect(leftovers(guestPath)).toEqual([]);
      for (const p of ["pwned", "pwned2", "pwned3"]) expect(existsSync(join(root, p)) || existsSync(join(process.cwd(), p)) || existsSync(join("/tmp", p))).toBe(false);
    }
  });

  test("diff: guest edits vs HEAD as a patch git apply reproduces; the guest index is untouched", async () => {
    const repo = makeRepo();
    const { ws } = setup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath });
    writeFileSync(join(guestPath, "README.md"), "hello\nchanged in guest\n");
    writeFileSync(join(guestPath, "added.bin"), Buffer.from([0, 1, 2, 255, 254]));
    const indexBefore = readFileSync(join(guestPath, ".git", "index"));
    const patch = await ws.diff(VM, guestPath);
    expect(readFileSync(join(guestPath, ".git", "index")).equals(indexBefore)).toBe(true);
    expect(new TextDecoder().decode(patch)).toContain("GIT binary patch");
    const clone = tmp("clone");
    git(clone, "clone", "-q", repo, ".");
    const applied = Bun.spawnSync(["git", "-C", clone, "apply", "-"], { stdin: patch, stderr: "pipe" });
    expect(applied.stderr.toString()).toBe("");
    expect(readFileSync(join(clone, "README.md"), "utf8")).toBe("hello\nchanged in guest\n");
    expect(readFileSync(join(clone, "added.bin")).equals(Buffer.from([0, 1, 2, 255, 254]))).toBe(true);
  });

  /** Prepare, then in the "guest": one commit (binary file included) and uncommitted edits (an untracked file, a deletion). */
  async function guestWork() {
    const repo = makeRichRepo();
    const { ws, home } = setup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath });
    const env = { HOME: home, GIT_AUTHOR_NAME: "g", GIT_AUTHOR_EMAIL: "g@example.com", GIT_COMMITTER_NAME: "g", GIT_COMMITTER_EMAIL: "g@example.com" };
    const q = shellQuote(guestPath);
    writeFileSync(join(guestPath, "src", "a.ts"), "export const a = 2;\n");
    writeFileSync(join(guestPath, "logo.bin"), Buffer.from([137, 80, 78, 71, 0, 0, 255]));
    expect(sh(`git -C ${q} add src/a.ts logo.bin && git -C ${q} commit -q -m "guest: a=2"`, { env }).code).toBe(0);
    writeFileSync(join(guestPath, "README.md"), "hello\nwip in guest\n");
    writeFileSync(join(guestPath, "notes.txt"), "uncommitted\n");
    rmSync(join(guestPath, "run.sh"));
    const head = sh(`git -C ${q} rev-parse HEAD`, { env }).stdout.toString().trim();
    const index = readFileSync(join(guestPath, ".git", "index"));
    return { repo, ws, guestPath, head, index, env };
  }

  test("export --patch: new commits and uncommitted work as a series git am applies; guest HEAD and index never move", async () => {
    const { repo, ws, guestPath, head, index, env } = await guestWork();
    const patch = await ws.exportPatch({ vm: VM, guestPath });
    expect(sh(`git -C ${shellQuote(guestPath)} rev-parse HEAD`, { env }).stdout.toString().trim()).toBe(head);
    expect(readFileSync(join(guestPath, ".git", "index")).equals(index)).toBe(true);
    const text = new TextDecoder().decode(patch);
    expect((text.match(/^From [0-9a-f]{40} /gm) ?? []).length).toBe(2);
    expect(text).toContain("Subject: [PATCH 1/2] guest: a=2");
    expect(text).toContain("GIT binary patch");
    // git am on a clone of the source at the prepared commit
    const clone = tmp("clone");
    git(clone, "clone", "-q", repo, ".");
    const am = Bun.spawnSync(["git", "-C", clone, "am", "-q"], { stdin: patch, stderr: "pipe", env: { ...process.env, ...env } });
    expect(am.stderr.toString()).toBe("");
    expect(am.exitCode).toBe(0);
    expect(readFileSync(join(clone, "src", "a.ts"), "utf8")).toBe("export const a = 2;\n");
    expect(readFileSync(join(clone, "logo.bin")).equals(Buffer.from([137, 80, 78, 71, 0, 0, 255]))).toBe(true);
    expect(readFileSync(join(clone, "README.md"), "utf8")).toBe("hello\nwip in guest\n");
    expect(readFileSync(join(clone, "notes.txt"), "utf8")).toBe("uncommitted\n");
    expect(readFileSync(join(clone, "untracked.txt"), "utf8")).toBe("new\n");
    expect(existsSync(join(clone, "run.sh"))).toBe(false);
    expect(git(clone, "log", "--format=%s", "-2")).toBe("banger: uncommitted work in " + guestPath + "\nguest: a=2\n");
    // the same series as plain git apply on top of the source's HEAD
    const clone2 = tmp("clone");
    git(clone2, "clone", "-q", repo, ".");
    expect(Bun.spawnSync(["git", "-C", clone2, "apply", "--index", "-"], { stdin: patch, stderr: "pipe" }).exitCode).toBe(0);
  });

  test("export --fetch: refs/banger/<vm>/<branch> in the source; its HEAD, branches, index and files untouched", async () => {
    const { repo, ws, guestPath } = await guestWork();
    const before = { head: git(repo, "rev-parse", "HEAD"), branches: git(repo, "for-each-ref", "refs/heads"), status: git(repo, "status", "--porcelain"), index: readFileSync(join(repo, ".git", "index")) };
    const r = await ws.exportFetch({ vm: VM, guestPath, sourcePath: join(repo, "src") });
    expect(r.sourcePath).toBe(repo);
    expect(r.refs.map((x) => x.ref)).toEqual(["refs/banger/box/main"]);
    expect(git(repo, "rev-parse", "refs/banger/box/main").trim()).toBe(r.refs[0]!.commit);
    expect(git(repo, "show", "refs/banger/box/main:README.md")).toBe("hello\nwip in guest\n");
    expect(git(repo, "show", "refs/banger/box/main~1:src/a.ts")).toBe("export const a = 2;\n");
    expect(git(repo, "rev-parse", "refs/banger/box/main~2").trim()).toBe(before.head.trim());
    expect(git(repo, "rev-parse", "HEAD")).toBe(before.head);
    expect(git(repo, "for-each-ref", "refs/heads")).toBe(before.branches);
    expect(git(repo, "status", "--porcelain")).toBe(before.status);
    expect(readFileSync(join(repo, ".git", "index")).equals(before.index)).toBe(true);
    expect(existsSync(join(repo, ".git", "FETCH_HEAD"))).toBe(false);
  });

  test("export with nothing new: an empty patch and no refs; on a read-only workspace it still works", async () => {
    const repo = makeRepo();
    rmSync(join(repo, "untracked.txt"));
    rmSync(join(repo, "-rf it's $(x);\nname"));
    const { ws } = setup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: true });
    expect((await ws.exportPatch({ vm: VM, guestPath })).length).toBe(0);
    expect((await ws.exportFetch({ vm: VM, guestPath, sourcePath: repo })).refs).toEqual([]);
    await expect(ws.exportPatch({ vm: VM, guestPath: join(tmp("guest"), "never") })).rejects.toThrow("no workspace at");
  });

  /** An engine that keeps manifests (as the daemon does) for a VM whose VMDir is a temp dir. */
  function deltaSetup() {
    const events: string[] = [];
    const home = tmp("home");
    const guest = new LocalGuestSSH(home, events);
    const vm = { id: "vm-2", name: "box", runtime: { state: "running", vmDir: tmp("vmdir") } } as unknown as VMRecord;
    const ws = new WorkspaceEngine({ host: fakeHost(), log: testLogger(), dial: async () => guest, exec: createExec(), fs: createFS(), hooks: new HookEngine() });
    return { ws, guest, vm, home };
  }
  /** Everything under a tree but the per-prepare files and what makeRepo ignores, as "path type mode sha", to compare guest and host. */
  function treeSums(dir: string): string {
    return sh(`cd ${shellQuote(dir)} && find . \\( -path ./.git/config -o -path ./.git/BANGER_BASE -o -path ./.git/BANGER_SENT -o -path ./.git/BANGER_TREE -o -path ./.git/BANGER_REFS -o -path ./.git/FETCH_HEAD -o -path ./debug.log -o -path ./node_modules \\) -prune -o \\( -type f -o -type l -o -type d -empty \\) -printf '%p %y %m ' -exec sh -c 'if [ -f "$1" ] && [ ! -L "$1" ]; then sha1sum < "$1"; else echo; fi' sh {} \\; | LC_ALL=C sort`).stdout.toString();
  }

  test("re-prepare sends only what changed (edits, a new file, a deleted dir, a new commit) and the guest matches the host", async () => {
    const repo = makeRichRepo();
    mkdirSync(join(repo, "gone", "deep"), { recursive: true });
    writeFileSync(join(repo, "gone", "deep", "x.txt"), "x\n");
    const { ws, vm } = deltaSetup();
    const guestPath = join(tmp("guest"), "repo it's");
    const first = await ws.prepare({ vm, sourcePath: repo, guestPath });
    expect(first.mode).toBe("full");
    expect(readdirSync(join(vm.runtime.vmDir, "workspaces")).length).toBe(1);
    writeFileSync(join(repo, "README.md"), "hello\nedited on the host\n");
    writeFileSync(join(repo, "fresh.txt"), "fresh\n");
    rmSync(join(repo, "gone"), { recursive: true });
    writeFileSync(join(repo, "src", "a.ts"), "export const a = 3;\n");
    git(repo, "commit", "-q", "-m", "host commit", "src/a.ts");
    const inodeBefore = statSync(join(guestPath, "blob.bin")).ino;
    const again = await ws.prepare({ vm, sourcePath: repo, guestPath });
    expect(again.mode).toBe("delta");
    expect(again.sent).toBeLessThan(30);
    expect(again.bytes).toBeLessThan(first.bytes / 2);
    expect(again.base).toBe(git(repo, "rev-parse", "HEAD").trim());
    // unchanged files were linked, not sent
    expect(statSync(join(guestPath, "blob.bin")).ino).toBe(inodeBefore);
    expect(existsSync(join(guestPath, "gone"))).toBe(false);
    expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\nedited on the host\n");
    expect(treeSums(guestPath)).toBe(treeSums(repo));
    expect(git(guestPath, "log", "--format=%s", "-1")).toBe("host commit\n");
    expect(leftovers(guestPath)).toEqual([]);
    // and again with nothing changed: only the index-like churn, no file bodies
    const third = await ws.prepare({ vm, sourcePath: repo, guestPath });
    expect(third.mode).toBe("delta");
    expect(treeSums(guestPath)).toBe(treeSums(repo));
  });

  test("re-prepare (forced over the guest's changes) falls back to a full copy when the guest changed the tree, after a read-only prepare, or after a failed prepare", async () => {
    const repo = makeRepo();
    const { ws, vm, guest } = deltaSetup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm, sourcePath: repo, guestPath });
    await Bun.sleep(20);
    writeFileSync(join(guestPath, "README.md"), "changed in the guest\n");
    const r = await ws.prepare({ vm, sourcePath: repo, guestPath, force: true });
    expect(r.mode).toBe("full");
    expect(readFileSync(join(guestPath, "README.md"), "utf8")).toBe("hello\n");
    expect(treeSums(guestPath)).toBe(treeSums(repo));
    // deleted in the guest: the dir's mtime gives it away
    await Bun.sleep(20);
    rmSync(join(guestPath, "src", "a.ts"));
    expect((await ws.prepare({ vm, sourcePath: repo, guestPath, force: true })).mode).toBe("full");
    expect(existsSync(join(guestPath, "src", "a.ts"))).toBe(true);
    expect((await ws.prepare({ vm, sourcePath: repo, guestPath })).mode).toBe("delta");
    await ws.prepare({ vm, sourcePath: repo, guestPath, readOnly: true });
    expect((await ws.prepare({ vm, sourcePath: repo, guestPath })).mode).toBe("full");
    // a failed delta prepare forgets the manifest: the next one is full again
    guest.prefix = "ulimit -f 1; ";
    writeFileSync(join(repo, "big.bin"), Buffer.alloc(1024 * 1024, 1));
    await expect(ws.prepare({ vm, sourcePath: repo, guestPath })).rejects.toThrow("copying into the guest failed");
    expect(existsSync(join(guestPath, "big.bin"))).toBe(false);
    expect(leftovers(guestPath)).toEqual([]);
    guest.prefix = "";
    expect((await ws.prepare({ vm, sourcePath: repo, guestPath })).mode).toBe("full");
    expect(treeSums(guestPath)).toBe(treeSums(repo));
  });

  test("the real tar runner never reads a leading - as an option", async () => {
    const dir = tmp("dash");
    writeFileSync(join(dir, "--checkpoint-action=exec=touch x"), "y");
    const chunks: Uint8Array[] = [];
    for await (const c of createTarRunner().create(dir, ["./--checkpoint-action=exec=touch x"], [])) chunks.push(c);
    const list = sh("tar -tf -", { stdin: new Uint8Array(Buffer.concat(chunks)) }).stdout.toString();
    expect(list).toBe("./--checkpoint-action=exec=touch x\n");
    expect(existsSync(join(dir, "x"))).toBe(false);
  });
});
