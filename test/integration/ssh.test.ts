import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSSHDialer } from "../../src/host/ssh.ts";
import type { GuestSSH } from "../../src/host/types.ts";
import { guestLogin, startSSHD, type TestSSHD } from "../helpers/sshd.ts";
import { IS_ROOT } from "../helpers/skip.ts";

let sshd: TestSSHD;
let conn: GuestSSH;
const dir = mkdtempSync(join(tmpdir(), "banger-ssh-it-"));

beforeAll(async () => {
  sshd = await startSSHD();
  if (IS_ROOT) conn = await createSSHDialer().dial({ host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientKey, hostKey: sshd.hostPublicKey });
});

afterAll(async () => {
  conn?.close();
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const dec = (chunks: Uint8Array[]) => Buffer.concat(chunks).toString("utf8");

guestLogin.describe("ssh2 GuestSSH against a real sshd", () => {
  test("exec streams stdout and stderr and returns the exit code", async () => {
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    const code = await conn.exec("echo out; echo err >&2; exit 3", { onStdout: (c) => out.push(c.slice()), onStderr: (c) => err.push(c.slice()) });
    expect(code).toBe(3);
    expect(dec(out)).toBe("out\n");
    expect(dec(err)).toBe("err\n");
  });

  test("signal exit maps to 128+n", async () => {
    expect(await conn.exec("kill -TERM $$")).toBe(143);
    expect(await conn.exec("kill -KILL $$")).toBe(137);
  });

  test("stdin: bytes, string and a streamed async iterable", async () => {
    const out: Uint8Array[] = [];
    await conn.exec("wc -c", { stdin: new Uint8Array(100_000).fill(97), onStdout: (c) => out.push(c.slice()) });
    expect(dec(out).trim()).toBe("100000");
    async function* gen() {
      for (let i = 0; i < 50; i++) yield new TextEncoder().encode(`line ${i}\n`);
    }
    const out2: Uint8Array[] = [];
    expect(await conn.exec("cat", { stdin: gen(), onStdout: (c) => out2.push(c.slice()) })).toBe(0);
    expect(dec(out2)).toBe(Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join(""));
  });

  test("runScript runs bash -s and collects output", async () => {
    const r = await conn.runScript(`X='a b'\necho "$X"\necho e >&2\nexit 4\n`);
    expect(r).toEqual({ exitCode: 4, stdout: "a b\n", stderr: "e\n" });
  });

  test("pty: the command sees a terminal", async () => {
    const out: Uint8Array[] = [];
    const code = await conn.exec("test -t 0 && stty size", { pty: { cols: 91, rows: 27 }, onStdout: (c) => out.push(c.slice()) });
    expect(code).toBe(0);
    expect(dec(out).trim()).toBe("27 91");
  });

  test("upload to a hostile path, with mode, binary-safe", async () => {
    const path = join(dir, `it's; $(touch PWNED) \`x\`\nnl`);
    const data = new Uint8Array(70_000).map((_, i) => i % 256);
    await conn.upload(path, data, 0o640);
    expect(new Uint8Array(readFileSync(path))).toEqual(data);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(existsSync(join(dir, "PWNED"))).toBe(false);
    await expect(conn.upload(join(dir, "no/such/dir/f"), "x")).rejects.toThrow(/upload .* failed/);
  });

  test("abort kills a running exec", async () => {
    const ac = new AbortController();
    const t0 = performance.now();
    const p = conn.exec("sleep 30", { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await expect(p).rejects.toThrow();
    expect(performance.now() - t0).toBeLessThan(5000);
    // The connection is still usable.
    expect(await conn.exec("true")).toBe(0);
  });

  test("concurrent execs on one connection", async () => {
    const codes = await Promise.all(Array.from({ length: 8 }, (_, i) => conn.exec(`exit ${i}`)));
    expect(codes).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test("pinned host key mismatch is rejected; closed flag set on close", async () => {
    const wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl wrong";
    const err = await createSSHDialer()
      .dial({ host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientKey, hostKey: wrong })
      .catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain("host key mismatch");
    const c = await createSSHDialer().dial({ host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientKey });
    expect(c.closed).toBe(false);
    c.close();
    expect(c.closed).toBe(true);
    await expect(c.exec("true")).rejects.toThrow(/closed/);
  });

  test("a refused connection fails with a clear error", async () => {
    const err = await createSSHDialer()
      .dial({ host: "127.0.0.1", port: 1, user: "root", privateKey: sshd.clientKey, readyTimeoutMs: 2000 })
      .catch((e) => e);
    expect(err.message).toContain("ssh connect to root@127.0.0.1:1 failed");
  });
});
