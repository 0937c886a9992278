import { mkdtempSync, mkdirSync, existsSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import { IS_ROOT, needs } from "./skip.ts";
import type { VMRecord } from "../../src/shared/model.ts";

/** A real OpenSSH sshd on 127.0.0.1, root login by a generated key; this host plays the guest. */
export interface TestSSHD {
  host: string;
  port: number;
  user: string;
  /** OpenSSH-format private key of the authorized client. */
  clientKey: string;
  /** Host public key line, "ssh-ed25519 AAAA... comment". */
  hostPublicKey: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

function _run(cmd: string[]): void {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
}

/** A loopback TCP port free at the moment of asking. */
export async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** Until something on 127.0.0.1:`port` greets with an SSH banner, or `deadline` (Date.now()) passes. */
export async function waitBanner(port: number, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, "127.0.0.1");
      sock.once("data", (d) => {
        sock.destroy();
        resolve(d.toString().startsWith("SSH-"));
      });
      sock.once("error", () => resolve(false));
    });
    if (ok) return true;
    await Bun.sleep(30);
  }
  return false;
}

/** Start sshd -D on a free loopback port; call stop() in afterAll. */
export async function startSSHD(): Promise<TestSSHD> {
  // OpenSSH refuses to start without its privilege separation directory.
  if (!existsSync("/run/sshd")) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), "banger-sshd-"));
  _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger-test-host", "-f", join(dir, "host_ed25519")]);
  _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger-test-client", "-f", join(dir, "client_ed25519")]);
  // A clean HOME: bash run by sshd sources ~/.bashrc, and this host's may be slow (pyenv...).
  mkdirSync(join(dir, "home"), { mode: 0o700 });
  const pub = readFileSync(join(dir, "client_ed25519.pub"), "utf8").trim();
  writeFileSync(join(dir, "authorized_keys"), `environment="HOME=${join(dir, "home")}" ${pub}\n`, { mode: 0o600 });
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = [
      `ListenAddress 127.0.0.1`,
      `Port ${port}`,
      `HostKey ${join(dir, "host_ed25519")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      `UsePAM no`,
      `StrictModes no`,
      `PermitRootLogin prohibit-password`,
      `PasswordAuthentication no`,
      `KbdInteractiveAuthentication no`,
      `PubkeyAuthentication yes`,
      `PermitUserEnvironment HOME`,
      `MaxSessions 100`,
      `MaxStartups 100`,
      `LogLevel ERROR`,
      `UseDNS no`,
      `PrintMotd no`,
      `AcceptEnv LANG`,
      "",
    ].join("\n");
    writeFileSync(join(dir, "sshd_config"), config);
    const proc = Bun.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", join(dir, "sshd_config")], {
      stdout: "ignore",
      stderr: Bun.file(join(dir, "sshd.log")),
    });
    if (await waitBanner(port, Date.now() + 5000)) {
      return {
        host: "127.0.0.1",
        port,
        user: "root",
        clientKey: readFileSync(join(dir, "client_ed25519"), "utf8"),
        hostPublicKey: readFileSync(join(dir, "host_ed25519.pub"), "utf8").trim(),
        dir,
        pid: proc.pid,
        async stop() {
          proc.kill("SIGTERM");
          await proc.exited;
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    proc.kill("SIGKILL");
    await proc.exited;
  }
  throw new Error(`sshd did not start; log: ${existsSync(join(dir, "sshd.log")) ? readFileSync(join(dir, "sshd.log"), "utf8") : "(none)"}`);
}

/**
 * Tests that log in to the test sshd: banger logs into every guest as root,
 * and an sshd not run by root can only log in its own user.
 */
export const guestLogin = needs(IS_ROOT, "needs root: the guest here is this host's sshd, and banger logs into guests as root");

/** A running VM record whose guest is this test sshd (no VMM behind it): what the session engines dial. */
export function localGuestVM(sshd: TestSSHD): VMRecord {
  const now = new Date().toISOString();
  return {
    id: "vm-local",
    name: "local",
    spec: { image: "none", cpus: 1, memoryMiB: 128, diskMiB: 0, workDiskMiB: 0, driver: "none", storage: "copy" },
    runtime: {
      state: "running", guestIP: "127.0.0.1", apiSockPath: "", vsockPath: "", vsockCID: 0, logPath: "", metricsPath: "",
      dnsName: "", vmDir: "", systemOverlay: "", workDiskPath: "", lastError: "", sshHost: sshd.host, sshPort: sshd.port,
    },
    createdAt: now,
    updatedAt: now,
  };
}
