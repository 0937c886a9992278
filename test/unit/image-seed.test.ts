import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { utils as sshUtils } from "ssh2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConcatenatedCpioGz, writeCpio, writeCpioGz, readCpio } from "../../src/shared/cpio.ts";
import {
  buildSeedInitrd,
  generateVMKeys,
  validateAuthorizedKey,
  validateGuestPath,
  validateHostname,
} from "../../plugins/guest/seed.ts";
import { CLOCK_RESEED_ELF } from "../../plugins/guest/clock-reseed-elf.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { createFS } from "../../src/host/fs.ts";
import type { Exec, ExecOptions } from "../../src/host/types.ts";

const PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPs0T1Ho0qk0b8cQ1o0gFqSgI1J2kq6uZb0Q3y8o9Yc9 banger";

interface Call {
  cmd: string;
  args: string[];
  opts?: ExecOptions;
}
function recordingExec(calls: Call[], effect?: (c: Call) => Promise<string | void>): Exec {
  return {
    async run(cmd, args, opts) {
      const c = { cmd, args, opts };
      calls.push(c);
      const stdout = (await effect?.(c)) ?? "";
      return { stdout, stderr: "", exitCode: 0 };
    },
    async spawnDetached() {
      throw new Error("not used");
    },
    async which() {
      return null;
    },
  };
}

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "banger-seed-test-"));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const HOSTILE_NAMES = [
  "",
  "-leading-dash",
  "UPPER",
  "has space",
  "semi;colon",
  "$(reboot)",
  "`id`",
  "a\nb",
  "new\nline",
  "../etc",
  "a/b",
  "a".repeat(64),
  "dot.name",
  "quote'd",
  'dq"x',
  "tab\tx",
  "ünïcode",
];

describe("hostname validation", () => {
  test.each(HOSTILE_NAMES)("rejects %p", (name) => {
    expect(() => validateHostname(name)).toThrow(BangerError);
    try {
      validateHostname(name);
    } catch (e) {
      expect((e as BangerError).code).toBe("E_BAD_NAME");
    }
  });
  test.each(["a", "seedtest", "vm-1", "0abc", "a".repeat(63)])("accepts %p", (name) => {
    expect(validateHostname(name)).toBe(name);
  });
});

describe("authorized key / guest path validation", () => {
  test("one key line only", () => {
    expect(validateAuthorizedKey(`${PUB}\n`)).toBe(PUB);
    expect(() => validateAuthorizedKey(`${PUB}\nssh-ed25519 AAAA evil`)).toThrow(BangerError);
    expect(() => validateAuthorizedKey(`command="reboot" ${PUB}`)).toThrow(BangerError);
    expect(() => validateAuthorizedKey("not a key")).toThrow(BangerError);
    expect(() => validateAuthorizedKey("")).toThrow(BangerError);
  });
  test("guest paths are absolute and plain", () => {
    expect(validateGuestPath("/etc/banger/env")).toBe("/etc/banger/env");
    for (const bad of ["etc/x", "/etc/../root/.ssh/x", "/a//b", "/a b", "/a;b", "/", "/a/./b", "/x\n"]) {
      expect(() => validateGuestPath(bad)).toThrow(BangerError);
    }
  });
});

describe("cpio", () => {
  test("newc round trip, 4-byte aligned, ends with trailer", () => {
    const bytes = writeCpio([
      { path: "d", type: "dir", mode: 0o755 },
      { path: "d/f", type: "file", mode: 0o600, data: "hello" },
      { path: "d/l", type: "symlink", mode: 0o777, data: "f" },
    ]);
    expect(bytes.length % 4).toBe(0);
    expect(new TextDecoder().decode(bytes.subarray(0, 6))).toBe("070701");
    expect(new TextDecoder().decode(bytes)).toContain("TRAILER!!!");
    const e = readCpio(bytes);
    expect(e.map((x) => [x.path, x.mode.toString(8)])).toEqual([
      ["d", "40755"],
      ["d/f", "100600"],
      ["d/l", "120777"],
    ]);
    expect(new TextDecoder().decode(e[1]!.data)).toBe("hello");
  });
  test("refuses .. and empty segments", () => {
    expect(() => writeCpio([{ path: "../x", type: "file", mode: 0o644 }])).toThrow();
    expect(() => writeCpio([{ path: "a//b", type: "file", mode: 0o644 }])).toThrow();
  });
});

