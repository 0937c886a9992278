import { afterEach, beforeEach, expect, test } from "bun:test";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Runs scripts/host-deps.sh against fake dpkg-query / id / apt-get on PATH:
// nothing is installed and no root is needed.
const SCRIPT = join(import.meta.dir, "../../scripts/host-deps.sh");

let bin: string;
beforeEach(async () => {
  bin = await mkdtemp(join(tmpdir(), "banger-hostdeps-"));
});
afterEach(async () => {
  await rm(bin, { recursive: true, force: true });
});

async function fake(name: string, body: string) {
  await writeFile(join(bin, name), `#!/bin/sh\n${body}\n`);
  await chmod(join(bin, name), 0o755);
}

async function run(opts: { missing: string[]; uid: number }) {
  // dpkg-query -W -f=... PKG: print "installed" unless PKG is in the missing list
  await fake("dpkg-query", `for a; do p="$a"; done\ncase " ${opts.missing.join(" ")} " in *" $p "*) exit 1 ;; esac\nprintf installed`);
  await fake("id", `echo ${opts.uid}`);
  await fake("apt-get", `echo "$@" >>"${join(bin, "apt.log")}"`);
  const p = Bun.spawn(["sh", SCRIPT], { env: { PATH: `${bin}:/usr/bin:/bin` }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const apt = await readFile(join(bin, "apt.log"), "utf8").catch(() => "");
  return { stdout, stderr, code, apt };
}

test("quiet and exit 0 when nothing is missing", async () => {
  const r = await run({ missing: [], uid: 1000 });
  expect(r).toEqual({ stdout: "", stderr: "", code: 0, apt: "" });
});

test("not root: prints the exact sudo line and exits 1", async () => {
  const r = await run({ missing: ["mmdebstrap", "zstd"], uid: 1000 });
  expect(r.code).toBe(1);
  expect(r.stdout.trim()).toBe("sudo apt-get install -y --no-install-recommends mmdebstrap zstd");
  expect(r.apt).toBe("");
});

test("root: installs only what is missing", async () => {
  const r = await run({ missing: ["busybox-static"], uid: 0 });
  expect(r.code).toBe(0);
  expect(r.apt.trim()).toBe("install -y --no-install-recommends busybox-static");
});
