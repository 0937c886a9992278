// `vm cp` and `vm files` through dist/banger and its daemon, against a real
// sshd on 127.0.0.1 standing in for the guest: trees with binary files, exec
// bits, symlinks, empty dirs and hostile names both ways, docker cp's rules
// (into / as / replace / DIR/. / trailing slash), tar streams on
// stdin/stdout, the files commands and their one-line errors, and the
// daemon's memory while 200 MB go through each way.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BANGER, killAndWait } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { guestLogin } from "../helpers/sshd.ts";
import { HOSTILE_NAMES, makeTree, treeSnapshot as snapshot } from "../helpers/tree.ts";

const g = fakeGuestVM("banger-files-");
const { h, env, scratch, guestRoot, run } = g;

const HOSTILE = HOSTILE_NAMES;

/** Run the CLI with binary stdin and binary stdout. */
function runBin(args: string[], stdin?: Uint8Array) {
  const p = Bun.spawnSync([BANGER, ...args], { env: { ...h.env, ...env }, stdin: stdin ?? "ignore" });
  return { code: p.exitCode ?? -1, stdout: p.stdout as Buffer, stderr: p.stderr.toString() };
}

let host: string;
let guest: string;

beforeAll(async () => {
  await g.start();
  host = join(scratch, "host");
  guest = join(guestRoot, "g");
  mkdirSync(host);
  mkdirSync(guest);
}, 60_000);

afterAll(async () => {
  const ro = join(guestRoot, "ro");
  if (existsSync(ro)) Bun.spawnSync(["umount", ro]);
  await g.cleanup();
});

