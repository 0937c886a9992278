/**
 * `workspace`: prepare a ~10k-file / ~200 MB git repo through banger against
 * `tar c | ssh tar x` and `git bundle | ssh` + `git clone` into the same
 * guest, interleaved in one run, then a re-prepare after editing 10 files.
 * The guest is a real OpenSSH sshd on 127.0.0.1 (this host plays the guest,
 * as in the integration tests): booting a VM under TCG would measure the
 * emulated CPU, not the copy. Needs root (sshd with root login).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeGuestVM } from "../../test/helpers/fake-guest.ts";
import type { Bench } from "./run.ts";
import { fmtBytes, formatTable, ratio, summarize, summaryRow } from "./stats.ts";

export interface WorkspaceBenchOptions {
  n: number;
  files: number;
  megabytes: number;
}

/** Why the section cannot run here, or null. */
export function workspaceSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "needs root (a local sshd with root login plays the guest)";
  return null;
}

/** A committed repo of `files` files totalling about `megabytes` MB: many small sources and a few big binaries, random (incompressible) bytes. */
async function _makeRepo(b: Bench, dir: string, files: number, megabytes: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const big = Math.max(1, Math.floor(files / 500));
  const bigBytes = Math.floor((megabytes * 1e6 * 0.5) / big);
  const smallBytes = Math.floor((megabytes * 1e6 * 0.5) / (files - big));
  for (let i = 0; i < files - big; i++) {
    const d = join(dir, "src", `m${i % 100}`);
    if (i < 100) mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}.txt`), randomBytes(smallBytes).toString("base64").slice(0, smallBytes));
  }
  mkdirSync(join(dir, "assets"));
  for (let i = 0; i < big; i++) writeFileSync(join(dir, "assets", `blob${i}.bin`), randomBytes(bigBytes));
  const git = (...args: string[]) => b.must(["git", "-C", dir, "-c", "user.name=bench", "-c", "user.email=bench@example.com", ...args]);
  await git("init", "-q", "-b", "main");
  await git("add", ".");
  await git("commit", "-q", "-m", "bench repo");
}

export async function workspaceSection(b: Bench, o: WorkspaceBenchOptions): Promise<void> {
  const repo = join(b.tmp, "ws-repo");
  const t0 = performance.now();
  await _makeRepo(b, repo, o.files, o.megabytes);
  const du = (await b.must(["du", "-sb", "--exclude=.git", repo])).stdout.split("\t")[0];
  const duGit = (await b.must(["du", "-sb", join(repo, ".git")])).stdout.split("\t")[0];
  console.log(`  repo: ${o.files} files, work tree ${fmtBytes(Number(du))}, .git ${fmtBytes(Number(duGit))} (made in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  console.log("  guest: OpenSSH sshd on 127.0.0.1 (this host plays the guest; same disk, same CPUs)");

  const g = fakeGuestVM("banger-bench-ws-", "wsbench");
  b.defer("stop the workspace bench guest", () => g.cleanup());
  await g.start();
  const key = join(g.scratch, "client_key");
  writeFileSync(key, g.sshd.clientKey, { mode: 0o600 });
  const ssh = ["ssh", "-q", "-i", key, "-p", String(g.sshd.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1"].join(" ");
  const env = { ...g.h.env, ...g.env } as Record<string, string>;
  const banger = (...args: string[]) => b.time([join(b.repo, "dist/banger"), ...args], { env });
  const guest = (name: string) => join(g.guestRoot, name);
  const clean = (dir: string) => b.must(["rm", "-rf", dir]);
  let i = 0;

  const r = await b.interleaved(
    {
      banger: async () => {
        const dir = guest(`banger-${i++}`);
        const ms = await banger("workspace", "prepare", "wsbench", "--source", repo, "--guest-path", dir, "--json");
        await clean(dir);
        return ms;
      },
      tar: async () => {
        const dir = guest(`tar-${i++}`);
        const ms = await b.time(["bash", "-c", `tar -C "$1" -cf - . | ${ssh} "mkdir -p '$2' && tar -xf - -C '$2'"`, "bash", repo, dir]);
        await clean(dir);
        return ms;
      },
      bundle: async () => {
        const dir = guest(`bundle-${i++}`);
        const ms = await b.time(["bash", "-c", `git -C "$1" bundle create -q - --all | ${ssh} "t=\\$(mktemp) && cat > \\$t && git clone -q \\$t '$2' && rm -f \\$t"`, "bash", repo, dir]);
        await clean(dir);
        return ms;
      },
    },
    { banger: o.n, tar: o.n, bundle: o.n },
    "workspace",
  );

  // re-prepare after editing 10 files (unstaged edits travel as they are)
  const again = guest("again");
  const first: number[] = [];
  const re: number[] = [];
  type Ws = { mode: string; sent: number; bytes: number };
  const prepare = async (into: number[]): Promise<Ws> => {
    const r = await b.must([join(b.repo, "dist/banger"), "workspace", "prepare", "wsbench", "--source", repo, "--guest-path", again, "--json"], { env });
    into.push(r.ms);
    return JSON.parse(r.stdout) as Ws;
  };
  let firstWs: Ws | null = null;
  let reWs: Ws | null = null;
  for (let k = 0; k < o.n; k++) {
    firstWs = await prepare(first);
    for (let f = 0; f < 10; f++) writeFileSync(join(repo, "src", `m${f}`, `f${f}.txt`), `edit ${k} ${f}\n`);
    reWs = await prepare(re);
    await clean(again);
  }
  console.log(`  first prepare: ${firstWs!.mode} copy, ${fmtBytes(firstWs!.bytes)} streamed; re-prepare after 10 edits: ${reWs!.mode}, ${reWs!.sent} entries, ${fmtBytes(reWs!.bytes)} streamed`);
  await b.must(["git", "-C", repo, "checkout", "-q", "--", "."]);

  const s = { banger: summarize(r.banger), tar: summarize(r.tar), bundle: summarize(r.bundle), first: summarize(first), re: summarize(re) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs tar|ssh"], [
    summaryRow("banger workspace prepare (first)", s.banger, { baseline: s.tar }),
    summaryRow("tar c | ssh tar x (whole dir)", s.tar, { baseline: s.tar }),
    summaryRow("git bundle | ssh + git clone", s.bundle, { baseline: s.tar }),
    summaryRow("prepare into a fresh path", s.first, { baseline: s.tar }),
    summaryRow("re-prepare after editing 10 files", s.re, { baseline: s.tar }),
  ]));
  const via = "guest: sshd on 127.0.0.1";
  b.row({ id: "P4", section: "workspace", measure: `workspace prepare, ${o.files} files / ${o.megabytes} MB vs tar|ssh (${via})`, stats: s.banger, baseline: { name: "tar c | ssh tar x", stats: s.tar }, goal: { on: "ratio", max: 1, text: "≤ 1.0× tar|ssh" } });
  b.row({ id: "P4", section: "workspace", measure: `workspace prepare vs git bundle + clone (${via})`, stats: s.banger, baseline: { name: "git bundle | ssh + git clone", stats: s.bundle } });
  b.row({ id: "P4", section: "workspace", measure: `re-prepare after editing 10 files (${fmtBytes(reWs!.bytes)} sent) vs first prepare into the same path`, stats: s.re, baseline: { name: "first prepare", stats: s.first }, goal: { on: "ratio", max: 0.2, text: "≤ 0.2× first prepare" } });
  b.note("workspace", "prepare / tar|ssh, medians", ratio(s.banger.median, s.tar.median));
  b.note("workspace", "prepare / git bundle + clone, medians", ratio(s.banger.median, s.bundle.median));
  b.note("workspace", "re-prepare after 10 edits / first prepare, medians", ratio(s.re.median, s.first.median));
}
