// envd's filesystem without a guest: the scripts carry every value (user,
// paths, hostile names) only as quoted variables; the records they print
// become the SDK's EntryInfo (Go's permission letters, walk order,
// nanoseconds); inotifywait's events become the SDK's event types (banger's
// staged writes shown as the write they are); exit statuses become the
// SDK's error classes; and the Connect and /files handlers ask a recording
// fake guest for the right thing and answer in the SDK's shapes.
import { describe, expect, test } from "bun:test";
import { createEnvd, type EnvdDeps, type EnvdSandbox } from "../../src/daemon/e2b/envd/index.ts";
import { registerFilesystem } from "../../src/daemon/e2b/envd/filesystem.ts";
import { downloadEncoding, filesEndpoint } from "../../src/daemon/e2b/envd/files.ts";
import { MultipartError, boundaryOf, multipartParts } from "../../src/daemon/e2b/envd/multipart.ts";
import {
  FS_EXIT,
  commitScript,
  fsError,
  goPermissions,
  listScript,
  makeDirScript,
  moveScript,
  parseEntries,
  parseEpoch,
  parseStaged,
  readScript,
  removeScript,
  statScript,
  walkOrder,
  watchParser,
  watchScript,
  writeScript,
  type WatchEvent,
} from "../../src/daemon/e2b/envd/fs-scripts.ts";
import type { ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import { bashCommand } from "../../src/files/scripts.ts";
import { sampleVM } from "../helpers/fakes.ts";
import { HOSTILE_NAMES } from "../helpers/tree.ts";

const rec = (...f: string[]) => f.map((x) => x + "\0").join("");
const named = (name: string) => ({ name, defaulted: false });

describe("scripts carry hostile values only as quoted variables", () => {
  const hostile = [...HOSTILE_NAMES, "trailing\n", "~/x", "../../etc"];
  const scripts = (v: string) => [
    statScript(named(v), v),
    listScript(named(v), v, 2),
    makeDirScript(named(v), v),
    moveScript(named(v), v, v),
    removeScript(named(v), v),
    readScript(named(v), v, true),
    writeScript(named(v), v, false),
    commitScript(named(v), `/r/.banger-write-${v}`, v, false),
    watchScript(named(v), v, true),
  ];

  test("each value sits in the NAME='…' prelude; the bodies never splice one", () => {
    for (const v of hostile) {
      for (const s of scripts(v)) {
        const at = s.indexOf("\ngetent_entry() {"); // the scripts start after the prelude (compacted: no comment lines)
        expect(at).toBeGreaterThan(0);
        expect(s.slice(at)).not.toContain("pwned");
        expect(s.slice(at)).not.toContain("tick");
      }
    }
  });

  test("bash reads the prelude back to the exact values (user and path), newlines and quotes included", () => {
    for (const v of hostile) {
      const s = statScript(named(`u${v}`), v);
      const prelude = s.slice(0, s.indexOf("\ngetent_entry() {") + 1);
      const r = Bun.spawnSync(["bash", "-c", `${prelude}printf '%s\\0%s\\0' "$E2B_USER" "$P"`], { stdout: "pipe", stderr: "pipe" });
      expect(r.stdout.toString()).toBe(`u${v}\0${v}\0`);
    }
  });

  test("NUL cannot be carried by a shell word: refused with InvalidArgument before any script", () => {
    expect(() => statScript(named("user"), "a\0b")).toThrow(expect.objectContaining({ kind: "invalid", message: "path must not contain a NUL byte" }));
    expect(() => statScript(named("us\0er"), "a")).toThrow(expect.objectContaining({ kind: "invalid" }));
    expect(() => moveScript(named("user"), "a", "b\0")).toThrow(expect.objectContaining({ kind: "invalid" }));
  });

  test("only the exit statuses a script names are passed; flags are 0/1; depth at least 1", () => {
    const s = listScript(named("user"), "/x", 0);
    expect(s).toContain("DEPTH='1'");
    expect(s).toContain(`NOT_DIR_EXIT='${FS_EXIT.NOT_DIR}'`);
    expect(s).toContain(`NO_USER_EXIT='${FS_EXIT.NO_USER}'`);
    expect(s).not.toContain("NO_INOTIFY_EXIT");
    expect(watchScript(named("user"), "/x", false)).toContain(`NO_INOTIFY_EXIT='${FS_EXIT.NO_INOTIFY}'`);
    expect(watchScript(named("user"), "/x", false)).toContain("RECURSIVE='0'");
    expect(readScript(named("user"), "/x", true)).toContain("GZIP='1'");
    expect(writeScript(named("user"), "/x", true)).toContain("GUNZIP='1'");
    expect(commitScript(named("user"), "/t", "/x", true)).toContain("ABORT='1'");
  });
});

describe("records", () => {
  test("parseEntries: envd's EntryInfo from nine fields; a symlink is its target's type with an absolute target", () => {
    const out = Buffer.from(
      rec("f", "f", "4", "644", "user", "user", "1733470000.1234567890", "", "/home/user/a\nb") +
        rec("d", "d", "4096", "1777", "root", "root", "1733470000", "", "/tmp") +
        rec("l", "f", "8", "777", "user", "user", "1733470000.5", "info.txt", "/home/user/link") +
        rec("l", "N", "4", "777", "user", "user", "1.0", "/gone", "/home/user/dangling") +
        rec("p", "p", "0", "4755", "1001", "1001", "2", "", "/home/user/fifo") +
        rec("d", "d", "4096", "755", "root", "root", "3", "", "/"),
    );
    const [file, dir, link, dangling, fifo, root] = parseEntries(out);
    expect(file).toEqual({ name: "a\nb", type: "file", path: "/home/user/a\nb", size: 4, mode: 0o644, permissions: "-rw-r--r--", owner: "user", group: "user", modified: { seconds: 1733470000n, nanos: 123456789 } });
    expect(dir).toMatchObject({ name: "tmp", type: "dir", mode: 0o777, permissions: "dtrwxrwxrwx" });
    expect(link).toMatchObject({ name: "link", type: "file", permissions: "Lrwxrwxrwx", symlinkTarget: "/home/user/info.txt", modified: { seconds: 1733470000n, nanos: 500000000 } });
    expect(dangling).toMatchObject({ type: "symlink", symlinkTarget: "/gone" });
    expect(fifo).toMatchObject({ type: "other", mode: 0o755, permissions: "purwxr-xr-x", owner: "1001" });
    expect(root).toMatchObject({ name: "/", path: "/" });
    expect(parseEntries(Buffer.from(""))).toEqual([]);
  });

  test("goPermissions: Go's FileMode.String() letters", () => {
    expect(goPermissions("f", 0o644)).toBe("-rw-r--r--");
    expect(goPermissions("d", 0o755)).toBe("drwxr-xr-x");
    expect(goPermissions("l", 0o777)).toBe("Lrwxrwxrwx");
    expect(goPermissions("c", 0o666)).toBe("Dcrw-rw-rw-");
    expect(goPermissions("b", 0o660)).toBe("Drw-rw----");
    expect(goPermissions("s", 0o755)).toBe("Srwxr-xr-x");
    expect(goPermissions("f", 0o6755)).toBe("ugrwxr-xr-x");
    expect(goPermissions("f", 0)).toBe("----------");
  });

  test("parseEpoch: seconds and nanoseconds from find's %T@", () => {
    expect(parseEpoch("1733470000.0000000010")).toEqual({ seconds: 1733470000n, nanos: 1 });
    expect(parseEpoch("42")).toEqual({ seconds: 42n, nanos: 0 });
  });

  test("walkOrder: a dir's contents right after it, as Go's WalkDir", () => {
    const e = (path: string) => parseEntries(Buffer.from(rec("f", "f", "0", "644", "u", "u", "0", "", path)))[0]!;
    const paths = ["/w/a-b", "/w/a/z", "/w/a", "/w/B", "/w/a/b"].map(e).sort(walkOrder).map((x) => x.path);
    expect(paths).toEqual(["/w/B", "/w/a", "/w/a/b", "/w/a/z", "/w/a-b"]);
  });

  test("parseStaged: only write.sh's own temp next to the destination", () => {
    expect(parseStaged(Buffer.from("/h/.banger-write-Ab12\0/h/f\0"))).toEqual({ tmp: "/h/.banger-write-Ab12", dest: "/h/f" });
    expect(parseStaged(Buffer.from("/.banger-write-x\0/f\0"))).toEqual({ tmp: "/.banger-write-x", dest: "/f" });
    expect(() => parseStaged(Buffer.from("/etc/passwd\0/h/f\0"))).toThrow(/unexpected path/);
    expect(() => parseStaged(Buffer.from("/h/.banger-write-x/../../etc\0/h/f\0"))).toThrow(/unexpected path/);
    expect(() => parseStaged(Buffer.from("/h/.banger-write-x\0rel\0"))).toThrow(/unexpected path/);
  });
});

describe("watch events", () => {
  const wire = (...pairs: [string, string][]) => Buffer.from(rec("/w", ...pairs.flat()));

  function feedAll(bytes: Buffer, cut: number) {
    const got: WatchEvent[] = [];
    let root = "";
    let gone = 0;
    const feed = watchParser({ onRoot: (r) => (root = r), onEvent: (e) => got.push(e), onGone: () => gone++ });
    feed(bytes.subarray(0, cut));
    feed(bytes.subarray(cut));
    return { got, root, gone };
  }

  test("inotifywait's events as envd names them, split across chunks at every byte", () => {
    const bytes = wire(
      ["CREATE,ISDIR", "/w/sub"],
      ["CREATE", "/w/sub/a\nb"],
      ["MODIFY", "/w/sub/a\nb"],
      ["ATTRIB", "/w/x"],
      ["MOVED_FROM", "/w/x"],
      ["MOVED_TO", "/w/y"],
      ["DELETE", "/w/y"],
      ["DELETE,ISDIR", "/w/sub"],
      ["DELETE_SELF", "/w/sub/"],
    );
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { got, root, gone } = feedAll(bytes, cut);
      expect(root).toBe("/w");
      expect(gone).toBe(0);
      expect(got).toEqual([
        { type: "create", name: "sub", path: "/w/sub" },
        { type: "create", name: "sub/a\nb", path: "/w/sub/a\nb" },
        { type: "write", name: "sub/a\nb", path: "/w/sub/a\nb" },
        { type: "chmod", name: "x", path: "/w/x" },
        { type: "rename", name: "x", path: "/w/x" },
        { type: "create", name: "y", path: "/w/y" },
        { type: "remove", name: "y", path: "/w/y" },
        { type: "remove", name: "sub", path: "/w/sub" },
      ]);
    }
  });

  test("a staged write shows as the write it stands for; its temp never shows", () => {
    const { got } = feedAll(
      wire(
        ["CREATE", "/w/.banger-write-AbC"],
        ["MODIFY", "/w/.banger-write-AbC"],
        ["ATTRIB", "/w/.banger-write-AbC"],
        ["CREATE", "/w/f"],
        ["MOVED_FROM", "/w/.banger-write-AbC"],
        ["MOVED_TO", "/w/f"],
      ),
      0,
    );
    expect(got).toEqual([
      { type: "create", name: "f", path: "/w/f" },
      { type: "write", name: "f", path: "/w/f" },
    ]);
  });

  test("the watched dir itself going away ends the watch; a watch of / names entries without a slash", () => {
    expect(feedAll(wire(["DELETE_SELF", "/w/"]), 3).gone).toBe(1);
    expect(feedAll(wire(["MOVE_SELF", "/w/"]), 0).gone).toBe(1);
    const got: WatchEvent[] = [];
    watchParser({ onRoot: () => {}, onEvent: (e) => got.push(e), onGone: () => {} })(Buffer.from(rec("/", "CREATE", "/etc")));
    expect(got).toEqual([{ type: "create", name: "etc", path: "/etc" }]);
  });
});

