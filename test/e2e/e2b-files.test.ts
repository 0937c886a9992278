// envd's filesystem against a real QEMU guest (one VM for the file): the
// `e2b` SDK in debug mode talks to a Bun.serve of createEnvd whose SSH pool
// dials the VM the way the daemon does (its VMDir keys, pinned host key), so
// the guest scripts run in the real image: its find, realpath, getent,
// gzip and SSH server. The image has only root: calls that name no user act
// as root there.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { FileNotFoundError, Sandbox, SandboxError, type FilesystemEvent } from "e2b";
import { createEnvd, type EnvdDeps } from "../../src/daemon/e2b/envd/index.ts";
import { registerFilesystem } from "../../src/daemon/e2b/envd/filesystem.ts";
import { filesEndpoint } from "../../src/daemon/e2b/envd/files.ts";
import { vmSSHPool, type SSHPool } from "../../src/daemon/ssh-pool.ts";
import { createHost } from "../../src/host/index.ts";
import { createSSHDialer } from "../../src/host/ssh.ts";
import type { VMRecord } from "../../src/shared/model.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

e2e.describe("e2b SDK files against envd on a real QEMU guest", () => {
  const h = e2eReady ? e2eHome("banger-e2e-e2bfs-") : (null as never);
  let pool: SSHPool;
  let server: ReturnType<typeof Bun.serve>;
  let sbx: Sandbox;
  const exec = (...cmd: string[]) => h.run(["vm", "exec", "e2bfs", "--", ...cmd]);

  beforeAll(async () => {
    const made = h.run(["vm", "create", "e2bfs", "--vmm", "qemu", "--start", "--json"]);
    if (made.code !== 0) throw new Error(`vm create: ${made.stderr}`);
    const vm = h.run(["vm", "show", "e2bfs", "--json"]).json() as VMRecord;
    const dialer = createSSHDialer();
    pool = vmSSHPool(dialer, createHost(dialer).fs);
    const envd = createEnvd({ ssh: pool } as unknown as EnvdDeps, [registerFilesystem], [filesEndpoint]);
    server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 120, fetch: (req) => envd.handle(req, { id: "e2bfs", vm, envVars: {} }) });
    sbx = await Sandbox.create({ debug: true, sandboxUrl: `http://127.0.0.1:${server.port}` });
  }, 300_000);

  afterAll(async () => {
    if (!h) return;
    await server?.stop(true);
    pool?.closeAll();
    h.run(["vm", "delete", "e2bfs", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });

  test("write, read, list, getInfo, makeDir, rename, remove with home-relative paths and hostile names", async () => {
    const info = await sbx.files.write("notes/it's; $(touch pwned)\n.txt", "hello guest");
    expect(info).toMatchObject({ name: "it's; $(touch pwned)\n.txt", type: "file", path: "/root/notes/it's; $(touch pwned)\n.txt" });
    expect(await sbx.files.read("notes/it's; $(touch pwned)\n.txt")).toBe("hello guest");
    const got = await sbx.files.getInfo("/root/notes/it's; $(touch pwned)\n.txt");
    expect(got).toMatchObject({ size: 11, mode: 0o644, permissions: "-rw-r--r--", owner: "root", group: "root" });
    expect(await sbx.files.makeDir("notes/sub/deeper")).toBe(true);
    expect(await sbx.files.makeDir("notes/sub/deeper")).toBe(false);
    expect((await sbx.files.list("notes", { depth: 3 })).map((e) => [e.name, e.type])).toEqual([
      ["it's; $(touch pwned)\n.txt", "file"],
      ["sub", "dir"],
      ["deeper", "dir"],
    ]);
    const moved = await sbx.files.rename("notes/it's; $(touch pwned)\n.txt", "notes/sub/moved.txt");
    expect(moved.path).toBe("/root/notes/sub/moved.txt");
    expect(await sbx.files.exists("notes/it's; $(touch pwned)\n.txt")).toBe(false);
    await sbx.files.remove("notes");
    expect(await sbx.files.exists("notes")).toBe(false);
    await expect(sbx.files.read("notes/sub/moved.txt")).rejects.toThrow(FileNotFoundError);
    expect(exec("sh", "-c", "ls /root/pwned /pwned 2>/dev/null").stdout).toBe("");
  }, 120_000);

  test("a 10 MiB random file up and down byte-exact (the stream and gzip forms: integration tests)", async () => {
    const data = randomBytes(10 * 1024 * 1024);
    const want = sha(data);
    let t = performance.now();
    await sbx.files.write("big.bin", new Blob([data]));
    const upMs = performance.now() - t;
    t = performance.now();
    expect(sha(await sbx.files.read("big.bin", { format: "bytes" }))).toBe(want);
    const downMs = performance.now() - t;
    expect(exec("sha256sum", "/root/big.bin").stdout.split(" ")[0]).toBe(want);
    console.log(`e2b SDK files.write / files.read of 10 MiB through envd into a TCG guest: ${(upMs / 1000).toFixed(2)} s up, ${(downMs / 1000).toFixed(2)} s down`);
  }, 300_000);

  test("watchDir: events when the guest has inotifywait, else a clear failed_precondition", async () => {
    await sbx.files.makeDir("watched");
    const hasInotify = exec("sh", "-c", "command -v inotifywait").code === 0;
    if (!hasInotify) {
      const err = await sbx.files.watchDir("watched", () => {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxError);
      expect(String(err)).toMatch(/failed_precondition.*inotify-tools/);
      return;
    }
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir("watched", (e) => void events.push(e));
    await sbx.files.write("watched/f.txt", "x");
    const end = Date.now() + 30_000;
    while (!events.some((e) => e.type === "write" && e.name === "f.txt")) {
      if (Date.now() > end) throw new Error(`no write event: ${JSON.stringify(events)}`);
      await Bun.sleep(100);
    }
    expect(events.some((e) => e.type === "create" && e.name === "f.txt")).toBe(true);
    await handle.stop();
  }, 120_000);
});