guestLogin.describe("vm cp over a real sshd", () => {
  test("a tree round-trips host → guest → host byte-exact: modes, symlinks, empty dirs, hostile names", () => {
    const src = join(host, "tree");
    makeTree(src);
    const up = run(["vm", "cp", src, `box:${guest}/`, "--json"]);
    const errors = (r: { stderr: string }) => r.stderr.split("\n").filter((l) => l && !l.startsWith("["));
    expect([up.code, errors(up)]).toEqual([0, []]);
    expect(up.json()).toMatchObject({ source: src, destination: `box:${guest}/` });
    expect(snapshot(join(guest, "tree"))).toEqual(snapshot(src));
    const back = join(host, "back");
    const down = run(["vm", "cp", `box:${guest}/tree`, back]);
    expect(down.stderr).toBe("");
    expect(down.code).toBe(0);
    expect(snapshot(back)).toEqual(snapshot(src));
    expect(existsSync(join(guestRoot, "pwned"))).toBe(false);
    expect(existsSync("pwned")).toBe(false);
    // nothing half-made left next to the destinations
    expect(readdirSync(guest).filter((e) => e.startsWith(".banger-"))).toEqual([]);
    expect(readdirSync(host).filter((e) => e.startsWith(".banger-"))).toEqual([]);
  });

  test("docker cp rules into the guest: into a dir, as a new name, replacing a file, DIR/., trailing slash", () => {
    const d = join(guest, "rules");
    mkdirSync(d);
    const f = join(host, "one.txt");
    writeFileSync(f, "one\n");
    const dir = join(host, "adir");
    mkdirSync(join(dir, "inner"), { recursive: true });
    writeFileSync(join(dir, "inner", "x"), "x\n");
    // file → existing dir: into it
    const into = run(["vm", "cp", f, `box:${d}`]);
    expect([into.code, into.stderr]).toEqual([0, ""]);
    expect(readFileSync(join(d, "one.txt"), "utf8")).toBe("one\n");
    // file → missing path: as that name
    expect(run(["vm", "cp", f, `box:${d}/renamed`]).code).toBe(0);
    expect(readFileSync(join(d, "renamed"), "utf8")).toBe("one\n");
    // file → existing file: replaced
    writeFileSync(f, "two\n");
    expect(run(["vm", "cp", f, `box:${d}/renamed`]).code).toBe(0);
    expect(readFileSync(join(d, "renamed"), "utf8")).toBe("two\n");
    // file → missing path with a trailing slash: that dir must exist
    const slash = run(["vm", "cp", f, `box:${d}/nodir/`]);
    expect(slash.code).toBe(1);
    expect(slash.stderr.trim().split("\n")).toHaveLength(1);
    expect(slash.stderr).toContain("no such file or directory");
    expect(existsSync(join(d, "nodir"))).toBe(false);
    // dir → missing path: becomes it
    expect(run(["vm", "cp", dir, `box:${d}/newdir`]).code).toBe(0);
    expect(readFileSync(join(d, "newdir", "inner", "x"), "utf8")).toBe("x\n");
    // dir → existing dir: into it
    expect(run(["vm", "cp", dir, `box:${d}/newdir`]).code).toBe(0);
    expect(readFileSync(join(d, "newdir", "adir", "inner", "x"), "utf8")).toBe("x\n");
    // DIR/. → existing dir: what is under DIR
    mkdirSync(join(d, "contents"));
    expect(run(["vm", "cp", `${dir}/.`, `box:${d}/contents`]).code).toBe(0);
    expect(readdirSync(join(d, "contents"))).toEqual(["inner"]);
    // dir → existing file: refused, file untouched
    const onto = run(["vm", "cp", dir, `box:${d}/renamed`]);
    expect(onto.code).toBe(1);
    expect(onto.stderr).toContain("cannot copy a directory onto a file");
    expect(readFileSync(join(d, "renamed"), "utf8")).toBe("two\n");
    // a file written with a trailing slash: not a directory
    const notDir = run(["vm", "cp", `${f}/`, `box:${d}`]);
    expect(notDir.code).toBe(1);
    expect(notDir.stderr).toContain("not a directory");
  });

  test("docker cp rules out of the guest: into, as, replace, DIR/.", () => {
    const d = join(guest, "out");
    mkdirSync(join(d, "tree", "t"), { recursive: true });
    writeFileSync(join(d, "tree", "t", "f"), "f\n");
    writeFileSync(join(d, "file"), "file\n");
    const dest = join(host, "outs");
    mkdirSync(dest);
    expect(run(["vm", "cp", `box:${d}/file`, dest]).code).toBe(0);
    expect(readFileSync(join(dest, "file"), "utf8")).toBe("file\n");
    expect(run(["vm", "cp", `box:${d}/file`, join(dest, "as")]).code).toBe(0);
    writeFileSync(join(d, "file"), "changed\n");
    expect(run(["vm", "cp", `box:${d}/file`, join(dest, "as")]).code).toBe(0);
    expect(readFileSync(join(dest, "as"), "utf8")).toBe("changed\n");
    mkdirSync(join(dest, "c"));
    expect(run(["vm", "cp", `box:${d}/tree/.`, join(dest, "c")]).code).toBe(0);
    expect(readFileSync(join(dest, "c", "t", "f"), "utf8")).toBe("f\n");
    const missing = run(["vm", "cp", `box:${d}/nope`, dest, "--json"]);
    expect(missing.code).toBe(1);
    expect(missing.json().error.code).toBe("E_NOT_FOUND");
  });

  test("a dir onto a file is refused before the dir is streamed, either way", () => {
    // 8 GiB of holes: streaming it (tar reads holes as zeros) would take far longer than the limit below
    const big = (dir: string) => {
      mkdirSync(dir, { recursive: true });
      const fd = openSync(join(dir, "holes"), "w");
      writeSync(fd, "end", 8 * 1024 ** 3);
      closeSync(fd);
    };
    const gdir = join(guest, "bigdir");
    big(gdir);
    writeFileSync(join(host, "a-file"), "keep\n");
    let t = performance.now();
    const out = run(["vm", "cp", `box:${gdir}`, join(host, "a-file"), "--json"]);
    expect([out.code, out.json().error.code, out.json().error.message]).toEqual([1, "E_CONFLICT", `copy: cannot copy a directory onto a file: ${join(host, "a-file")}`]);
    expect(performance.now() - t).toBeLessThan(5000);
    expect(readFileSync(join(host, "a-file"), "utf8")).toBe("keep\n");
    // a file source into a missing dir written with a slash: refused the same way
    writeFileSync(join(guest, "small"), "s\n");
    const slash = run(["vm", "cp", `box:${guest}/small`, join(host, "no-such-dir") + "/"]);
    expect([slash.code, slash.stderr.trim()]).toEqual([1, `banger: copy: no such file or directory: ${join(host, "no-such-dir")}`]);

    const hdir = join(host, "bigdir");
    big(hdir);
    writeFileSync(join(guest, "g-file"), "keep\n");
    t = performance.now();
    const up = run(["vm", "cp", hdir, `box:${guest}/g-file`, "--json"]);
    expect([up.code, up.json().error.code, up.json().error.message]).toEqual([1, "E_CONFLICT", `copy: cannot copy a directory onto a file: box:${guest}/g-file`]);
    expect(performance.now() - t).toBeLessThan(5000);
    expect(readFileSync(join(guest, "g-file"), "utf8")).toBe("keep\n");
    rmSync(gdir, { recursive: true });
    rmSync(hdir, { recursive: true });
    expect(readdirSync(guest).filter((e) => e.startsWith(".banger-"))).toEqual([]);
    expect(readdirSync(host).filter((e) => e.startsWith(".banger-"))).toEqual([]);
  });

  test("out of the guest: no device node and no set-id bit reaches the host; the rest does, and the user is told", () => {
    const evil = join(guest, "evil");
    mkdirSync(evil);
    writeFileSync(join(evil, "suid"), "#!/bin/sh\n");
    Bun.spawnSync(["chmod", "4755", join(evil, "suid")]);
    expect(Bun.spawnSync(["mknod", "-m", "666", join(evil, "blk"), "b", "7", "0"]).exitCode).toBe(0);
    const r = run(["vm", "cp", `box:${evil}`, join(host, "evil-out")]);
    expect([r.code, r.stderr]).toEqual([0, "banger: left out a device node (not made on the host): evil/blk (block device)\n"]);
    expect(Bun.spawnSync(["stat", "-c", "%a", join(host, "evil-out", "suid")]).stdout.toString()).toBe("755\n");
    expect(existsSync(join(host, "evil-out", "blk"))).toBe(false);
    const j = run(["vm", "cp", `box:${evil}`, join(host, "evil-json"), "--json"]);
    expect([j.code, j.json().skipped]).toEqual([0, ["evil/blk (block device)"]]);
    rmSync(evil, { recursive: true });
  });

  test("a device, FIFO or socket is never replaced; a symlink is written through and stays; a dir never replaces a file of its name", () => {
    const d = join(guest, "specials");
    mkdirSync(d);
    writeFileSync(join(d, "src"), "new\n");
    const fifo = (p: string) => expect(Bun.spawnSync(["mkfifo", p]).exitCode).toBe(0);
    const isFifo = (p: string) => Bun.spawnSync(["test", "-p", p]).exitCode === 0;
    // out of the guest, onto a host FIFO: refused, the FIFO stays
    fifo(join(host, "a-fifo"));
    const out = run(["vm", "cp", `box:${d}/src`, join(host, "a-fifo")]);
    expect([out.code, out.stderr]).toEqual([1, `banger: copy: not a regular file (a device, FIFO or socket is never replaced): ${join(host, "a-fifo")}\n`]);
    expect(isFifo(join(host, "a-fifo"))).toBe(true);
    // into the guest: a FIFO as DST, or as DST/NAME in a dir; vm files write the same
    fifo(join(d, "g-fifo"));
    writeFileSync(join(host, "g-fifo"), "x\n");
    for (const args of [["vm", "cp", join(host, "g-fifo"), `box:${d}/g-fifo`], ["vm", "cp", join(host, "g-fifo"), `box:${d}`], ["vm", "files", "box", "write", `${d}/g-fifo`]]) {
      const r = run(args, "bytes\n");
      expect([args, r.code, r.stderr]).toEqual([args, 1, expect.stringContaining("not a regular file")]);
      expect(isFifo(join(d, "g-fifo"))).toBe(true);
    }
    // a symlink DST: its target gets the bytes, the link stays (both ways, and vm files write)
    writeFileSync(join(d, "target"), "old\n");
    symlinkSync("target", join(d, "link"));
    expect(run(["vm", "cp", join(host, "g-fifo"), `box:${d}/link`]).code).toBe(0);
    expect([readFileSync(join(d, "target"), "utf8"), Bun.spawnSync(["readlink", join(d, "link")]).stdout.toString()]).toEqual(["x\n", "target\n"]);
    expect(run(["vm", "files", "box", "write", `${d}/link`], "written\n").code).toBe(0);
    expect([readFileSync(join(d, "target"), "utf8"), Bun.spawnSync(["readlink", join(d, "link")]).stdout.toString()]).toEqual(["written\n", "target\n"]);
    writeFileSync(join(host, "h-target"), "old\n");
    symlinkSync("h-target", join(host, "h-link"));
    expect(run(["vm", "cp", `box:${d}/src`, join(host, "h-link")]).code).toBe(0);
    expect([readFileSync(join(host, "h-target"), "utf8"), Bun.spawnSync(["readlink", join(host, "h-link")]).stdout.toString()]).toEqual(["new\n", "h-target\n"]);
    // a dir into a dir that holds a file of its name: refused, the file stays (both ways)
    mkdirSync(join(d, "wt"));
    writeFileSync(join(host, "wt"), "important\n");
    const down = run(["vm", "cp", `box:${d}/wt`, host + "/"]);
    expect([down.code, down.stderr]).toEqual([1, `banger: copy: cannot copy a directory onto a file: ${host}\n`]);
    expect(readFileSync(join(host, "wt"), "utf8")).toBe("important\n");
    rmSync(join(host, "wt"));
    mkdirSync(join(host, "wt"));
    writeFileSync(join(d, "holder-wt"), "");
    mkdirSync(join(d, "holder"));
    writeFileSync(join(d, "holder", "wt"), "important\n");
    const up = run(["vm", "cp", join(host, "wt"), `box:${d}/holder`]);
    expect([up.code, up.stderr]).toEqual([1, `banger: copy: cannot copy a directory onto a file: box:${d}/holder\n`]);
    expect(readFileSync(join(d, "holder", "wt"), "utf8")).toBe("important\n");
    expect(readdirSync(d).filter((e) => e.startsWith(".banger-"))).toEqual([]);
    expect(readdirSync(host).filter((e) => e.startsWith(".banger-"))).toEqual([]);
  });

  test("tar streams: cp - VM:DIR < x.tar and cp VM:DIR - > x.tar", () => {
    const src = join(host, "fortar");
    mkdirSync(join(src, "e"), { recursive: true });
    writeFileSync(join(src, "a b"), "ab\n");
    symlinkSync("a b", join(src, "l"));
    const tar = Bun.spawnSync(["tar", "-C", src, "-cf", "-", "."]).stdout as Buffer;
    const into = join(guest, "fromtar");
    mkdirSync(into);
    const up = runBin(["vm", "cp", "-", `box:${into}`], tar);
    const errors = (r: { stderr: string }) => r.stderr.split("\n").filter((l) => l && !l.startsWith("["));
    expect([up.code, errors(up)]).toEqual([0, []]);
    expect(snapshot(into)).toEqual(snapshot(src));
    const down = runBin(["vm", "cp", `box:${into}`, "-"]);
    expect(down.code).toBe(0);
    const list = Bun.spawnSync(["tar", "-tvf", "-"], { stdin: down.stdout }).stdout.toString();
    expect(list).toContain("fromtar/a b");
    expect(list).toContain("fromtar/l -> a b");
    expect(list).toContain("fromtar/e/");
    // a tar into something that is not a dir
    expect(runBin(["vm", "cp", "-", `box:${into}/a b`], tar).stderr).toContain("not a directory");
    const garbage = runBin(["vm", "cp", "-", `box:${into}`], new TextEncoder().encode("hello, not a tar\n".repeat(40)));
    expect([garbage.code, garbage.stderr]).toEqual([1, `banger: copy failed (exit 2): box:${into}: tar: This does not look like a tar archive\n`]);
  });

  test("`--` ends the options: a host file named like one (`-dash`) is copied, in as out", () => {
    const d = join(guest, "dashes");
    mkdirSync(d);
    writeFileSync(join(host, "-dash"), "dash\n");
    const inward = Bun.spawnSync([BANGER, "vm", "cp", "--", "-dash", `box:${d}/`], { cwd: host, env: { ...h.env, ...env } });
    expect([inward.exitCode, inward.stderr.toString()]).toEqual([0, ""]);
    expect(readFileSync(join(d, "-dash"), "utf8")).toBe("dash\n");
    const outward = Bun.spawnSync([BANGER, "vm", "cp", "--", `box:${d}/-dash`, "-back"], { cwd: host, env: { ...h.env, ...env } });
    expect([outward.exitCode, outward.stderr.toString()]).toEqual([0, ""]);
    expect(readFileSync(join(host, "-back"), "utf8")).toBe("dash\n");
    // without it, the name is an unknown option (exit 2), as in any CLI
    const bare = Bun.spawnSync([BANGER, "vm", "cp", "-dash", `box:${d}/`], { cwd: host, env: { ...h.env, ...env } });
    expect(bare.exitCode).toBe(2);
  });

  test("bad input is one line each: both or neither side a VM, relative guest path, missing VM", () => {
    const both = run(["vm", "cp", "box:/a", "box:/b"]);
    expect(both.code).toBe(2);
    expect(run(["vm", "cp", "a", "b"]).code).toBe(2);
    const rel = run(["vm", "cp", join(host, "one.txt"), "box:relative/x"]);
    expect(rel.code).toBe(2);
    expect(rel.stderr).toContain("absolute");
    const novm = run(["vm", "cp", join(host, "one.txt"), "nosuchvm:/tmp/x"]);
    expect(novm.code).toBe(1);
    expect(novm.stderr.trim().split("\n")).toHaveLength(1);
    expect(novm.stderr).toContain("nosuchvm");
  });
});