describe("errors and request parts", () => {
  test("fsError: script exits and tools' words become the SDK's error kinds, one line", () => {
    expect(fsError(FS_EXIT.NOT_FOUND, "file not found: '/h/x' does not exist\n")).toMatchObject({ kind: "not_found", message: "file not found: '/h/x' does not exist" });
    expect(fsError(FS_EXIT.NOT_DIR, "path '/h/f' is not a directory").kind).toBe("invalid");
    expect(fsError(FS_EXIT.IS_DIR, "x").kind).toBe("invalid");
    expect(fsError(FS_EXIT.EXISTS, "x").kind).toBe("exists");
    expect(fsError(FS_EXIT.NO_USER, "error looking up user 'bob': unknown user").kind).toBe("user");
    expect(fsError(FS_EXIT.NO_INOTIFY, "install inotify-tools").kind).toBe("precondition");
    expect(fsError(1, "mv: cannot move 'a' to 'b': Permission denied")).toMatchObject({ kind: "permission", message: "mv: cannot move 'a' to 'b': Permission denied" });
    expect(fsError(1, "cat: write error: No space left on device\nmore").kind).toBe("no_space");
    expect(fsError(1, "mv: cannot stat 'a': No such file or directory").kind).toBe("not_found");
    expect(fsError(1, "mv: cannot overwrite 'b': Directory not empty").kind).toBe("invalid");
    expect(fsError(7, "")).toMatchObject({ kind: "internal", message: "exit 7" });
  });

  test("the call's user reaches the scripts as a value, marked when it is the default (test/unit/e2b-user.test.ts has the rule)", () => {
    expect(statScript({ name: "user", defaulted: true }, "x")).toContain("DEFAULTED='1'");
    expect(statScript({ name: "it's;$(x)", defaulted: false }, "x")).toContain(`E2B_USER='it'\\''s;$(x)'`);
    expect(statScript({ name: "user", defaulted: false }, "x")).toContain("DEFAULTED='0'");
  });

  test("downloadEncoding: gzip when named alone or when identity is refused; a runtime's blanket list stays identity; 406 when neither", () => {
    expect(downloadEncoding(null)).toBe("identity");
    expect(downloadEncoding("gzip")).toBe("gzip");
    expect(downloadEncoding("gzip, identity;q=0.5")).toBe("gzip");
    expect(downloadEncoding("gzip, deflate, br, zstd")).toBe("identity");
    expect(downloadEncoding("gzip;q=0")).toBe("identity");
    expect(downloadEncoding("br, identity;q=0, gzip")).toBe("gzip");
    expect(downloadEncoding("*;q=0.5, identity;q=0")).toBe("gzip");
    expect(downloadEncoding("br, identity;q=0")).toBeNull();
    expect(downloadEncoding("gzip;q=0, identity;q=0")).toBeNull();
  });
});

