/**
 * `e2b-files`: a 10 MB random file up and down through envd's /files (the
 * `e2b` SDK's files.write / files.read against createEnvd, as a sandbox's
 * envd URL gets them) against GuestFiles directly (what `vm cp` and `vm
 * files` stream through), interleaved in one run, each checked byte-exact.
 * The guest is a real OpenSSH sshd on 127.0.0.1 (this host plays the guest,
 * as in the integration tests): both sides cross the same pooled SSH
 * connection, so the difference is envd's HTTP + SDK layer. Needs root.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Sandbox } from "e2b";
import { startSSHD } from "../../test/helpers/sshd.ts";
import { createEnvd, type EnvdDeps } from "../../src/daemon/e2b/envd/index.ts";
import { registerFilesystem } from "../../src/daemon/e2b/envd/filesystem.ts";
import { filesEndpoint } from "../../src/daemon/e2b/envd/files.ts";
import { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { GuestFiles } from "../../src/files/guest.ts";
import { splitPath } from "../../src/files/paths.ts";
import { createSSHDialer } from "../../src/host/ssh.ts";
import type { VMRecord } from "../../src/shared/model.ts";
import type { Bench } from "./run.ts";
import { formatTable, ratio, summarize, summaryRow } from "./stats.ts";

/** Why the section cannot run here, or null. */
export function e2bFilesSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "needs root (a local sshd with root login plays the guest)";
  return null;
}

export async function e2bFilesSection(b: Bench, o: { n: number; megabytes: number }): Promise<void> {
  const sshd = await startSSHD();
  b.defer("stop the e2b-files bench sshd", () => sshd.stop());
  const dir = mkdtempSync(join(b.tmp, "e2b-files-"));
  b.defer("remove the e2b-files bench dir", () => rmSync(dir, { recursive: true, force: true }));
  const dialer = createSSHDialer();
  const pool = new SSHPool(() => dialer.dial({ host: sshd.host, port: sshd.port, user: sshd.user, privateKey: sshd.clientKey, hostKey: sshd.hostPublicKey }));
  b.defer("close the e2b-files bench ssh", () => pool.closeAll());
  const vm = { id: "vm-bench-e2b", name: "e2bbench", runtime: { state: "running" } } as unknown as VMRecord;
  const envd = createEnvd({ ssh: pool } as unknown as EnvdDeps, [registerFilesystem], [filesEndpoint]);
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 120, fetch: (req) => envd.handle(req, { id: "bench", vm, envVars: {} }) });
  b.defer("stop the e2b-files bench envd", () => server.stop(true));
  const sbx = await Sandbox.create({ debug: true, sandboxUrl: `http://127.0.0.1:${server.port}` });
  const files = new GuestFiles((v) => pool.get(v));

  const data = randomBytes(o.megabytes * 1024 * 1024);
  const want = createHash("sha256").update(data).digest("hex");
  const exact = (what: string, got: Uint8Array) => {
    if (createHash("sha256").update(got).digest("hex") !== want) throw new Error(`${what}: the bytes differ`);
  };
  const bytes = data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer;
  const root = { user: "root" };
  const up = join(dir, "up.bin");
  const down = join(dir, "down.bin");
  await files.write(vm, splitPath(down, "guest"), { chunks: (async function* () { yield data; })(), whole: () => true }, "");
  const timed = async (fn: () => Promise<void>) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  console.log(`  file: ${o.megabytes} MiB random; guest: OpenSSH sshd on 127.0.0.1 (this host plays the guest)`);

  const r = await b.interleaved(
    {
      envdUp: () =>
        timed(async () => {
          await sbx.files.write(up, bytes, root);
        }).then((ms) => (exact("envd upload", readFileSync(up)), ms)),
      envdUpStream: () =>
        timed(async () => {
          await sbx.files.write(up, new Blob([data]).stream(), root);
        }).then((ms) => (exact("envd stream upload", readFileSync(up)), ms)),
      directUp: () =>
        timed(async () => {
          let whole = false;
          const chunks = (async function* () {
            yield data;
            whole = true;
          })();
          await files.write(vm, splitPath(up, "guest"), { chunks, whole: () => whole }, "");
        }).then((ms) => (exact("GuestFiles upload", readFileSync(up)), ms)),
      envdDown: async () => {
        let got: Uint8Array = new Uint8Array();
        const ms = await timed(async () => {
          got = await sbx.files.read(down, { ...root, format: "bytes" });
        });
        exact("envd download", got);
        return ms;
      },
      directDown: async () => {
        let got: Uint8Array = new Uint8Array();
        const ms = await timed(async () => {
          got = new Uint8Array(await new Response(await files.read(vm, splitPath(down, "guest"))).arrayBuffer());
        });
        exact("GuestFiles download", got);
        return ms;
      },
    },
    { envdUp: o.n, envdUpStream: o.n, directUp: o.n, envdDown: o.n, directDown: o.n },
    "e2b-files",
  );
  const s = { envdUp: summarize(r.envdUp), envdUpStream: summarize(r.envdUpStream), directUp: summarize(r.directUp), envdDown: summarize(r.envdDown), directDown: summarize(r.directDown) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs GuestFiles"], [
    summaryRow("envd upload: files.write(bytes), multipart", s.envdUp, { baseline: s.directUp }),
    summaryRow("envd upload: files.write(stream), octet-stream", s.envdUpStream, { baseline: s.directUp }),
    summaryRow("GuestFiles.write (vm cp / vm files)", s.directUp, { baseline: s.directUp }),
    summaryRow("envd download: files.read(bytes)", s.envdDown, { baseline: s.directDown }),
    summaryRow("GuestFiles.read (vm cp / vm files)", s.directDown, { baseline: s.directDown }),
  ]));
  const via = `${o.megabytes} MiB, guest: sshd on 127.0.0.1`;
  b.row({ id: "E2B", section: "e2b-files", measure: `envd /files upload (SDK files.write, multipart) vs GuestFiles.write (${via})`, stats: s.envdUp, baseline: { name: "GuestFiles.write", stats: s.directUp } });
  b.row({ id: "E2B", section: "e2b-files", measure: `envd /files upload (SDK files.write, stream) vs GuestFiles.write (${via})`, stats: s.envdUpStream, baseline: { name: "GuestFiles.write", stats: s.directUp } });
  b.row({ id: "E2B", section: "e2b-files", measure: `envd /files download (SDK files.read) vs GuestFiles.read (${via})`, stats: s.envdDown, baseline: { name: "GuestFiles.read", stats: s.directDown } });
  b.note("e2b-files", "envd upload / GuestFiles.write, medians", ratio(s.envdUp.median, s.directUp.median));
  b.note("e2b-files", "envd download / GuestFiles.read, medians", ratio(s.envdDown.median, s.directDown.median));
}