guestLogin.describe("vm files over a real sshd", () => {
  test("write, stat, cat, ls, mkdir, rm with hostile names", () => {
    const dir = join(guest, "api");
    for (const name of HOSTILE) {
      const p = join(dir, "sub", name);
      const w = runBin(["vm", "files", "box", "write", p, "--mode", "0640", "--json"], Buffer.from(`data ${name}`));
      expect(w.stderr).toBe("");
      expect(w.code).toBe(0);
      expect(JSON.parse(w.stdout.toString())).toMatchObject({ path: p, type: "file", mode: 0o640, size: `data ${name}`.length });
      expect(readFileSync(p, "utf8")).toBe(`data ${name}`);
      expect(runBin(["vm", "files", "box", "cat", p]).stdout.toString()).toBe(`data ${name}`);
      expect(run(["vm", "files", "box", "stat", p, "--json"]).json()).toMatchObject({ name, type: "file" });
    }
    expect(existsSync(join(guestRoot, "pwned"))).toBe(false);
    // modes as chmod reads them: 0 is 000, 5 is 005; 8 and 10000 are no modes
    for (const [m, want] of [["0", 0], ["5", 0o5], ["000", 0]] as const) {
      const w = runBin(["vm", "files", "box", "write", join(dir, `mode-${m}`), "--mode", m, "--json"], Buffer.from("x"));
      expect([w.code, JSON.parse(w.stdout.toString()).mode]).toEqual([0, want]);
    }
    for (const m of ["8", "10000"]) expect(runBin(["vm", "files", "box", "write", join(dir, "bad-mode"), "--mode", m]).code).toBe(2);
    const ls = run(["vm", "files", "box", "ls", join(dir, "sub"), "--json"]).json();
    expect(ls.entries.map((e: { name: string }) => e.name).sort()).toEqual([...HOSTILE].sort());
    // mkdir: parents, and an existing dir is not an error
    const mk = run(["vm", "files", "box", "mkdir", join(dir, "a", "b"), "-p", "--json"]);
    expect(mk.json()).toMatchObject({ type: "dir", created: true });
    expect(run(["vm", "files", "box", "mkdir", join(dir, "a", "b"), "--json"]).json()).toMatchObject({ created: false });
    // rm: a non-empty dir needs -r
    const notEmpty = run(["vm", "files", "box", "rm", join(dir, "sub")]);
    expect(notEmpty.code).toBe(1);
    expect(notEmpty.stderr).toContain("not empty");
    expect(run(["vm", "files", "box", "rm", join(dir, "sub"), "-r"]).code).toBe(0);
    expect(existsSync(join(dir, "sub"))).toBe(false);
  });

  test("binary bytes are exact through write and cat; a symlink stats as a symlink", () => {
    const bytes = new Uint8Array(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >> 8)) & 0xff;
    const p = join(guest, "bin.dat");
    expect(runBin(["vm", "files", "box", "write", p], bytes).code).toBe(0);
    expect(Buffer.compare(runBin(["vm", "files", "box", "cat", p]).stdout, Buffer.from(bytes))).toBe(0);
    symlinkSync("bin.dat", join(guest, "bin.link"));
    expect(run(["vm", "files", "box", "stat", join(guest, "bin.link"), "--json"]).json()).toMatchObject({ type: "symlink", target: "bin.dat" });
  });

  test("errors: not found, is a directory, permission denied (a read-only mount), relative path, unknown action", () => {
    const nf = run(["vm", "files", "box", "cat", join(guest, "missing"), "--json"]);
    expect(nf.code).toBe(1);
    expect(nf.json().error.code).toBe("E_NOT_FOUND");
    expect(nf.stderr.trim().split("\n")).toHaveLength(1);
    const isDir = run(["vm", "files", "box", "cat", guest]);
    expect(isDir.code).toBe(1);
    expect(isDir.stderr).toContain("is a directory");
    const ro = join(guestRoot, "ro");
    mkdirSync(ro);
    writeFileSync(join(ro, "f"), "f");
    expect(Bun.spawnSync(["mount", "--bind", ro, ro]).exitCode).toBe(0);
    expect(Bun.spawnSync(["mount", "-o", "remount,ro,bind", ro]).exitCode).toBe(0);
    const denied = run(["vm", "files", "box", "write", join(ro, "g"), "--json"], "x");
    expect(denied.code).toBe(1);
    expect(denied.json().error.code).toBe("E_PERMISSION");
    expect(denied.stderr.trim().split("\n")).toHaveLength(1);
    const deniedRm = run(["vm", "files", "box", "rm", join(ro, "f")]);
    expect(deniedRm.code).toBe(1);
    expect(deniedRm.stderr).toContain("permission denied");
    const rel = run(["vm", "files", "box", "stat", "etc/passwd"]);
    expect(rel.code).toBe(2);
    expect(run(["vm", "files", "box", "frob", "/tmp"]).code).toBe(2);
  });

  test("watch --timeout takes a duration as every duration option does (1500ms); a bad one is exit 2", async () => {
    const dir = join(guest, "watched-quiet");
    mkdirSync(dir);
    const t0 = performance.now();
    const r = run(["vm", "files", "box", "watch", dir, "--timeout", "1500ms", "--interval", "200"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(performance.now() - t0).toBeGreaterThan(1400);
    expect(performance.now() - t0).toBeLessThan(15_000);
    const bad = run(["vm", "files", "box", "watch", dir, "--timeout", "soon"]);
    expect([bad.code, bad.stderr]).toEqual([2, 'banger: --timeout must be a duration like 500ms, 2s, 5m or 1h, got "soon"\n']);
  });

  test("watch reports a created, changed and removed file", async () => {
    const dir = join(guest, "watched");
    mkdirSync(dir);
    const p = Bun.spawn([BANGER, "vm", "files", "box", "watch", dir, "--json", "--count", "3", "--interval", "200", "--timeout", "30"], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    const lines: string[] = [];
    const reader = p.stdout.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const next = async (): Promise<Record<string, string>> => {
      while (!buf.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`watch ended early: ${lines.join(" | ")} ${await new Response(p.stderr).text()}`);
        buf += dec.decode(value);
      }
      const line = buf.slice(0, buf.indexOf("\n"));
      buf = buf.slice(buf.indexOf("\n") + 1);
      lines.push(line);
      return JSON.parse(line);
    };
    expect(await next()).toMatchObject({ op: "ready", path: dir });
    const name = "new\nfile $(x)";
    writeFileSync(join(dir, name), "1");
    expect(await next()).toMatchObject({ op: "create", type: "file", path: join(dir, name) });
    await Bun.sleep(50);
    writeFileSync(join(dir, name), "22");
    expect(await next()).toMatchObject({ op: "write", path: join(dir, name) });
    rmSync(join(dir, name));
    // --count 3 ends it after the third change
    expect(await next()).toMatchObject({ op: "remove", path: join(dir, name) });
    expect(await p.exited).toBe(0);
    // and the guest's polling loop with it (its stdin ends)
    const loops = () => Bun.spawnSync(["pgrep", "-fc", `[e]mit ready d.*`]).stdout.toString().trim();
    for (let i = 0; i < 50 && loops() !== "0"; i++) await Bun.sleep(100);
    expect(loops()).toBe("0");
  }, 60_000);
});

guestLogin.describe("the files routes straight at the socket", () => {
  const call = (method: string, path: string, body?: string) =>
    fetch(`http://banger${path}`, { method, unix: join(h.home, "bangerd.sock"), body } as RequestInit).then(async (r) => ({ status: r.status, text: await r.text() }));

  test("hostile queries are one-line 4xx answers; the daemon keeps its pid", async () => {
    const pid = h.daemonPid();
    const bad = [
      ["GET", "/v1/vms/box/files/stat?path=%2Ftmp%2Fa%00b"],
      ["GET", "/v1/vms/box/files/stat"],
      ["GET", "/v1/vms/box/files/list?path=relative"],
      ["GET", "/v1/vms/box/files/list?path=%2Ftmp&depth=-1"],
      ["POST", `/v1/vms/box/files/write?path=${encodeURIComponent(join(guest, "m"))}&mode=${encodeURIComponent("644; rm -rf /")}`],
      ["DELETE", "/v1/vms/box/files?path=%2F&recursive=1"],
      ["POST", `/v1/vms/box/files/archive?path=${encodeURIComponent(guest)}&name=${encodeURIComponent("../etc")}`],
      ["GET", "/v1/vms/nosuchvm/files/read?path=%2Fetc%2Fhostname"],
    ] as const;
    for (const [method, path] of bad) {
      const r = await call(method, path, method === "POST" ? "x" : undefined);
      expect(r.status >= 400 && r.status < 500 ? "4xx" : `${r.status} for ${method} ${path}: ${r.text}`).toBe("4xx");
      const err = JSON.parse(r.text).error;
      expect(err.message.split("\n")).toHaveLength(1);
    }
    expect(existsSync(join(guest, "m"))).toBe(false);
    expect(h.daemonPid()).toBe(pid);
  });
});

guestLogin.describe("streaming keeps the daemon's memory bounded", () => {
  const rssOf = (pid: number, key: "VmRSS" | "VmHWM") => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

  test("200 MB host → guest → host: byte-exact, daemon peak RSS grows by little", () => {
    const SIZE = 200 * 1024 * 1024;
    const big = join(host, "big.bin");
    const fd = openSync(big, "w");
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < SIZE / chunk.length; i++) {
      chunk.fill(i & 0xff);
      chunk.writeUInt32LE(i, 0);
      writeSync(fd, chunk);
    }
    closeSync(fd);
    const pid = h.daemonPid();
    const before = rssOf(pid, "VmRSS");
    const hwmBefore = rssOf(pid, "VmHWM");
    let t = performance.now();
    const up = run(["vm", "cp", big, `box:${guest}/big.bin`]);
    const upMs = performance.now() - t;
    const errors = (r: { stderr: string }) => r.stderr.split("\n").filter((l) => l && !l.startsWith("["));
    expect([up.code, errors(up)]).toEqual([0, []]);
    const hwmUp = rssOf(pid, "VmHWM");
    t = performance.now();
    const down = run(["vm", "cp", `box:${guest}/big.bin`, join(host, "big.back")]);
    const downMs = performance.now() - t;
    expect([down.code, errors(down)]).toEqual([0, []]);
    const hwmDown = rssOf(pid, "VmHWM");
    const hash = (p: string) => Bun.spawnSync(["sha256sum", p]).stdout.toString().split(" ")[0];
    expect(hash(join(guest, "big.bin"))).toBe(hash(big));
    expect(hash(join(host, "big.back"))).toBe(hash(big));
    console.log(
      `files: 200 MiB cp in ${(upMs / 1000).toFixed(1)} s, out ${(downMs / 1000).toFixed(1)} s; daemon RSS before ${before.toFixed(1)} MiB (peak so far ${hwmBefore.toFixed(1)}), peak after in ${hwmUp.toFixed(1)}, after out ${hwmDown.toFixed(1)} MiB`,
    );
    // a buffered copy would add 200 MiB; streaming adds SSH windows and a few queued chunks
    expect(hwmDown - Math.max(before, hwmBefore)).toBeLessThan(64);
    rmSync(big);
    rmSync(join(host, "big.back"));
    rmSync(join(guest, "big.bin"));
  }, 180_000);
});