describe("bashCommand: one bash for the script", () => {
  // bash-only syntax, a hostile value, and stdin left to the script
  const script = "V='it'\\''s; $(x) \"q\"'; A=(1 \"two words\"); [[ -n $V ]] && printf '%s|' \"$V\" \"${A[1]}\" \"$0\"; cat";
  test("a bash login shell runs it itself (no second bash); sh hands it to bash; both run it alike with stdin for data", () => {
    const run = (shell: string) => {
      // $0 tells who runs it: the login shell's own name (LOGIN), or "bash" for a bash started for it
      const r = Bun.spawnSync([shell, "-c", bashCommand(script), "LOGIN"], { stdin: new TextEncoder().encode("data\n") });
      return [r.exitCode, r.stdout.toString()];
    };
    expect(run("bash")).toEqual([0, `it's; $(x) "q"|two words|LOGIN|data\n`]);
    expect(run("dash")).toEqual([0, `it's; $(x) "q"|two words|bash|data\n`]);
  });
  test("a line that would pass dropbear's 9000 bytes goes as `bash -c SCRIPT` alone; envd's fs scripts fit the one-bash form", () => {
    const long = `: ${"x".repeat(5000)}\necho ok`;
    expect(bashCommand(long)).toBe(`bash -c '${long}'`);
    expect(Bun.spawnSync(["bash", "-c", bashCommand(long)]).stdout.toString()).toBe("ok\n");
    const u = { name: "user", defaulted: true };
    const hostile = HOSTILE_NAMES.join("/");
    for (const sh of [statScript(u, hostile), listScript(u, hostile, 3), readScript(u, hostile, true), writeScript(u, hostile, true), watchScript(u, hostile, true)]) {
      expect(bashCommand(sh).startsWith("case ")).toBe(true);
    }
  });
});

