import { afterAll, beforeAll, expect } from "bun:test";
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateVMKeys } from "../../plugins/guest/seed.ts";
import { createFS } from "../../src/host/fs.ts";
import { createSSHDialer } from "../../src/host/ssh.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";
import { freePort, startSSHD, waitBanner, type TestSSHD } from "../helpers/sshd.ts";

// The keys banger makes in-process, read by the programs at either end:
// ssh-keygen and OpenSSH's sshd for the client key, dropbearkey and dropbear
// (the guest's server) for the host key. No VM: this host plays the guest.
const PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
const TOOLS = ["ssh-keygen", "dropbearkey", "dropbear", "sshd", "unshare", "mount"];
const missingTool = TOOLS.find((t) => !Bun.which(t, { PATH }));
const why = firstMissing(
  [!missingTool, `needs ${missingTool} (scripts/host-deps.sh installs it)`],
  [IS_ROOT, "needs root: banger logs into guests as root, and dropbear runs in a private mount namespace"],
);
const it = needs(why === "", why);

type Keys = Awaited<ReturnType<typeof generateVMKeys>>;

function run(cmd: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, PATH } });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** "type base64" of the first key line in a tool's output (the comment dropped). */
function keyLine(text: string): string {
  const m = /^(ssh-ed25519 [A-Za-z0-9+/]+=*)/m.exec(text);
  if (!m) throw new Error(`no ssh-ed25519 line in: ${text}`);
  return m[1]!;
}