guestLogin.describe("a cut stream never leaves a half-copied destination", () => {
  const SIZE = 200 * 1024 * 1024;
  let big: string;
  const staged = (dir: string) => readdirSync(dir).filter((e) => e.startsWith(".banger-"));
  const settle = async (check: () => boolean) => {
    for (let i = 0; i < 100 && !check(); i++) await Bun.sleep(100);
    return check();
  };
  beforeAll(() => {
    big = join(host, "cut.bin");
    const fd = openSync(big, "w");
    const chunk = Buffer.alloc(1 << 20, 1);
    for (let i = 0; i < SIZE / chunk.length; i++) writeSync(fd, chunk);
    closeSync(fd);
  });
  afterAll(() => rmSync(big, { force: true }));

  test("the CLI killed mid-upload: the guest destination never appears, its stage is removed", async () => {
    const dir = join(guest, "cut-in");
    mkdirSync(dir);
    const p = Bun.spawn([BANGER, "vm", "cp", big, `box:${dir}/big.bin`], { env: { ...h.env, ...env }, stdout: "ignore", stderr: "ignore" });
    expect(await settle(() => staged(dir).length > 0)).toBe(true);
    await Bun.sleep(300);
    p.kill("SIGKILL");
    await p.exited;
    expect(await settle(() => staged(dir).length === 0)).toBe(true);
    expect(existsSync(join(dir, "big.bin"))).toBe(false);
  }, 60_000);

  test("a write cut mid-stream leaves the old file as it was", async () => {
    const target = join(guest, "keep.txt");
    writeFileSync(target, "old\n");
    const p = Bun.spawn([BANGER, "vm", "files", "box", "write", target], { env: { ...h.env, ...env }, stdin: "pipe", stdout: "ignore", stderr: "ignore" });
    p.stdin.write(Buffer.alloc(4 << 20, 65));
    await p.stdin.flush();
    expect(await settle(() => staged(guest).length > 0)).toBe(true);
    p.kill("SIGKILL");
    await p.exited;
    expect(await settle(() => staged(guest).length === 0)).toBe(true);
    expect(readFileSync(target, "utf8")).toBe("old\n");
  }, 60_000);

  test("the daemon killed mid-download: one line, exit 1, nothing at the host destination", async () => {
    const put = run(["vm", "cp", big, `box:${guest}/down.bin`]);
    expect([put.code, put.stderr.split("\n").filter((l) => l && !l.startsWith("["))]).toEqual([0, []]);
    const dest = join(host, "down-cut");
    mkdirSync(dest);
    const p = Bun.spawn([BANGER, "vm", "cp", `box:${guest}/down.bin`, join(dest, "got.bin")], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    expect(await settle(() => staged(dest).length > 0)).toBe(true);
    killAndWait(h.daemonPid());
    expect(await p.exited).toBe(1);
    const err = (await new Response(p.stderr).text()).trim().split("\n").filter((l) => !l.startsWith("["));
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/cut/);
    expect(readdirSync(dest)).toEqual([]);
    rmSync(join(guest, "down.bin"));
  }, 60_000);
});

guestLogin.describe("a stopped VM", () => {
  test("files and cp say the VM is not running, one line, exit 1", () => {
    expect(run(["vm", "stop", "box", "--force"]).code).toBe(0);
    const r = run(["vm", "files", "box", "ls", "/tmp"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/not running/);
    const c = run(["vm", "cp", "box:/tmp/x", join(host, "x")]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/not running/);
  });
});