/** The script a bashCommand line carries: run by a bash login shell as is, handed to `bash -c` (the same script, quoted) by any other. */
function scriptOf(command: string): string {
  // the script holds " ;; esac\n" itself: the split is the one that gives back this very line
  for (let at = command.indexOf(" ;; esac\n"); at >= 0; at = command.indexOf(" ;; esac\n", at + 1)) {
    const script = command.slice(at + " ;; esac\n".length);
    if (bashCommand(script) === command) return script;
  }
  throw new Error(`not a bashCommand line: ${command.slice(0, 80)}`);
}

/** A recording fake guest: every script and the bytes sent on its stdin (a watch's stdin stays open: not waited for); answers from `respond`. */
function recordingGuest(respond: (script: string) => { code?: number; stdout?: string; stderr?: string }) {
  const calls: { script: string; stdin: string }[] = [];
  const conn: GuestSSH = {
    async exec(command: string, opts?: ExecStreamOptions) {
      const script = scriptOf(command);
      const chunks: Uint8Array[] = [];
      if (opts?.stdin && !script.includes("inotifywait")) for await (const c of opts.stdin as AsyncIterable<Uint8Array>) chunks.push(c);
      calls.push({ script, stdin: Buffer.concat(chunks).toString("utf8") });
      const r = respond(script);
      if (r.stdout) opts?.onStdout?.(new TextEncoder().encode(r.stdout));
      if (r.stderr) opts?.onStderr?.(new TextEncoder().encode(r.stderr));
      return r.code ?? 0;
    },
    async runScript() {
      throw new Error("not used");
    },
    async upload() {
      throw new Error("not used");
    },
    close() {},
    closed: false,
  };
  const envd = createEnvd({ ssh: { get: async () => conn } } as unknown as EnvdDeps, [registerFilesystem], [filesEndpoint]);
  const sandbox: EnvdSandbox = { id: "sb", vm: sampleVM({ name: "sb" }), envVars: {} };
  return { calls, call: (req: Request) => envd.handle(req, sandbox) };
}