it.describe("generated VM keys with the real ssh tools and servers", () => {
  let dir: string;
  let keys: Keys;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "banger-vm-keys-"));
    keys = await generateVMKeys({ fs: createFS(), dir: join(dir, "keys") });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.test("ssh-keygen -y reads the client key and prints the returned public line", () => {
    const r = run(["ssh-keygen", "-y", "-f", keys.clientKeyPath]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(keyLine(r.stdout)).toBe(keys.clientPublicKey);
  });

  it.test("dropbearkey -y reads the host key and prints the pinned public line", () => {
    const r = run(["dropbearkey", "-y", "-f", keys.hostKeyPath]);
    expect(r.code).toBe(0);
    expect(keyLine(r.stdout)).toBe(keys.hostPublicKey);
  });

  it.test("OpenSSH's sshd lets the client key log in (banger's dialer, sshd's host key pinned)", async () => {
    const sshd: TestSSHD = await startSSHD();
    try {
      // the helper's authorized_keys pins HOME to a clean dir; ours gets the same
      await appendFile(join(sshd.dir, "authorized_keys"), `environment="HOME=${join(sshd.dir, "home")}" ${keys.clientPublicKey}\n`);
      const guest = await createSSHDialer().dial({ host: sshd.host, port: sshd.port, user: "root", privateKey: await readFile(keys.clientKeyPath, "utf8"), hostKey: sshd.hostPublicKey });
      try {
        const r = await guest.runScript("echo logged-in-as-$(id -u)");
        expect(r.stdout.trim()).toBe("logged-in-as-0");
      } finally {
        guest.close();
      }
    } finally {
      await sshd.stop();
    }
  });

  it.test("dropbear serves the host key: the handshake presents the pinned key, and the client key logs in", async () => {
    // dropbear takes root's keys from /root/.ssh: a private mount namespace
    // binds a temp dir over /root for dropbear alone, the host's stays untouched
    const home = join(dir, "root-home");
    await mkdir(join(home, ".ssh"), { recursive: true, mode: 0o700 });
    await writeFile(join(home, ".ssh", "authorized_keys"), `${keys.clientPublicKey}\n`, { mode: 0o600 });
    const dial = (hostKey: string) => createSSHDialer().dial({ host: "127.0.0.1", port, user: "root", privateKey: clientKey, hostKey, readyTimeoutMs: 20_000 });
    const clientKey = await readFile(keys.clientKeyPath, "utf8");
    let port = 0;
    let server: Bun.Subprocess | null = null;
    for (let attempt = 0; attempt < 5 && !server; attempt++) {
      port = await freePort();
      // unshare without --fork execs sh, which execs dropbear: server.pid is dropbear's
      const p = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$1" /root && exec dropbear -F -E -s -r "$2" -p "127.0.0.1:$3" -P "$4"', "sh", home, keys.hostKeyPath, String(port), join(dir, "dropbear.pid")], {
        stdout: "ignore",
        stderr: Bun.file(join(dir, `dropbear-${attempt}.log`)),
        env: { ...process.env, PATH },
      });
      if (await waitBanner(port, Date.now() + 10_000)) server = p;
      else {
        p.kill("SIGKILL");
        await p.exited;
      }
    }
    if (!server) throw new Error(`dropbear did not start: ${await readFile(join(dir, "dropbear-4.log"), "utf8").catch(() => "(no log)")}`);
    try {
      const guest = await dial(keys.hostPublicKey);
      try {
        const r = await guest.runScript("echo logged-in-as-$(id -u)");
        expect(r.stdout.trim()).toBe("logged-in-as-0");
      } finally {
        guest.close();
      }
      // pinned to another key (the client's), the same server is refused: the check above was the host key's
      await expect(dial(keys.clientPublicKey)).rejects.toThrow(/host key mismatch/);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  }, 60_000);

  it.test("dropbear -R as banger's init starts it reads the host key at each connection: a clone's key written over the file is what the next connection meets, with no new dropbear; an open connection goes on", async () => {
    // as in the guest: /etc/dropbear/dropbear_ed25519_host_key links to the seed's key, dropbear loads none at start.
    // A private mount namespace lays a writable /etc over the host's (overlay) and binds a temp dir over /root.
    const home = join(dir, "root-home-r");
    await mkdir(join(home, ".ssh"), { recursive: true, mode: 0o700 });
    const clone = await generateVMKeys({ fs: createFS(), dir: join(dir, "clone-keys") });
    await writeFile(join(home, ".ssh", "authorized_keys"), `${keys.clientPublicKey}\n`, { mode: 0o600 });
    const seedKey = join(dir, "seed-host-key");
    await writeFile(seedKey, await readFile(keys.hostKeyPath), { mode: 0o600 });
    for (const d of ["etc-upper", "etc-work"]) await mkdir(join(dir, d), { recursive: true });
    const clientKey = await readFile(keys.clientKeyPath, "utf8");
    let port = 0;
    const dial = (hostKey: string) => createSSHDialer().dial({ host: "127.0.0.1", port, user: "root", privateKey: clientKey, hostKey, readyTimeoutMs: 20_000 });
    const script = [
      'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc-upper,workdir=$1/etc-work" /etc',
      'mkdir -p /etc/dropbear && ln -sfn "$2" /etc/dropbear/dropbear_ed25519_host_key',
      'mount --bind "$3" /root',
      'exec dropbear -F -E -s -R -r /run/banger-no-preloaded-host-key -p "127.0.0.1:$4" -P "$1/dropbear-r.pid"',
    ].join(" && ");
    let server: Bun.Subprocess | null = null;
    for (let attempt = 0; attempt < 5 && !server; attempt++) {
      port = await freePort();
      const p = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", dir, seedKey, home, String(port)], {
        stdout: "ignore",
        stderr: Bun.file(join(dir, `dropbear-r-${attempt}.log`)),
        env: { ...process.env, PATH },
      });
      if (await waitBanner(port, Date.now() + 10_000)) server = p;
      else {
        p.kill("SIGKILL");
        await p.exited;
      }
    }
    if (!server) throw new Error(`dropbear -R did not start: ${await readFile(join(dir, "dropbear-r-4.log"), "utf8").catch(() => "(no log)")}`);
    try {
      const first = await dial(keys.hostPublicKey);
      try {
        // what clone-identity.sh does: the clone's key over the file, in place
        await writeFile(seedKey, await readFile(clone.hostKeyPath));
        await expect(dial(keys.hostPublicKey)).rejects.toThrow(/host key mismatch/);
        const second = await dial(clone.hostPublicKey);
        try {
          expect((await second.runScript("echo second")).stdout.trim()).toBe("second");
        } finally {
          second.close();
        }
        // the connection made before goes on with the key it was made with, and it is the same dropbear
        expect((await first.runScript("echo first")).stdout.trim()).toBe("first");
        expect(server.exitCode).toBeNull();
      } finally {
        first.close();
      }
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  }, 60_000);
});
