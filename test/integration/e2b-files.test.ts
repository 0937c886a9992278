// envd's filesystem (Connect filesystem.Filesystem + HTTP /files) driven by
// the real `e2b` SDK in debug mode (no control plane: its envd URL is a
// Bun.serve of createEnvd), against a real sshd on 127.0.0.1 playing the
// guest. Calls act for a throwaway user this test makes (and removes), so
// home-relative paths and ownership are checked for real.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuthenticationError, FileNotFoundError, InvalidArgumentError, Sandbox, SandboxError, type FilesystemEvent } from "e2b";
import { createEnvd, type EnvdDeps, type EnvdSandbox } from "../../src/daemon/e2b/envd/index.ts";
import { registerFilesystem } from "../../src/daemon/e2b/envd/filesystem.ts";
import { EventType, Filesystem } from "../../src/daemon/e2b/gen/filesystem/filesystem_pb.ts";
import { filesEndpoint } from "../../src/daemon/e2b/envd/files.ts";
import { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { createSSHDialer } from "../../src/host/ssh.ts";
import type { VMRecord } from "../../src/shared/model.ts";
import { guestLogin, startSSHD, type TestSSHD } from "../helpers/sshd.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-e2b-files-"));
const U = `e2bfs${randomBytes(3).toString("hex")}`;
const HOME = join(dir, "home", U);
const as = { user: U };
let sshd: TestSSHD;
let pool: SSHPool;
let server: ReturnType<typeof Bun.serve>;
let sbx: Sandbox;
let uid = -1;
let userMade = false;

const vm = {
  id: "vm-e2b-files",
  name: "e2bfiles",
  spec: { image: "none", cpus: 1, memoryMiB: 128, diskMiB: 0, workDiskMiB: 0, driver: "none", storage: "copy" },
  runtime: { state: "running", guestIP: "127.0.0.1", sshHost: "127.0.0.1", sshPort: 0 },
} as unknown as VMRecord;

function sh(cmd: string[]): void {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** inotifywait processes watching under our dir (the guest side of a watch). */
function watchers(): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (cmd.startsWith("inotifywait") && cmd.includes(dir)) out.push(Number(d));
    } catch {}
  }
  return out;
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) return;
  sshd = await startSSHD();
  mkdirSync(join(dir, "home"), { recursive: true });
  sh(["useradd", "-M", "-U", "-d", HOME, "-s", "/bin/bash", U]);
  userMade = true;
  mkdirSync(HOME, { mode: 0o755 });
  sh(["chown", `${U}:${U}`, HOME]);
  uid = statSync(HOME).uid;
  const dialer = createSSHDialer();
  pool = new SSHPool(() => dialer.dial({ host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientKey, hostKey: sshd.hostPublicKey }));
  const envd = createEnvd({ ssh: pool } as unknown as EnvdDeps, [registerFilesystem], [filesEndpoint]);
  const sandbox: EnvdSandbox = { id: "debug_sandbox_id", vm, envVars: {} };
  server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 60, fetch: (req) => envd.handle(req, sandbox) });
  sbx = await Sandbox.create({ debug: true, sandboxUrl: `http://127.0.0.1:${server.port}` });
}, 60_000);