describe("buildSeedInitrd", () => {
  async function seed(extra: Partial<Parameters<typeof buildSeedInitrd>[0]> = {}) {
    const base = join(tmp, "base.img");
    const baseBytes = writeCpioGz([{ path: "init", type: "file", mode: 0o755, data: "#!/bin/sh\n" }]);
    await writeFile(base, baseBytes);
    const hostKey = join(tmp, "hk");
    await writeFile(hostKey, new Uint8Array([0, 1, 2, 3, 255]));
    const out = join(tmp, "seed.img");
    const calls: Call[] = [];
    await buildSeedInitrd({
      exec: recordingExec(calls),
      fs: createFS(),
      baseInitrd: base,
      out,
      hostname: "seedtest",
      authorizedKey: PUB,
      hostKeyPath: hostKey,
      ...extra,
    });
    return { out, baseBytes, calls };
  }

  test("out = base initrd bytes + a second gzip'd cpio with /banger-seed", async () => {
    const { out, baseBytes, calls } = await seed({ extraFiles: { "/etc/banger/env": "A=1\n" } });
    const bytes = new Uint8Array(await readFile(out));
    expect(Buffer.from(bytes.subarray(0, baseBytes.length)).equals(Buffer.from(baseBytes))).toBe(true);
    expect(calls).toHaveLength(0); // nothing mounted, no shell
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const archives = readConcatenatedCpioGz(bytes);
    expect(archives).toHaveLength(2);
    expect(archives[0]!.map((e) => e.path)).toEqual(["init"]);
    const s = archives[1]!;
    const byPath = new Map(s.map((e) => [e.path, e]));
    expect([...byPath.keys()]).toEqual([
      "banger-seed",
      "banger-seed/hostname",
      "banger-seed/authorized_keys",
      "banger-seed/dropbear_ed25519_host_key",
      "banger-seed/clock-reseed",
      "banger-seed/files",
      "banger-seed/files/etc",
      "banger-seed/files/etc/banger",
      "banger-seed/files/etc/banger/env",
    ]);
    const text = (p: string) => new TextDecoder().decode(byPath.get(p)!.data);
    expect(text("banger-seed/hostname")).toBe("seedtest\n");
    expect(text("banger-seed/authorized_keys")).toBe(`${PUB}\n`);
    expect([...byPath.get("banger-seed/dropbear_ed25519_host_key")!.data]).toEqual([0, 1, 2, 3, 255]);
    expect(byPath.get("banger-seed/dropbear_ed25519_host_key")!.mode & 0o777).toBe(0o600);
    expect(byPath.get("banger-seed")!.mode & 0o777).toBe(0o700);
    // ready to run in the guest and in its clones (no chmod at clone time)
    expect(new Uint8Array(byPath.get("banger-seed/clock-reseed")!.data)).toEqual(new Uint8Array(CLOCK_RESEED_ELF));
    expect(byPath.get("banger-seed/clock-reseed")!.mode & 0o777).toBe(0o700);
    expect(text("banger-seed/files/etc/banger/env")).toBe("A=1\n");
  });

  test.each(HOSTILE_NAMES)("hostile hostname %p writes nothing", async (hostname) => {
    await expect(seed({ hostname })).rejects.toThrow(BangerError);
    expect(await Bun.file(join(tmp, "seed.img")).exists()).toBe(false);
  });

  test("hostile extra file path is refused", async () => {
    await expect(seed({ extraFiles: { "/root/../etc/shadow": "x" } })).rejects.toThrow(BangerError);
  });

  test("missing host key is a clear error", async () => {
    await expect(seed({ hostKeyPath: join(tmp, "nope") })).rejects.toThrow(/host key/);
  });
});

describe("generateVMKeys", () => {
  const fs = createFS();
  const blob = (line: string) => Buffer.from(line.split(" ")[1]!, "base64");

  test("writes the client key (+ .pub) and the dropbear host key, 0600 in a 0700 dir, and returns their public lines", async () => {
    const dir = join(tmp, "keys dir; rm -rf ~ $(id)\n'x'");
    const k = await generateVMKeys({ fs, dir });
    expect(k.clientKeyPath).toBe(join(dir, "id_ed25519"));
    expect(k.hostKeyPath).toBe(join(dir, "host_ed25519_dropbear"));
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    for (const f of [k.clientKeyPath, `${k.clientKeyPath}.pub`, k.hostKeyPath]) expect((await stat(f)).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).sort()).toEqual(["host_ed25519_dropbear", "id_ed25519", "id_ed25519.pub"]); // no temp left behind
    expect(k.clientPublicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43}=?$/);
    expect(await readFile(`${k.clientKeyPath}.pub`, "utf8")).toBe(`${k.clientPublicKey} banger\n`);
    // the client key file holds the private half of the returned public line
    const parsed = sshUtils.parseKey(await readFile(k.clientKeyPath));
    if (parsed instanceof Error) throw parsed;
    const key = Array.isArray(parsed) ? parsed[0]! : parsed;
    expect(key.getPublicSSH().equals(blob(k.clientPublicKey))).toBe(true);
    // the pinned line is the host key file's public half (its last 32 bytes)
    const host = await readFile(k.hostKeyPath);
    expect(host.length).toBe(83);
    expect(blob(k.hostPublicKey).subarray(-32).equals(host.subarray(-32))).toBe(true);
    expect(validateAuthorizedKey(k.clientPublicKey)).toBe(k.clientPublicKey);
  });

  test("keys differ between calls, and client and host keys differ", async () => {
    const a = await generateVMKeys({ fs, dir: join(tmp, "a") });
    const b = await generateVMKeys({ fs, dir: join(tmp, "b") });
    expect(new Set([a.clientPublicKey, a.hostPublicKey, b.clientPublicKey, b.hostPublicKey]).size).toBe(4);
    expect((await readFile(a.hostKeyPath)).equals(await readFile(b.hostKeyPath))).toBe(false);
  });

  test.each(["id_ed25519", "id_ed25519.pub", "host_ed25519_dropbear"])("refuses to overwrite an existing %s, and changes nothing", async (name) => {
    const dir = join(tmp, "keys");
    await Bun.write(join(dir, name), "MINE");
    await expect(generateVMKeys({ fs, dir })).rejects.toThrow(/already exists/);
    expect(await readdir(dir)).toEqual([name]);
    expect(await readFile(join(dir, name), "utf8")).toBe("MINE");
  });
});