const rpc = (method: string, body: unknown, headers: Record<string, string> = {}) =>
  new Request(`http://envd/filesystem.Filesystem/${method}`, { method: "POST", headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headers }, body: JSON.stringify(body) });

describe("handlers against a recording guest", () => {
  test("Stat acts for the Basic user (default: user) and answers EntryInfo in Connect JSON", async () => {
    const g = recordingGuest(() => ({ stdout: rec("f", "f", "4", "644", "alice", "staff", "1733470000.25", "", "/home/alice/it's") }));
    const res = await g.call(rpc("Stat", { path: "it's" }, { authorization: `Basic ${Buffer.from("alice:").toString("base64")}` }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      entry: { name: "it's", type: "FILE_TYPE_FILE", path: "/home/alice/it's", size: "4", mode: 420, permissions: "-rw-r--r--", owner: "alice", group: "staff", modifiedTime: "2024-12-06T07:26:40.250Z" },
    });
    expect(g.calls).toHaveLength(1);
    expect(g.calls[0]!.script).toContain("E2B_USER='alice'");
    expect(g.calls[0]!.script).toContain("abs A");
    await g.call(rpc("Stat", { path: "x" }));
    expect(g.calls[1]!.script).toContain("E2B_USER='user'");
  });

  test("script failures are the Connect codes the SDK maps: not_found, already_exists, unauthenticated, failed_precondition", async () => {
    const cases: [number, string, string][] = [
      [FS_EXIT.NOT_FOUND, "Stat", "not_found"],
      [FS_EXIT.EXISTS, "MakeDir", "already_exists"],
      [FS_EXIT.NO_USER, "ListDir", "unauthenticated"],
      [FS_EXIT.NOT_DIR, "ListDir", "invalid_argument"],
      [FS_EXIT.NO_INOTIFY, "CreateWatcher", "failed_precondition"],
    ];
    for (const [code, method, want] of cases) {
      const g = recordingGuest(() => ({ code, stderr: "one line\n" }));
      const res = await g.call(rpc(method, { path: "p" }));
      expect(await res.json()).toEqual({ code: want, message: "one line" });
    }
  });

  test("GET /files: the username query wins; a missing file is 404 {code, message}", async () => {
    const g = recordingGuest(() => ({ code: FS_EXIT.NOT_FOUND, stderr: "path '/home/bob/x' does not exist\n" }));
    const res = await g.call(new Request("http://envd/files?path=x&username=bob", { headers: { authorization: `Basic ${Buffer.from("alice:").toString("base64")}` } }));
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: 404, message: "path '/home/bob/x' does not exist" });
    expect(g.calls[0]!.script).toContain("E2B_USER='bob'");
    expect(g.calls[0]!.script).toContain("GZIP='0'");
  });

  test("POST /files octet-stream: staged, then committed; answers [{name, type, path}]", async () => {
    const g = recordingGuest((s) =>
      s.includes("ABORT=") ? { stdout: rec("f", "f", "5", "644", "user", "user", "1", "", "/home/user/d/f") } : { stdout: "/home/user/d/.banger-write-Q1\0/home/user/d/f\0" },
    );
    const res = await g.call(new Request("http://envd/files?path=d/f", { method: "POST", headers: { "content-type": "application/octet-stream" }, body: "hello" }));
    expect(await res.json()).toEqual([{ name: "f", type: "file", path: "/home/user/d/f" }]);
    expect(g.calls.map((c) => c.stdin)).toEqual(["hello", ""]);
    expect(g.calls[1]!.script).toContain("TMP='/home/user/d/.banger-write-Q1'");
    expect(g.calls[1]!.script).toContain("ABORT='0'");
  });

  test("POST /files: multipart parts go one by one to their own paths; no path for a raw body is a 400", async () => {
    const g = recordingGuest((s) => {
      const p = /P='([^']*)'/.exec(s)?.[1] ?? "";
      return s.includes("ABORT=") ? { stdout: rec("f", "f", "1", "644", "user", "user", "1", "", /DEST='([^']*)'/.exec(s)![1]!) } : { stdout: `/h/.banger-write-x\0/h/${p}\0` };
    });
    const form = new FormData();
    form.append("file", new Blob(["A"]), "a.txt");
    form.append("file", new Blob(["B"]), "b.txt");
    const res = await g.call(new Request("http://envd/files", { method: "POST", body: form }));
    expect(((await res.json()) as { path: string }[]).map((e) => e.path)).toEqual(["/h/a.txt", "/h/b.txt"]);
    expect(g.calls.filter((c) => !c.script.includes("ABORT=")).map((c) => c.stdin)).toEqual(["A", "B"]);
    const bad = await g.call(new Request("http://envd/files", { method: "POST", headers: { "content-type": "application/octet-stream" }, body: "x" }));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/"path" query parameter is required/);
  });
});