afterAll(async () => {
  await server?.stop(true);
  pool?.closeAll();
  for (const pid of watchers()) process.kill(pid, "SIGKILL");
  if (userMade) Bun.spawnSync(["userdel", U]);
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

guestLogin.describe("e2b SDK files against envd over a real sshd", () => {
  test("write and read text: a home-relative path, owned by the user; formats text, bytes, blob, stream", async () => {
    const info = await sbx.files.write("hello.txt", "Hello, world!", as);
    expect(info).toMatchObject({ name: "hello.txt", type: "file", path: `${HOME}/hello.txt` });
    expect(readFileSync(join(HOME, "hello.txt"), "utf8")).toBe("Hello, world!");
    expect(statSync(join(HOME, "hello.txt")).uid).toBe(uid);
    expect(await sbx.files.read("hello.txt", as)).toBe("Hello, world!");
    expect(new TextDecoder().decode(await sbx.files.read("hello.txt", { ...as, format: "bytes" }))).toBe("Hello, world!");
    expect(await (await sbx.files.read(`${HOME}/hello.txt`, { ...as, format: "blob" })).text()).toBe("Hello, world!");
    const stream = await sbx.files.read("~/hello.txt", { ...as, format: "stream" });
    expect(await new Response(stream).text()).toBe("Hello, world!");
    writeFileSync(join(HOME, "empty"), "");
    expect(await sbx.files.read("empty", as)).toBe("");
    expect((await sbx.files.read("empty", { ...as, format: "bytes" })).length).toBe(0);
    expect((await sbx.files.read("empty", { ...as, format: "blob" })).size).toBe(0);
    expect((await new Response(await sbx.files.read("empty", { ...as, format: "stream" })).arrayBuffer()).byteLength).toBe(0);
  });

  test("overwrite keeps the file's mode and owner; new parents are made for the user", async () => {
    writeFileSync(join(HOME, "keep.sh"), "old", { mode: 0o750 });
    await sbx.files.write("keep.sh", "new contents", as);
    expect(readFileSync(join(HOME, "keep.sh"), "utf8")).toBe("new contents");
    expect(statSync(join(HOME, "keep.sh")).mode & 0o777).toBe(0o750);
    await sbx.files.write("deep/er/file.txt", "x", as);
    expect(statSync(join(HOME, "deep")).uid).toBe(uid);
    expect(statSync(join(HOME, "deep/er")).uid).toBe(uid);
    expect(statSync(join(HOME, "deep/er/file.txt")).mode & 0o777).toBe(0o644);
    expect(readdirSync(join(HOME, "deep/er"))).toEqual(["file.txt"]);
  });

  test("a write to a symlink goes through it: the target gets the bytes, the link stays", async () => {
    await sbx.files.write("real.txt", "before", as);
    symlinkSync("real.txt", join(HOME, "via-link.txt"));
    const info = await sbx.files.write("via-link.txt", "after", as);
    expect(info.path).toBe(`${HOME}/real.txt`);
    expect(lstatSync(join(HOME, "via-link.txt")).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(HOME, "real.txt"), "utf8")).toBe("after");
  });

  test("getInfo: file, dir and symlink as envd describes them; exists", async () => {
    await sbx.files.write("info.txt", "test", as);
    const f = await sbx.files.getInfo("info.txt", as);
    expect(f).toMatchObject({ name: "info.txt", type: "file", path: `${HOME}/info.txt`, size: 4, mode: 0o644, permissions: "-rw-r--r--", owner: U, group: U });
    expect(Math.abs(f.modifiedTime!.getTime() - statSync(join(HOME, "info.txt")).mtimeMs)).toBeLessThan(2);
    expect(await sbx.files.makeDir("infodir", as)).toBe(true);
    const d = await sbx.files.getInfo("infodir", as);
    expect(d).toMatchObject({ name: "infodir", type: "dir", mode: 0o755, permissions: "drwxr-xr-x", owner: U, group: U });
    expect(d.size).toBeGreaterThan(0);
    symlinkSync("info.txt", join(HOME, "link.txt"));
    const l = await sbx.files.getInfo("link.txt", as);
    expect(l).toMatchObject({ name: "link.txt", type: "file", symlinkTarget: `${HOME}/info.txt` });
    expect(l.permissions).toBe("Lrwxrwxrwx");
    expect(await sbx.files.exists("info.txt", as)).toBe(true);
    expect(await sbx.files.exists("infodir", as)).toBe(true);
    expect(await sbx.files.exists("nope.txt", as)).toBe(false);
  });

  test("makeDir: true when made, false when there; nested; owned by the user; a file in the way is an error", async () => {
    expect(await sbx.files.makeDir("md/a/b", as)).toBe(true);
    expect(statSync(join(HOME, "md/a/b")).isDirectory()).toBe(true);
    expect(statSync(join(HOME, "md")).uid).toBe(uid);
    expect(statSync(join(HOME, "md/a/b")).uid).toBe(uid);
    expect(await sbx.files.makeDir("md/a/b", as)).toBe(false);
    writeFileSync(join(HOME, "md/file"), "");
    await expect(sbx.files.makeDir("md/file", as)).rejects.toThrow(InvalidArgumentError);
  });

  test("list: depth 1 and 2 in walk order, entries with their types; not found and not a dir", async () => {
    for (const d of ["ls/subdir1/subdir1_1", "ls/subdir1/subdir1_2", "ls/subdir2/subdir2_1"]) await sbx.files.makeDir(d, as);
    await sbx.files.write("ls/file1.txt", "Hello", as);
    const one = await sbx.files.list("ls", as);
    expect(one.map((e) => [e.name, e.type, e.path])).toEqual([
      ["file1.txt", "file", `${HOME}/ls/file1.txt`],
      ["subdir1", "dir", `${HOME}/ls/subdir1`],
      ["subdir2", "dir", `${HOME}/ls/subdir2`],
    ]);
    const two = await sbx.files.list("ls", { ...as, depth: 2 });
    expect(two.map((e) => e.path.slice(HOME.length + 4))).toEqual(["file1.txt", "subdir1", "subdir1/subdir1_1", "subdir1/subdir1_2", "subdir2", "subdir2/subdir2_1"]);
    expect((await sbx.files.list("ls", { ...as, depth: 5 })).length).toBe(6);
    await expect(sbx.files.list("ls-missing", as)).rejects.toThrow(FileNotFoundError);
    await expect(sbx.files.list("ls/file1.txt", as)).rejects.toThrow(InvalidArgumentError);
    await expect(sbx.files.list("ls", { ...as, depth: 0 })).rejects.toThrow(InvalidArgumentError);
  });

  test("rename: the new entry, the old name gone, parents made; a missing source is FileNotFoundError", async () => {
    await sbx.files.write("old.txt", "moved", as);
    const info = await sbx.files.rename("old.txt", "mv/to/new.txt", as);
    expect(info).toMatchObject({ name: "new.txt", type: "file", path: `${HOME}/mv/to/new.txt` });
    expect(await sbx.files.exists("old.txt", as)).toBe(false);
    expect(await sbx.files.read("mv/to/new.txt", as)).toBe("moved");
    expect(statSync(join(HOME, "mv")).uid).toBe(uid);
    await expect(sbx.files.rename("not-there.txt", "x.txt", as)).rejects.toThrow(FileNotFoundError);
  });

  test("remove: a file, a whole dir, and nothing there is no error", async () => {
    await sbx.files.write("rm/a/b.txt", "x", as);
    await sbx.files.write("rm.txt", "x", as);
    await sbx.files.remove("rm.txt", as);
    expect(existsSync(join(HOME, "rm.txt"))).toBe(false);
    await sbx.files.remove("rm", as);
    expect(existsSync(join(HOME, "rm"))).toBe(false);
    await sbx.files.remove("rm-never-was", as);
  });

  test("missing paths are the SDK's FileNotFoundError: read (each format), getInfo; a dir read is InvalidArgument", async () => {
    await expect(sbx.files.read("missing.txt", as)).rejects.toThrow(FileNotFoundError);
    await expect(sbx.files.read("missing.txt", { ...as, format: "stream" })).rejects.toThrow(FileNotFoundError);
    await expect(sbx.files.read("missing.txt", { ...as, format: "bytes" })).rejects.toThrow(FileNotFoundError);
    await expect(sbx.files.getInfo("missing.txt", as)).rejects.toThrow(FileNotFoundError);
    await expect(sbx.files.read(".", as)).rejects.toThrow(InvalidArgumentError);
  });

  test("an unknown user is the SDK's AuthenticationError, over Connect and over /files", async () => {
    const nobody = { user: `no${randomBytes(4).toString("hex")}` };
    await expect(sbx.files.getInfo("x", nobody)).rejects.toThrow(AuthenticationError);
    await expect(sbx.files.read("x", nobody)).rejects.toThrow(AuthenticationError);
    await expect(sbx.files.write("x", "y", nobody)).rejects.toThrow(AuthenticationError);
  });

  test("no user named: envd's default user; a guest without one (this host) acts as root", async () => {
    const hasUser = Bun.spawnSync(["getent", "passwd", "user"]).exitCode === 0;
    const info = await sbx.files.write(`${dir}/defaulted.txt`, "d");
    expect(info.path).toBe(`${dir}/defaulted.txt`);
    expect((await sbx.files.getInfo(`${dir}/defaulted.txt`)).owner).toBe(hasUser ? "user" : "root");
    expect(await sbx.files.read(`${dir}/defaulted.txt`)).toBe("d");
  });

  test("write many files at once: relative and absolute paths, new dirs", async () => {
    const files = [
      { path: "multi/one.txt", data: "one" },
      { path: `${dir}/abs/two.txt`, data: "two" },
      { path: "multi/three.bin", data: new Uint8Array([0, 1, 2, 255]).buffer },
      { path: 'multi/it\'s "q" $(touch pwned)\nx', data: "four" },
    ];
    const infos = await sbx.files.write(files, as);
    expect(infos.map((i) => [i.name, i.type, i.path])).toEqual([
      ["one.txt", "file", `${HOME}/multi/one.txt`],
      ["two.txt", "file", `${dir}/abs/two.txt`],
      ["three.bin", "file", `${HOME}/multi/three.bin`],
      ['it\'s "q" $(touch pwned)\nx', "file", `${HOME}/multi/it's "q" $(touch pwned)\nx`],
    ]);
    expect(readFileSync(join(HOME, 'multi/it\'s "q" $(touch pwned)\nx'), "utf8")).toBe("four");
    expect(readFileSync(`${dir}/abs/two.txt`, "utf8")).toBe("two");
    expect([...readFileSync(join(HOME, "multi/three.bin"))]).toEqual([0, 1, 2, 255]);
    expect(statSync(`${dir}/abs`).uid).toBe(uid);
    expect(await sbx.files.write([], as)).toEqual([]);
  });

  test("gzip both ways: a gzip upload, a gzip download, and a plain read of it", async () => {
    const text = "gzip me ".repeat(1000);
    const info = await sbx.files.write("gz.txt", text, { ...as, gzip: true });
    expect(info).toMatchObject({ name: "gz.txt", path: `${HOME}/gz.txt` });
    expect(readFileSync(join(HOME, "gz.txt"), "utf8")).toBe(text);
    expect(await sbx.files.read("gz.txt", { ...as, gzip: true })).toBe(text);
    expect(await sbx.files.read("gz.txt", as)).toBe(text);
    const many = await sbx.files.writeFiles(
      [
        { path: "gz1.txt", data: "1" },
        { path: "gz2.txt", data: "2" },
      ],
      { ...as, gzip: true },
    );
    expect(many.map((i) => i.name)).toEqual(["gz1.txt", "gz2.txt"]);
    expect(readFileSync(join(HOME, "gz2.txt"), "utf8")).toBe("2");
    // the raw endpoint: Content-Encoding: gzip on the response when asked for, exact bytes
    const base = `http://127.0.0.1:${server.port}/files?path=gz.txt&username=${U}`;
    const res = await fetch(base, { headers: { "accept-encoding": "gzip" }, decompress: false });
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(Bun.gunzipSync(new Uint8Array(await res.arrayBuffer())).length).toBe(text.length);
    const plain = await fetch(base, { headers: { "accept-encoding": "identity" } });
    expect(plain.headers.get("content-encoding")).toBe(null);
    expect(await plain.text()).toBe(text);
    expect(plain.headers.get("content-type")).toBe("application/octet-stream");
  });

  test("a 10 MB random file up and down byte-exact: multipart (bytes), octet-stream (stream), gzip", async () => {
    const data = randomBytes(10 * 1024 * 1024);
    const want = sha(data);
    await sbx.files.write("big.bin", data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer, as);
    expect(sha(readFileSync(join(HOME, "big.bin")))).toBe(want);
    expect(sha(await sbx.files.read("big.bin", { ...as, format: "bytes" }))).toBe(want);
    await sbx.files.write("big2.bin", new Blob([data]).stream(), as);
    expect(sha(readFileSync(join(HOME, "big2.bin")))).toBe(want);
    expect(sha(new Uint8Array(await new Response(await sbx.files.read("big2.bin", { ...as, format: "stream" })).arrayBuffer()))).toBe(want);
    await sbx.files.write("big3.bin", new Blob([data]), { ...as, gzip: true });
    expect(sha(await sbx.files.read("big3.bin", { ...as, format: "bytes", gzip: true }))).toBe(want);
    expect(readdirSync(HOME).filter((n) => n.startsWith(".banger-"))).toEqual([]);
  }, 120_000);

  test("an upload cut mid-stream leaves the file as it was and no temp behind", async () => {
    await sbx.files.write("cut/keep.txt", "the old bytes", as);
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        c.enqueue(new Uint8Array(256 * 1024).fill(120));
        await Bun.sleep(20);
        c.error(new Error("client went away"));
      },
    });
    const url = `http://127.0.0.1:${server.port}/files?path=cut/keep.txt&username=${U}`;
    await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body, duplex: "half" } as RequestInit).catch(() => null);
    await until("the cut upload's temp to go", () => readdirSync(join(HOME, "cut")).every((n) => !n.startsWith(".banger-write-")));
    expect(readdirSync(join(HOME, "cut"))).toEqual(["keep.txt"]);
    expect(readFileSync(join(HOME, "cut/keep.txt"), "utf8")).toBe("the old bytes");
  });

  test("hostile names go through every call as data: quotes, ;, $(), newlines, spaces", async () => {
    const names = ["it's", "a;b", "$(touch pwned)", "`touch pwned`", "new\nline", " spaced  out ", "trailing\n"];
    for (const n of names) {
      const p = `hostile/${n}`;
      const info = await sbx.files.write(p, `data of ${n}`, as);
      expect(info.path).toBe(`${HOME}/hostile/${n}`);
      expect(readFileSync(join(HOME, "hostile", n), "utf8")).toBe(`data of ${n}`);
      expect(await sbx.files.read(p, as)).toBe(`data of ${n}`);
      expect((await sbx.files.getInfo(p, as)).name).toBe(n);
    }
    expect((await sbx.files.list("hostile", as)).map((e) => e.name).sort()).toEqual([...names].sort());
    const moved = await sbx.files.rename("hostile/$(touch pwned)", "hostile/it's; moved\n", as);
    expect(moved.name).toBe("it's; moved\n");
    expect(await sbx.files.makeDir("hostile/dir $(id)'\n", as)).toBe(true);
    await sbx.files.remove("hostile/new\nline", as);
    expect(existsSync(join(HOME, "hostile", "new\nline"))).toBe(false);
    expect(existsSync(join(HOME, "hostile", "new"))).toBe(false);
    expect(existsSync("pwned") || existsSync(join(HOME, "pwned")) || existsSync(join(HOME, "hostile", "pwned"))).toBe(false);
    await expect(sbx.files.getInfo("a\0b", as)).rejects.toThrow(InvalidArgumentError);
  });

  test("watchDir: create, write, chmod, rename and remove events with names relative to the dir; stop ends the guest watcher", async () => {
    await sbx.files.makeDir("w", as);
    await sbx.files.write("w/exists.txt", "v1", as);
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir("w", (e) => void events.push(e), as);
    expect(watchers().length).toBe(1);
    const seen = (type: string, name: string) => events.some((e) => e.type === type && e.name === name);
    await sbx.files.write("w/exists.txt", "v2", as);
    await until("write of exists.txt", () => seen("write", "exists.txt"));
    expect(seen("create", "exists.txt")).toBe(false);
    await sbx.files.write("w/new.txt", "n", as);
    await until("create and write of new.txt", () => seen("create", "new.txt") && seen("write", "new.txt"));
    expect(events.filter((e) => e.name.includes(".banger-"))).toEqual([]);
    await sbx.files.rename("w/new.txt", "w/renamed.txt", as);
    await until("rename", () => seen("rename", "new.txt") && seen("create", "renamed.txt"));
    Bun.spawnSync(["chmod", "600", join(HOME, "w/renamed.txt")]);
    await until("chmod", () => seen("chmod", "renamed.txt"));
    await sbx.files.remove("w/renamed.txt", as);
    await until("remove", () => seen("remove", "renamed.txt"));
    await handle.stop();
    await until("the guest's inotifywait to end", () => watchers().length === 0);
  }, 60_000);

  test("watchDir recursive: a new nested dir and a file written in it, named from the watched dir", async () => {
    await sbx.files.makeDir("wr", as);
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir("wr", (e) => void events.push(e), { ...as, recursive: true });
    await sbx.files.makeDir("wr/nested", as);
    await until("nested dir created", () => events.some((e) => e.type === "create" && e.name === "nested"));
    await Bun.sleep(200); // inotifywait adds its watch on the new dir just after reporting it
    await sbx.files.write("wr/nested/f.txt", "x", as);
    await until("nested file written", () => events.some((e) => e.type === "write" && e.name === "nested/f.txt"));
    await handle.stop();
    await until("the guest's inotifywait to end", () => watchers().length === 0);
  }, 60_000);

  test("watchDir: a missing dir is FileNotFoundError, a file is a SandboxError; includeEntry gives the entry", async () => {
    await expect(sbx.files.watchDir("no-such-dir", () => {}, as)).rejects.toThrow(FileNotFoundError);
    await sbx.files.write("wfile.txt", "x", as);
    await expect(sbx.files.watchDir("wfile.txt", () => {}, as)).rejects.toThrow(SandboxError);
    await sbx.files.makeDir("we", as);
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir("we", (e) => void events.push(e), { ...as, includeEntry: true });
    await sbx.files.write("we/e.txt", "entry", as);
    await until("write with entry", () => events.some((e) => e.type === "write" && e.entry?.path === `${HOME}/we/e.txt`));
    expect(events.find((e) => e.type === "write")!.entry).toMatchObject({ name: "e.txt", type: "file", size: 5, owner: U });
    await handle.stop();
    await until("the guest's inotifywait to end", () => watchers().length === 0);
    expect(lstatSync(HOME).isDirectory()).toBe(true);
  }, 60_000);

  test("polling watchers (CreateWatcher, GetWatcherEvents, RemoveWatcher) over Connect: events kept until fetched, then gone with the watcher", async () => {
    const client = createClient(Filesystem, createConnectTransport({ baseUrl: `http://127.0.0.1:${server.port}`, useBinaryFormat: false }));
    const headers = { authorization: `Basic ${Buffer.from(`${U}:`).toString("base64")}` };
    await sbx.files.makeDir("pw", as);
    const { watcherId } = await client.createWatcher({ path: "pw", recursive: false }, { headers });
    expect(watcherId).toMatch(/^[0-9a-f-]{36}$/);
    await sbx.files.write("pw/one.txt", "1", as);
    await sbx.files.remove("pw/one.txt", as);
    const got: [string, EventType][] = [];
    const deadline = Date.now() + 15_000;
    while (!got.some(([n, t]) => n === "one.txt" && t === EventType.REMOVE)) {
      if (Date.now() > deadline) throw new Error(`no remove event; got ${JSON.stringify(got)}`);
      got.push(...(await client.getWatcherEvents({ watcherId }, { headers })).events.map((e): [string, EventType] => [e.name, e.type]));
      await Bun.sleep(50);
    }
    expect(got).toEqual([
      ["one.txt", EventType.CREATE],
      ["one.txt", EventType.WRITE],
      ["one.txt", EventType.REMOVE],
    ]);
    expect((await client.getWatcherEvents({ watcherId }, { headers })).events).toEqual([]);
    await client.removeWatcher({ watcherId }, { headers });
    await until("the guest's inotifywait to end", () => watchers().length === 0);
    await expect(client.getWatcherEvents({ watcherId }, { headers })).rejects.toThrow(/not found/);
  }, 60_000);
});
