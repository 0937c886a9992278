import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../../src/core/errors.ts";
import type { HookMap } from "../../src/core/hooks.ts";
import type { VMRecord } from "../../src/core/model.ts";
import { createExec } from "../../src/host/exec.ts";
import type { Exec, ExecResult, ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import { shellQuote } from "../../src/sessions/quote.ts";
import { WorkspaceEngine } from "../../src/workspace/engine.ts";
import { DiffScript, ExtractCommand, FinalizeScript, checkGuestPath } from "../../src/workspace/scripts.ts";
import { createTarRunner, listWorkspaceFiles, sanitizeGitConfig, stripUrlCredentials, type TarRunner } from "../../src/workspace/tar.ts";
import { git } from "../helpers/git.ts";

/** Scheme prefix for URLs carrying fake credentials. */
const HTTPS = "https://";

const scratch = mkdtempSync(join(tmpdir(), "banger-ws-unit-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const tmp = (name = "d") => {
  const d = join(scratch, `${n++}-${name}`);
  mkdirSync(d, { recursive: true });
  return d;
};

const HOSTILE = ["it's", "a; touch pwned", "$(touch pwned2)", "two\nlines", "`touch pwned3`", "-rf"];

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

/** Records what the engine asked for; runs it against a local dir standing in for the guest (HOME isolated). */
class LocalGuestSSH implements GuestSSH {
  execs: string[] = [];
  scripts: string[] = [];
  stdinBytes: Uint8Array[] = [];
  events: string[];
  closed = false;
  constructor(
    private readonly home: string,
    events: string[],
  ) {
    this.events = events;
  }
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
    const p = Bun.spawnSync(["bash", "-c", command], { env: { PATH: process.env.PATH!, HOME: this.home }, stdin: input, stdout: "pipe", stderr: "pipe" });
    if (p.stdout.length) opts.onStdout?.(new Uint8Array(p.stdout));
    if (p.stderr.length) opts.onStderr?.(new Uint8Array(p.stderr));
    return p.exitCode ?? 255;
  }
  async runScript(script: string): Promise<ExecResult> {
    this.scripts.push(script);
    this.events.push("script");
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

function setup() {
  const events: string[] = [];
  const home = tmp("home");
  const guest = new LocalGuestSSH(home, events);
  const exec = recordingExec();
  const hookCalls: HookMap["workspace:prepare"][] = [];
  const hooks = {
    run: async <K extends keyof HookMap>(name: K, payload: HookMap[K]) => {
      events.push(`hook:${name}`);
      if (name === "workspace:prepare") hookCalls.push(payload as HookMap["workspace:prepare"]);
    },
  };
  const ws = new WorkspaceEngine({ dial: async () => guest, exec, hooks });
  return { ws, guest, exec, hookCalls, events, home };
}

describe("workspace scripts", () => {
  test("extract: mkdir -p then tar into the quoted path, one line", () => {
    const c = ExtractCommand("/root/repo");
    expect(c).toContain("mkdir -p -- '/root/repo'");
    expect(c).toContain("tar -x -i --no-same-owner -f - -C '/root/repo'");
    expect(c.indexOf("mkdir")).toBeLessThan(c.indexOf("tar "));
    expect(c).not.toContain("\n");
  });

  test("finalize: DIR on its own line, safe.directory; chmod only when read-only; no \\n escapes", () => {
    const rw = FinalizeScript("/root/repo", false);
    expect(rw).toContain("DIR='/root/repo'\n");
    expect(rw).toContain(`git config --global --add safe.directory "$DIR"`);
    expect(rw).not.toContain("chmod");
    expect(rw).not.toContain("\\n");
    const ro = FinalizeScript("/root/repo", true);
    expect(ro).toContain(`chmod -R a-w "$DIR"`);
    expect(ro.indexOf("safe.directory")).toBeLessThan(ro.indexOf("chmod -R a-w"));
    // the seed's fake dispatches on `echo "missing cwd: $DIR"`: finalize must not look like a cwd preflight
    expect(ro).not.toContain("missing cwd");
    expect(DiffScript("/root/repo")).toContain("DIR='/root/repo'\n");
    expect(DiffScript("/root/repo")).not.toContain("\\n");
  });

  test("guest paths: absolute, not the root, no ..", () => {
    expect(checkGuestPath("/root/repo/")).toBe("/root/repo");
    for (const bad of ["", "repo", "/", "//", "/./", "/root/../etc", "/a\0b"]) {
      expect(() => checkGuestPath(bad)).toThrow(BangerError);
    }
  });

  test("hostile guest paths run through real bash: extract, finalize (read-only), diff — nothing injected", () => {
    for (const h of HOSTILE) {
      const root = tmp("hostile");
      const home = tmp("home");
      const guestPath = join(root, `ws ${h}`);
      const src = tmp("src");
      writeFileSync(join(src, "f.txt"), "x\n");
      git(src, "init", "-q");
      const tarBytes = sh("tar -cf - .", { cwd: src }).stdout;
      const x = sh(ExtractCommand(guestPath), { cwd: root, stdin: new Uint8Array(tarBytes) });
      expect(x.stderr).toBe("");
      expect(x.code).toBe(0);
      expect(readFileSync(join(guestPath, "f.txt"), "utf8")).toBe("x\n");
      const f = bash(FinalizeScript(guestPath, true), { cwd: root, env: { HOME: home } });
      expect(f.stderr).toBe("");
      expect(f.code).toBe(0);
      const safe = sh("git config --global --get-all safe.directory", { env: { HOME: home } }).stdout.toString();
      expect(safe).toBe(guestPath + "\n");
      expect(statSync(join(guestPath, "f.txt")).mode & 0o222).toBe(0);
      // a second finalize does not add the entry twice
      expect(bash(FinalizeScript(guestPath, false), { cwd: root, env: { HOME: home } }).code).toBe(0);
      expect(sh("git config --global --get-all safe.directory", { env: { HOME: home } }).stdout.toString()).toBe(guestPath + "\n");
      const d = bash(DiffScript(guestPath), { cwd: root, env: { HOME: home } });
      expect(d.code).toBe(0);
      expect(d.stdout.toString()).toContain("+++ b/f.txt");
      for (const p of ["pwned", "pwned2", "pwned3"]) expect(existsSync(join(root, p))).toBe(false);
      expect(existsSync("/tmp/pwned")).toBe(false);
    }
  });

  test("diff script on a missing path or a non-repo exits 3 with a message", () => {
    const home = tmp("home");
    const missing = bash(DiffScript(join(scratch, "nope")), { env: { HOME: home } });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("no workspace at");
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

describe("workspace engine (real git and tar on the host, a local dir as the guest)", () => {
  test("file list: git ls-files --cached --others --exclude-standard, ./-prefixed, plus .git", async () => {
    const repo = makeRepo();
    const exec = recordingExec();
    const files = await listWorkspaceFiles(exec, join(repo, "src"));
    expect(files.root).toBe(repo);
    expect(exec.calls).toContainEqual(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
    expect(files.paths).toContain("./README.md");
    expect(files.paths).toContain("./untracked.txt");
    expect(files.paths).toContain("./-rf it's $(x);\nname");
    expect(files.paths).not.toContain("./debug.log");
    expect(files.paths.at(-1)).toBe("./.git");
  });

  test("prepare: hook first, then extract, then finalize; what arrives is the repo without secrets", async () => {
    const repo = makeRepo();
    const { ws, guest, hookCalls, events, home } = setup();
    const guestPath = join(tmp("guest"), "repo");
    const r = await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: false });
    expect(r).toEqual({ vm: "box", sourcePath: repo, guestPath, readOnly: false, files: 5 });
    expect(events).toEqual(["hook:workspace:prepare", "exec", "script"]);
    expect(hookCalls).toEqual([{ vm: VM, sourcePath: repo, guestPath, readOnly: false }]);
    expect(guest.execs).toEqual([ExtractCommand(guestPath)]);
    expect(guest.scripts).toEqual([FinalizeScript(guestPath, false)]);
    expect(Buffer.from(guest.stdinBytes[0]!).includes("s3cret")).toBe(false);
    expect(readFileSync(join(guestPath, "-rf it's $(x);\nname"), "utf8")).toBe("hostile\n");
    expect(existsSync(join(guestPath, "untracked.txt"))).toBe(true);
    expect(existsSync(join(guestPath, "debug.log"))).toBe(false);
    expect(readFileSync(join(guestPath, ".git", "config"), "utf8")).toBe(sanitizeGitConfig(SECRET_CONFIG));
    expect(sh(`grep -r s3cret ${shellQuote(guestPath)}`).code).toBe(1);
    const env = { HOME: home };
    expect(sh(`git -C ${shellQuote(guestPath)} status --porcelain`, { env }).stdout.toString()).toBe(`?? "-rf it's $(x);\\nname"\n?? untracked.txt\n`);
    expect(statSync(join(guestPath, "README.md")).mode & 0o200).toBe(0o200);
  });

  test("read-only push freezes the tree; a second push over it works; diff round-trips with git apply", async () => {
    const repo = makeRepo();
    const { ws } = setup();
    const guestPath = join(tmp("guest"), "repo");
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: true });
    expect(statSync(join(guestPath, "README.md")).mode & 0o222).toBe(0);
    await ws.prepare({ vm: VM, sourcePath: repo, guestPath, readOnly: false });
    expect(statSync(join(guestPath, "README.md")).mode & 0o200).toBe(0o200);
    writeFileSync(join(guestPath, "README.md"), "hello\nchanged in guest\n");
    writeFileSync(join(guestPath, "added.bin"), Buffer.from([0, 1, 2, 255, 254]));
    const indexBefore = readFileSync(join(guestPath, ".git", "index"));
    const patch = await ws.diff(VM, guestPath);
    expect(readFileSync(join(guestPath, ".git", "index")).equals(indexBefore)).toBe(true);
    const text = new TextDecoder().decode(patch);
    expect(text).toContain("+changed in guest");
    expect(text).toContain("GIT binary patch");
    const clone = tmp("clone");
    git(clone, "clone", "-q", repo, ".");
    const applied = Bun.spawnSync(["git", "-C", clone, "apply", "-"], { stdin: patch, stderr: "pipe" });
    expect(applied.stderr.toString()).toBe("");
    expect(readFileSync(join(clone, "README.md"), "utf8")).toBe("hello\nchanged in guest\n");
    expect(readFileSync(join(clone, "added.bin")).equals(Buffer.from([0, 1, 2, 255, 254]))).toBe(true);
    expect(readFileSync(join(clone, "untracked.txt"), "utf8")).toBe("new\n");
  });

  test("bad input: not a repo, relative paths, the root as guest path — before any hook or SSH", async () => {
    const { ws, events } = setup();
    const notRepo = tmp("plain");
    await expect(ws.prepare({ vm: VM, sourcePath: notRepo })).rejects.toThrow(`${notRepo} is not a git repository`);
    await expect(ws.prepare({ vm: VM, sourcePath: "relative/path" })).rejects.toThrow("source path must be absolute");
    await expect(ws.prepare({ vm: VM, sourcePath: makeRepo(), guestPath: "/" })).rejects.toThrow("root directory");
    expect(events).toEqual([]);
  });

  test("a failing guest extract and a failing tar are errors, not silent partial pushes", async () => {
    const repo = makeRepo();
    const { ws, guest } = setup();
    guest.exec = async (_c, opts) => {
      if (opts?.stdin && typeof opts.stdin !== "string" && !(opts.stdin instanceof Uint8Array)) for await (const _ of opts.stdin);
      opts?.onStderr?.(new TextEncoder().encode("tar: disk full\n"));
      return 2;
    };
    await expect(ws.prepare({ vm: VM, sourcePath: repo })).rejects.toThrow("extracting into /root/repo failed (exit 2): tar: disk full");
    const badTar: TarRunner = {
      async *create() {
        yield new Uint8Array(10);
        throw new Error("tar exploded");
      },
    };
    const events: string[] = [];
    const g2 = new LocalGuestSSH(tmp("home"), events);
    g2.exec = async (_c, opts) => {
      try {
        if (opts?.stdin && typeof opts.stdin !== "string" && !(opts.stdin instanceof Uint8Array)) for await (const _ of opts.stdin);
      } catch {}
      return 0;
    };
    const ws2 = new WorkspaceEngine({ dial: async () => g2, exec: createExec(), hooks: { run: async () => {} }, tar: badTar });
    await expect(ws2.prepare({ vm: VM, sourcePath: repo })).rejects.toThrow("tar exploded");
    expect(g2.scripts).toEqual([]);
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
