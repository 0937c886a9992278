import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { utils } from "ssh2";
import { writeCpioGz } from "../../src/shared/cpio.ts";
import { buildSeedInitrd, generateVMKeys } from "../../plugins/guest/seed.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";
import { needs } from "../helpers/skip.ts";

// Real dropbearkey / cpio; no VM, no root.
const tools = ["dropbearkey", "cpio"].filter((t) => !Bun.which(t, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }));

needs(tools.length === 0, `needs ${tools.join(", ")} (scripts/host-deps.sh installs them)`).describe("VM keys and seed initrd (real tools)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "banger-seed-it-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("generateVMKeys makes an ssh2-parsable client key and a pinned dropbear host key", async () => {
    const exec = createExec();
    const k = await generateVMKeys({ fs: createFS(), dir });
    const parsed = utils.parseKey(await readFile(k.clientKeyPath));
    expect(parsed instanceof Error).toBe(false);
    expect(k.clientPublicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/]+=*$/);
    expect(k.hostPublicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/]+=*$/);
    expect((await stat(k.hostKeyPath)).mode & 0o077).toBe(0);
    // the pinned line is the one dropbear will present
    const y = await exec.run("dropbearkey", ["-y", "-f", k.hostKeyPath]);
    expect(y.stdout).toContain(k.hostPublicKey);

    const base = join(dir, "base.img");
    await Bun.write(base, writeCpioGz([{ path: "init", type: "file", mode: 0o755, data: "#!/bin/sh\n" }]));
    const out = join(dir, "seed.img");
    await buildSeedInitrd({ exec, fs: createFS(), baseInitrd: base, out, hostname: "seedtest", authorizedKey: k.clientPublicKey, hostKeyPath: k.hostKeyPath });
    // Standard tools read both parts: the base bytes unchanged, then a gzip'd newc archive.
    const baseLen = (await stat(base)).size;
    const list = await exec.run("sh", ["-c", 'tail -c +"$2" "$1" | zcat | cpio -itv --quiet', "sh", out, String(baseLen + 1)]);
    const lines = list.stdout.split("\n").filter(Boolean);
    expect(lines.map((l) => l.split(/\s+/).pop())).toEqual([
      "banger-seed",
      "banger-seed/hostname",
      "banger-seed/authorized_keys",
      "banger-seed/dropbear_ed25519_host_key",
      "banger-seed/clock-reseed",
    ]);
    expect(lines.every((l) => /\broot\s+root\b/.test(l))).toBe(true);
    const first = await exec.run("sh", ["-c", 'head -c "$2" "$1" | zcat | cpio -it --quiet', "sh", out, String(baseLen)]);
    expect(first.stdout.trim()).toBe("init");
  });
});