describe("multipart, read as it arrives", () => {
  /** A body as a real FormData encodes it, and its boundary. */
  async function encoded(form: FormData): Promise<{ bytes: Buffer; boundary: string }> {
    const res = new Response(form);
    // the header first: Bun makes the boundary when it is first asked for
    const boundary = boundaryOf(res.headers.get("content-type")!)!;
    return { bytes: Buffer.from(await res.arrayBuffer()), boundary };
  }
  async function* chunks(bytes: Buffer, cuts: number[]) {
    let at = 0;
    for (const c of [...cuts, bytes.length]) {
      yield new Uint8Array(bytes.subarray(at, c));
      at = c;
    }
  }
  async function read(bytes: Buffer, boundary: string, cuts: number[]) {
    const out: { name: string; filename: string; data: string }[] = [];
    for await (const p of multipartParts(chunks(bytes, cuts), boundary)) {
      const parts: Uint8Array[] = [];
      if (p.name !== "skip") for await (const c of p.body) parts.push(c);
      out.push({ name: p.name, filename: p.filename, data: Buffer.concat(parts).toString("latin1") });
    }
    return out;
  }

  test("files and fields split across chunks at every byte; bodies that look like a delimiter's start; a part left unread is skipped", async () => {
    const form = new FormData();
    form.append("file", new Blob(["line\r\n--not the boundary\r\n-"]), "a.txt");
    form.append("skip", "a field nobody reads");
    form.append("file", new Blob([new Uint8Array([0, 13, 10, 45, 45, 255])]), "dir/b.bin");
    form.append("file", new Blob([]), "empty");
    const { bytes, boundary } = await encoded(form);
    const want = [
      { name: "file", filename: "a.txt", data: "line\r\n--not the boundary\r\n-" },
      { name: "skip", filename: "", data: "" },
      { name: "file", filename: "dir/b.bin", data: Buffer.from([0, 13, 10, 45, 45, 255]).toString("latin1") },
      { name: "file", filename: "empty", data: "" },
    ];
    for (let cut = 0; cut <= bytes.length; cut++) expect(await read(bytes, boundary, [cut])).toEqual(want);
    const everyByte = Array.from({ length: bytes.length }, (_, i) => i);
    expect(await read(bytes, boundary, everyByte)).toEqual(want);
  });

  test("hostile filenames come back as the SDK gave them (the form encoding's %22, %0A, %0D undone)", async () => {
    const names = ["it's \"quoted\".txt", "new\nline", "semi;colon $(x)", "cr\rx"];
    const form = new FormData();
    for (const n of names) form.append("file", new Blob(["x"]), n);
    const { bytes, boundary } = await encoded(form);
    expect((await read(bytes, boundary, [])).map((p) => p.filename)).toEqual(names);
  });

  test("a cut body is an error, never a short part", async () => {
    const form = new FormData();
    form.append("file", new Blob(["0123456789"]), "f");
    const { bytes, boundary } = await encoded(form);
    const at = bytes.indexOf("0123456789") + 5;
    await expect(read(bytes.subarray(0, at), boundary, [])).rejects.toThrow(MultipartError);
    await expect(read(Buffer.from("no boundary here"), boundary, [])).rejects.toThrow(/before its first boundary/);
    expect(boundaryOf('multipart/form-data; boundary="a b"')).toBe("a b");
    expect(boundaryOf("multipart/form-data")).toBeNull();
  });
});
