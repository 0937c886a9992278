// Files in and out of a real QEMU guest (one VM for the file): a host tree
// with a binary file, modes, symlinks, an empty dir and hostile names
// round-trips host → guest → host through `vm cp` byte-exact; the tar-stream
// forms both ways; the `vm files` commands, watch seeing a created file,
// and the one-line errors (missing path, read-only fs, missing and stopped VM).
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BANGER, waitFor } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";
import { HOSTILE_NAMES, makeTree, treeSnapshot } from "../helpers/tree.ts";

e2e.describe("files in a real VM", () => {
  const h = e2eReady ? e2eHome("banger-e2e-files-") : (null as never);
  const host = mkdtempSync(join(tmpdir(), "banger-e2e-files-host-"));
  const bin = (args: string[], stdin?: Uint8Array) => {
    const p = Bun.spawnSync([BANGER, ...args], { env: h.env, stdin: stdin ?? "ignore" });
    return { code: p.exitCode ?? -1, stdout: p.stdout as Buffer, stderr: p.stderr.toString() };
  };
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "filebox", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
    rmSync(host, { recursive: true, force: true });
  });

  test("a tree round-trips host → guest → host byte-exact (modes, symlinks, empty dir, hostile names)", () => {
    expect(h.run(["vm", "create", "filebox", "--vmm", "qemu", "--start"]).code).toBe(0);
    const src = join(host, "tree");
    makeTree(src);
    let t = performance.now();
    const up = h.run(["vm", "cp", src, "filebox:/root/", "--json"]);
    const upMs = performance.now() - t;
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    // what the guest itself says about it
    const ls = h.run(["vm", "files", "filebox", "ls", "/root/tree", "--depth", "5", "--json"]).json();
    const byName = Object.fromEntries(ls.entries.map((e: { path: string }) => [e.path.slice("/root/tree/".length), e]));
    expect(byName["run.sh"]).toMatchObject({ type: "file", mode: 0o755 });
    expect(byName["sub/deeper/private"]).toMatchObject({ type: "file", mode: 0o600 });
    expect(byName["link"]).toMatchObject({ type: "symlink", target: "sub/deeper/private" });
    expect(byName["empty-dir"]).toMatchObject({ type: "dir" });
    expect(byName["blob.bin"]).toMatchObject({ size: 70_000 });
    for (const n of HOSTILE_NAMES) expect(byName[n]).toMatchObject({ type: "file" });
    expect(h.run(["vm", "exec", "filebox", "--", "test", "-e", "/root/pwned"]).code).toBe(1);
    const back = join(host, "back");
    t = performance.now();
    const down = h.run(["vm", "cp", "filebox:/root/tree", back]);
    const downMs = performance.now() - t;
    expect(down.stderr).toBe("");
    expect(down.code).toBe(0);
    expect(treeSnapshot(back)).toEqual(treeSnapshot(src));
    console.log(`vm cp of a ${Object.keys(treeSnapshot(src)).length}-entry tree into a TCG guest: ${(upMs / 1000).toFixed(2)} s, back out: ${(downMs / 1000).toFixed(2)} s`);
  }, 300_000);

  test("tar streams both ways: cp - VM:DIR < x.tar, cp VM:DIR - > x.tar", () => {
    const src = join(host, "fortar");
    mkdirSync(join(src, "e"), { recursive: true });
    writeFileSync(join(src, "a b"), "ab\n");
    symlinkSync("a b", join(src, "l"));
    const tar = Bun.spawnSync(["tar", "-C", src, "-cf", "-", "."]).stdout as Buffer;
    expect(h.run(["vm", "files", "filebox", "mkdir", "/root/fromtar"]).code).toBe(0);
    const up = bin(["vm", "cp", "-", "filebox:/root/fromtar", "--quiet"], tar);
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    const down = bin(["vm", "cp", "filebox:/root/fromtar", "-"]);
    expect(down.code).toBe(0);
    const out = join(host, "untarred");
    mkdirSync(out);
    expect(Bun.spawnSync(["tar", "-C", out, "-xf", "-"], { stdin: down.stdout }).exitCode).toBe(0);
    expect(treeSnapshot(join(out, "fromtar"))).toEqual(treeSnapshot(src));
  }, 120_000);

  test("vm files: write, stat, cat, ls, mkdir, rm; watch sees a created file", async () => {
    const data = Buffer.from([0, 1, 2, 255, 10, 39, 36, 40]);
    const w = bin(["vm", "files", "filebox", "write", "/root/api/it's $(x).bin", "--mode", "0600", "--json"], data);
    expect(w.stderr).toBe("");
    expect(JSON.parse(w.stdout.toString())).toMatchObject({ type: "file", size: data.length, mode: 0o600 });
    expect(Buffer.compare(bin(["vm", "files", "filebox", "cat", "/root/api/it's $(x).bin"]).stdout, data)).toBe(0);
    expect(h.run(["vm", "files", "filebox", "stat", "/root/api", "--json"]).json()).toMatchObject({ type: "dir", name: "api" });
    expect(h.run(["vm", "files", "filebox", "mkdir", "/root/api/a/b", "-p", "--json"]).json()).toMatchObject({ created: true });
    expect(h.run(["vm", "files", "filebox", "ls", "/root/api", "--json"]).json().entries.map((e: { name: string }) => e.name).sort()).toEqual(["a", "it's $(x).bin"]);
    expect(h.run(["vm", "files", "filebox", "rm", "/root/api/a"]).code).toBe(1);
    expect(h.run(["vm", "files", "filebox", "rm", "/root/api/a", "-r"]).code).toBe(0);

    const watch = Bun.spawn([BANGER, "vm", "files", "filebox", "watch", "/root/api", "--json", "--count", "1", "--interval", "500", "--timeout", "60"], { env: h.env, stdout: "pipe", stderr: "pipe" });
    const reader = watch.stdout.getReader();
    let buf = "";
    const next = async () => {
      while (!buf.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`watch ended: ${buf} ${await new Response(watch.stderr).text()}`);
        buf += new TextDecoder().decode(value);
      }
      const line = buf.slice(0, buf.indexOf("\n"));
      buf = buf.slice(buf.indexOf("\n") + 1);
      return JSON.parse(line);
    };
    expect(await next()).toMatchObject({ op: "ready", path: "/root/api" });
    expect(bin(["vm", "files", "filebox", "write", "/root/api/new file"], Buffer.from("hi")).code).toBe(0);
    expect(await next()).toMatchObject({ op: "create", type: "file", path: "/root/api/new file" });
    expect(await watch.exited).toBe(0);
    // the guest's polling loop ends with its channel (dropbear drops it; the next write fails), not at the next reboot
    const watchers = () => h.run(["vm", "exec", "filebox", "--", "pgrep", "-fc", "[e]mit ready d"]).stdout.trim();
    expect(await waitFor(() => watchers() === "0", 30_000, 1000)).toBe(true);
  }, 120_000);

  test("errors are one line: missing path, read-only fs, missing VM, stopped VM", () => {
    const oneLine = (r: { code: number; stderr: string }, code: number, text: RegExp) => {
      expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(text)]);
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(text);
    };
    oneLine(h.run(["vm", "files", "filebox", "cat", "/root/nope"]), 1, /no such file or directory/);
    oneLine(h.run(["vm", "cp", "filebox:/root/nope", host]), 1, /no such file or directory/);
    expect(h.run(["vm", "exec", "filebox", "--", "sh", "-c", "mkdir -p /mnt/ro && mount -t tmpfs -o ro tmpfs /mnt/ro"]).code).toBe(0);
    const denied = h.run(["vm", "files", "filebox", "write", "/mnt/ro/x", "--json"], {}, "x");
    oneLine(denied, 1, /permission denied/);
    expect(denied.json().error.code).toBe("E_PERMISSION");
    oneLine(h.run(["vm", "cp", join(host, "tree"), "filebox:/mnt/ro/", "--quiet"]), 1, /permission denied: filebox:\/mnt\/ro \(.*Read-only file system/);
    oneLine(h.run(["vm", "files", "nosuchvm", "ls", "/"]), 1, /nosuchvm/);
    expect(h.run(["vm", "stop", "filebox", "--force"]).code).toBe(0);
    oneLine(h.run(["vm", "files", "filebox", "ls", "/root"]), 1, /not running/);
    oneLine(h.run(["vm", "cp", join(host, "tree"), "filebox:/root/", "--quiet"]), 1, /not running/);
  }, 120_000);
});
