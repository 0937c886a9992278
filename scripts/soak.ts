/**
 * `npm run test:soak`: real VMs for BANGER_SOAK_MINUTES (default 30; `--quick`
 * = 3): a random walk of create, run, session start/send, workspace prepare,
 * snapshot, rollback, fork, pause/resume, stop and delete over a few VM
 * slots, with random daemon kill -9s (between operations and in the middle
 * of them) and random tool failures (the daemon
 * restarted with a PATH whose first dir holds a stand-in for one program that
 * exits 1; the daemon inherits the env of the CLI that auto-starts it).
 * Operations that overlap a kill or an injected failure may fail: counted,
 * and the walk goes on from whatever state `vm list` then shows. At the end
 * everything is stopped and deleted and leaks are counted: processes (qemu,
 * daemon, stand-ins) under the home, taps, loops backed by its files, temps
 * (as the startup sweep knows them), VM dirs and rows, snapshot dirs without a
 * ready row, sessions stuck or guest uploads left; after every kill between
 * ops, every running VM must answer `exec`, and a rollback must give back what
 * its snapshot's guest had written. Prints a summary; exits 1 on any leak or
 * unexpected failure. Seed: BANGER_SOAK_SEED (printed at start). Needs root and the test
 * image (BANGER_TEST_IMAGE_DIR, else built by scripts/test-image.sh).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { anyThreadRunning } from "../src/host/procs.ts";
import { parseTempName } from "../src/shared/temps.ts";

const ROOT = resolve(import.meta.dir, "..");
const BANGER = join(ROOT, "dist/banger");
const QUICK = process.argv.includes("--quick");
const MINUTES = Number(process.env.BANGER_SOAK_MINUTES ?? (QUICK ? 3 : 30));
const SEED = Number(process.env.BANGER_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const SLOTS = ["soak-a", "soak-b"];
const OP_TIMEOUT_MS = 240_000;
/** Programs the daemon runs by name, each replaced in turn by a stand-in that fails. */
const TOOLS = ["git", "tar", "truncate", "cp", "mkfs.ext4", "qemu-system-x86_64"];

// mulberry32: small, seedable, good enough to pick operations
let _s = SEED >>> 0;
function rand(): number {
  _s = (_s + 0x6d2b79f5) >>> 0;
  let t = _s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chance = (p: number) => rand() < p;

function imageDir(): string {
  const given = process.env.BANGER_TEST_IMAGE_DIR;
  if (given && existsSync(join(given, "rootfs.ext4"))) return given;
  const r = Bun.spawnSync(["bash", join(ROOT, "scripts/test-image.sh")], { stdout: "pipe", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error("scripts/test-image.sh failed");
  return r.stdout.toString().trim();
}

// ---------------------------------------------------------------- the world

const home = mkdtempSync(join(tmpdir(), "banger-soak-"));
const scratch = mkdtempSync(join(tmpdir(), "banger-soak-scratch-"));
const stubDir = join(scratch, "stubs");
const repo = join(scratch, "repo");
// no automatic warm-start templates: a kill -9 in the middle of one leaves its warm-… VM, which the leak count would report as the walk's
const baseEnv: Record<string, string> = { ...(process.env as Record<string, string>), BANGER_HOME: home, NO_COLOR: "1", BANGER_TAP_NETNS_ONLY: "1", BANGER_AUTO_WARM: "0" };
delete baseEnv.BANGER_PLUGINS;
delete baseEnv.BANGER_FAULT;
let env = baseEnv;
/** The tool whose stand-in the running daemon's PATH starts with, and how many more ops it stays. */
let injected: { tool: string; left: number } | null = null;

const stats = {
  ops: new Map<string, number>(),
  expectedFailures: new Map<string, number>(),
  unexpected: [] as string[],
  leaks: [] as string[],
  kills: 0,
  killsMidOp: 0,
  injections: new Map<string, number>(),
  rss: { start: 0, end: 0, peak: 0, endDaemonOps: 0 },
  /** The daemon that served the most ops: how its RSS moved from its first to its last op. */
  longest: { pid: 0, ops: 0, first: 0, last: 0 },
  snapshotsAtEnd: 0,
};
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function daemonPid(): number {
  try {
    return Number(readFileSync(join(home, "daemon.pid"), "utf8").trim()) || 0;
  } catch {
    return 0;
  }
}

const alive = (pid: number): boolean => anyThreadRunning(pid);

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

let daemonSeen = 0;
let daemonOps = 0;
let daemonFirst = 0;
function sampleRss(): void {
  const pid = daemonPid();
  if (!pid || !alive(pid)) return;
  const r = rssKiB(pid);
  if (pid !== daemonSeen) {
    daemonSeen = pid;
    daemonOps = 0;
    daemonFirst = r;
  }
  daemonOps++;
  stats.rss.peak = Math.max(stats.rss.peak, r);
  if (daemonOps >= stats.longest.ops) stats.longest = { pid, ops: daemonOps, first: daemonFirst, last: r };
}

async function cli(args: string[], input?: string, timeoutMs = OP_TIMEOUT_MS): Promise<Result> {
  const p = Bun.spawn([BANGER, ...args], { env, stdin: input !== undefined ? new TextEncoder().encode(input) : "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  clearTimeout(timer);
  return { code: p.exitCode ?? -1, stdout, stderr: p.signalCode ? `killed by ${p.signalCode} after ${timeoutMs} ms (hang?)\n${stderr}` : stderr };
}

async function killDaemon(why: string): Promise<void> {
  const pid = daemonPid();
  if (!pid || !alive(pid)) return;
  process.kill(pid, "SIGKILL");
  for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(20);
  stats.kills++;
  log(`kill -9 daemon ${pid} (${why})`);
}

const started = Date.now();
function log(msg: string): void {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[${t}s] ${msg}\n`);
}

interface VMView {
  name: string;
  alive: boolean;
  pid: number;
  runtime: { state: string; vmDir: string };
}

async function listVMs(): Promise<VMView[] | null> {
  const r = await cli(["vm", "list", "--json"], undefined, 60_000);
  if (r.code !== 0) return null;
  return JSON.parse(r.stdout) as VMView[];
}

/**
 * One operation: maybe with a daemon kill -9 at a random moment in it. A
 * failure is expected when a kill overlapped it or a stand-in was in effect.
 */
/** Slot → until when its ops may fail from a kill mid-op on it (a stop cut short after the powerdown: the guest still goes down). */
const aftermath = new Map<string, number>();
const AFTERMATH_MS = 30_000;

async function op(kind: string, args: string[], input?: string, slot = ""): Promise<boolean> {
  bump(stats.ops, kind);
  const armed = chance(0.12) ? Math.floor(rand() * 4000) : -1;
  let killedMid = false;
  const timer =
    armed >= 0
      ? setTimeout(() => {
          killedMid = true;
          killDaemon(`${armed} ms into ${kind}`).catch((e: unknown) => log(`kill failed: ${String(e)}`));
        }, armed)
      : null;
  const t0 = Date.now();
  const r = await cli(args, input);
  if (timer) clearTimeout(timer);
  // one line per op, so an unexpected failure can be read in context (with the daemon's log)
  log(`${kind}: ${args.slice(0, 4).join(" ")} → ${r.code === 0 ? "ok" : `exit ${r.code}`} (${Date.now() - t0} ms)`);
  // a kill that fired after the op ended was a kill between ops
  if (killedMid) {
    stats.killsMidOp++;
    if (slot) aftermath.set(slot, Date.now() + AFTERMATH_MS);
  }
  const after = !killedMid && slot !== "" && (aftermath.get(slot) ?? 0) > t0;
  sampleRss();
  const inj = injected;
  if (injected && --injected.left <= 0) {
    await killDaemon(`end of the ${injected.tool} failure window`);
    injected = null;
    env = baseEnv;
  }
  if (r.code === 0) return true;
  const line = (r.stderr.trim().split("\n").pop() ?? "").slice(0, 300);
  if (killedMid || inj || after) {
    bump(stats.expectedFailures, kind);
    log(`${kind} failed (expected: ${killedMid ? "daemon killed mid-op" : after ? `within ${AFTERMATH_MS / 1000} s of a kill mid-op on ${slot}` : `failing ${inj!.tool}`}): ${line}`);
  } else {
    stats.unexpected.push(`${kind} ${args.join(" ")}: exit ${r.code}: ${line}`);
    log(`UNEXPECTED ${kind} failed: exit ${r.code}: ${line}`);
  }
  return false;
}

function writeStub(tool: string): void {
  rmSync(stubDir, { recursive: true, force: true });
  mkdirSync(stubDir, { recursive: true });
  writeFileSync(join(stubDir, tool), `#!/bin/sh\necho "soak: injected failure of ${tool}" >&2\nexit 1\n`);
  chmodSync(join(stubDir, tool), 0o755);
}

async function injectFailure(): Promise<void> {
  const tool = pick(TOOLS);
  writeStub(tool);
  await killDaemon(`restart with a failing ${tool}`);
  env = { ...baseEnv, PATH: `${stubDir}:${baseEnv.PATH}` };
  injected = { tool, left: 1 + Math.floor(rand() * 3) };
  bump(stats.injections, tool);
  log(`injecting: ${tool} exits 1 for the next ${injected.left} op(s)`);
}

function git(...args: string[]): void {
  const r = Bun.spawnSync(["git", "-C", repo, ...args], { stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
}

let edits = 0;
function editRepo(): void {
  writeFileSync(join(repo, `file-${edits % 5}.txt`), `edit ${edits++} ${rand()}\n`);
}

/** One step of the walk: look at the slot's VM, do something that fits its state. */
async function step(): Promise<void> {
  const vms = await listVMs();
  if (!vms) return void (await op("vm list", ["vm", "list", "--json"]));
  const name = pick(SLOTS);
  const vm = vms.find((v) => v.name === name);
  if (!vm) {
    const work = chance(0.3) ? ["--work-disk", "64M"] : [];
    await op("create", ["vm", "create", name, "--image", "default", ...work], undefined, name);
    return;
  }
  if (!vm.alive) {
    if (chance(0.15)) await op("delete", ["vm", "delete", name], undefined, name);
    else await op("run", ["vm", "run", "--name", name, "--", "sh", "-c", "echo ok"], undefined, name);
    return;
  }
  // a pause whose resume a kill or a failure cut off
  if (vm.runtime.state === "paused") return void (await op("resume", ["vm", "resume", name], undefined, name));
  const r = rand();
  if (r < 0.25) return snapshotStep(name);
  if (r < 0.35) await op("run", ["vm", "run", "--name", name, "--", "sh", "-c", "uname -r >/dev/null && echo ok"], undefined, name);
  else if (r < 0.6) {
    // `session list` is the stored view (a session from before a VM restart still says running there); `session show` asks the guest
    const s = await cli(["session", "list", name, "--json"], undefined, 60_000);
    const listed = s.code === 0 ? (JSON.parse(s.stdout) as { name: string; status: string }[]).filter((x) => x.status === "running") : [];
    const running: { name: string }[] = [];
    for (const x of listed) {
      const shown = await cli(["session", "show", name, x.name, "--json"], undefined, 60_000);
      if (shown.code === 0 && (JSON.parse(shown.stdout) as { status: string }).status === "running") running.push(x);
    }
    if (running.length === 0) await op("session start", ["session", "start", name, "--name", `s${Math.floor(rand() * 1e6)}`, "--", "bash", "-c", 'while IFS= read -r l; do printf "got:%s\\n" "$l"; done'], undefined, name);
    else await op("session send", ["session", "send", name, pick(running).name], `ping ${Math.floor(rand() * 1e9)}\n`, name);
  } else if (r < 0.77) {
    editRepo();
    await op("workspace prepare", ["workspace", "prepare", name, "--source", repo], undefined, name);
  } else if (r < 0.9) await op("stop", ["vm", "stop", name, ...(chance(0.3) ? ["--force"] : [])], undefined, name);
  else await op("delete", ["vm", "delete", name, ...(chance(0.5) ? ["--force"] : []), ...(chance(0.5) ? ["--with-snapshots"] : [])], undefined, name);
}

/** What each snapshot's VM had written in its marker file when it was taken (`VM@SNAP` → token). */
const markers = new Map<string, string>();
const MARKER = "/root/soak-marker";
let tokens = 0;

/**
 * A running VM's snapshot, rollback, fork or pause: the guest writes a token
 * (synced) before each snapshot, a rollback must give that token back and a
 * fork's clone must answer (then goes). A mismatch, or a guest that no
 * longer answers, is unexpected unless a kill overlapped the op.
 */
async function snapshotStep(name: string): Promise<void> {
  // this VM's own (a deleted VM of the same name keeps its snapshots: not this one's to roll back to)
  const listed = await cli(["snapshot", "list", "--vm", name, "--json"], undefined, 60_000);
  const snaps = listed.code === 0 ? (JSON.parse(listed.stdout) as { name: string }[]).filter((x) => markers.has(`${name}@${x.name}`)) : [];
  const r = rand();
  if (r < 0.4 || snaps.length === 0) {
    const token = `t${++tokens}`;
    if (!(await op("marker", ["vm", "exec", name, "--", "sh", "-c", `echo ${token} > ${MARKER}; sync`], undefined, name))) return;
    const snap = `s${tokens}`;
    // kept whether the op said ok or not (a kill may have come after the commit): the next listing says whether it exists
    markers.set(`${name}@${snap}`, token);
    await op("snapshot", ["vm", "snapshot", name, "--name", snap], undefined, name);
  } else if (r < 0.7) {
    const snap = pick(snaps).name;
    const killsBefore = stats.killsMidOp;
    if (!(await op("rollback", ["vm", "rollback", name, snap], undefined, name)) || stats.killsMidOp !== killsBefore) return;
    const got = await cli(["vm", "exec", name, "--", "cat", MARKER], undefined, 60_000);
    const want = markers.get(`${name}@${snap}`);
    if (got.code !== 0 || got.stdout.trim() !== want) stats.unexpected.push(`rollback ${name}@${snap}: the guest holds ${got.code === 0 ? JSON.stringify(got.stdout.trim()) : `nothing (exit ${got.code}: ${got.stderr.trim().slice(0, 200)})`}, the snapshot ${want}`);
  } else if (r < 0.85) {
    const clone = `${name}-f${++tokens}`;
    const killsBefore = stats.killsMidOp;
    const forked = (await op("fork", ["vm", "fork", name, clone], undefined, name)) && stats.killsMidOp === killsBefore;
    // a clone a kill left running must be itself too (one cut short before its identity is stopped by the next daemon)
    const left = ((await listVMs()) ?? []).find((v) => v.name === clone);
    if (forked || left?.runtime.state === "running") {
      const got = await cli(["vm", "exec", clone, "--", "hostname"], undefined, 60_000);
      if (got.code !== 0 || got.stdout.trim() !== clone) stats.unexpected.push(`fork ${name} → ${clone}: exec answered ${got.code}: ${(got.stdout + got.stderr).trim().slice(0, 200)}`);
    }
    // the clone (if a kill left one) goes; so do its fork snapshots with the source's delete --with-snapshots or the final sweep
    if (((await listVMs()) ?? []).some((v) => v.name === clone)) await op("delete", ["vm", "delete", clone, "--force"]);
  } else {
    if (await op("pause", ["vm", "pause", name], undefined, name)) await op("resume", ["vm", "resume", name], undefined, name);
  }
}

// ---------------------------------------------------------------- leaks

function procsMentioning(needle: string): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " ").trim();
      const envv = cmd.includes(needle) ? "" : readFileSync(`/proc/${d}/environ`, "utf8");
      if ((cmd.includes(needle) || envv.includes(`BANGER_HOME=${needle}\0`)) && alive(Number(d))) out.push({ pid: Number(d), cmd });
    } catch {}
  }
  return out;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of existsSync(dir) ? readdirSync(dir, { withFileTypes: true }) : []) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...walk(p));
  }
  return out;
}

function taps(): Set<string> {
  return new Set(readdirSync("/sys/class/net").filter((n) => n.startsWith("bt-") || n.startsWith("tap-")));
}

function loopsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const d of existsSync("/sys/block") ? readdirSync("/sys/block") : []) {
    if (!d.startsWith("loop")) continue;
    try {
      const f = readFileSync(`/sys/block/${d}/loop/backing_file`, "utf8").trim();
      if (f.startsWith(dir + "/")) out.push(`/dev/${d} → ${f}`);
    } catch {}
  }
  return out;
}

/** Mid-run check after each step's kill: what the store says matches the processes. */
async function checkConsistent(where: string): Promise<void> {
  const vms = await listVMs();
  if (!vms) return void stats.unexpected.push(`${where}: vm list failed`);
  for (const v of vms) {
    // "error" is where a failed start ends (lastError set, everything it made undone, startable again): a state, not a leak;
    // half-way states (creating, starting, stopping, deleting) after reconcile are
    if (!["running", "stopped", "created", "error", "paused"].includes(v.runtime.state)) stats.leaks.push(`${where}: vm ${v.name} left ${v.runtime.state}`);
    if ((v.runtime.state === "running") !== v.alive) stats.leaks.push(`${where}: vm ${v.name} ${v.runtime.state} but alive=${v.alive}`);
  }
  // a VM kept as running must run its guest (QEMU 7.2 after a background save cut midway did not: stuck for good)
  for (const v of vms.filter((x) => x.alive && x.runtime.state === "running")) {
    const r = await cli(["vm", "exec", v.name, "--", "true"], undefined, 90_000);
    if (r.code !== 0) stats.leaks.push(`${where}: vm ${v.name} is running but its guest does not answer: ${r.stderr.trim().slice(0, 200)}`);
  }
  const adopted = new Set(vms.filter((v) => v.alive).map((v) => v.pid));
  for (const p of procsMentioning(home).filter((p) => p.cmd.startsWith("qemu-system") || p.cmd.includes("/qemu-system"))) {
    if (!adopted.has(p.pid)) stats.leaks.push(`${where}: qemu pid ${p.pid} belongs to no running VM`);
  }
}

/** What the daemon's mkdtemp makes in the system tmpdir (src/workspace): other users' and tests' names are not ours. */
const _DAEMON_TMP = /^banger-(ws|bundle)-[A-Za-z0-9]{6}$/;
function _ours(p: string): boolean {
  try {
    return statSync(p).uid === process.getuid?.();
  } catch {
    return false;
  }
}

async function finalChecks(tapsBefore: Set<string>, wsTempsBefore: Set<string>): Promise<void> {
  // the end figure is the daemon that ran the last ops, before the final restart
  const last = daemonPid();
  stats.rss.end = rssKiB(last);
  stats.rss.endDaemonOps = last === daemonSeen ? daemonOps : 0;
  env = baseEnv;
  injected = null;
  await killDaemon("final: restart with the ordinary PATH");
  await checkConsistent("end");
  const vms = (await listVMs()) ?? [];
  // guest side: sessions not stuck, no send upload left behind
  for (const v of vms.filter((x) => x.alive)) {
    const s = await cli(["session", "list", v.name, "--json"], undefined, 60_000);
    if (s.code === 0) for (const x of JSON.parse(s.stdout) as { name: string; status: string }[]) if (x.status === "starting") stats.leaks.push(`session ${v.name}/${x.name} stuck starting`);
    const up = await cli(["vm", "exec", v.name, "--", "sh", "-c", "ls /tmp | grep -c '^banger-send-' || true"], undefined, 60_000);
    if (up.code === 0 && up.stdout.trim() !== "0") stats.leaks.push(`${v.name}: ${up.stdout.trim()} /tmp/banger-send-* left in the guest`);
  }
  // stop everything
  for (const v of vms) {
    bump(stats.ops, "final delete");
    const r = await cli(["vm", "delete", v.name, "--force"]);
    if (r.code !== 0) stats.unexpected.push(`final delete ${v.name}: ${r.stderr.trim()}`);
  }
  const rows = (await listVMs()) ?? [{ name: "(vm list failed)" } as VMView];
  for (const r of rows) stats.leaks.push(`row left: vm ${r.name}`);
  // every snapshot dir is a ready snapshot's (none half-made), and each one removes
  const snaps = await cli(["snapshot", "list", "--json"], undefined, 60_000);
  const ready = snaps.code === 0 ? (JSON.parse(snaps.stdout) as { id: string; vmName: string; name: string }[]) : [];
  const snapDir = join(home, "snapshots");
  for (const d of existsSync(snapDir) ? readdirSync(snapDir) : []) if (!ready.some((x) => x.id === d)) stats.leaks.push(`snapshot dir left without a ready row: snapshots/${d}`);
  stats.snapshotsAtEnd = ready.length;
  for (const x of ready) {
    const r = await cli(["snapshot", "rm", `${x.vmName}@${x.name}`]);
    if (r.code !== 0) stats.unexpected.push(`final snapshot rm ${x.vmName}@${x.name}: ${r.stderr.trim()}`);
  }
  for (const d of existsSync(snapDir) ? readdirSync(snapDir) : []) stats.leaks.push(`snapshot dir left: snapshots/${d}`);
  await cli(["daemon", "stop"], undefined, 30_000);
  await Bun.sleep(500);
  for (const p of procsMentioning(home)) stats.leaks.push(`process left: pid ${p.pid} ${p.cmd.slice(0, 120)}`);
  for (const t of taps()) if (!tapsBefore.has(t)) stats.leaks.push(`tap left: ${t}`);
  for (const l of loopsUnder(home)) stats.leaks.push(`loop left: ${l}`);
  for (const f of walk(home)) if (parseTempName(basename(f))) stats.leaks.push(`temp left: ${f}`);
  for (const d of readdirSync(join(home, "vms"))) stats.leaks.push(`vm dir left: vms/${d}`);
  // the daemon's own temp dirs in the system tmpdir (workspace tars, bundles): only one that stays counts
  const newWs = () => readdirSync(tmpdir()).filter((f) => _DAEMON_TMP.test(f) && !wsTempsBefore.has(f) && _ours(join(tmpdir(), f)));
  if (newWs().length) {
    await Bun.sleep(2000);
    for (const f of newWs()) stats.leaks.push(`temp left: ${join(tmpdir(), f)}`);
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const img = imageDir();
  process.stderr.write(`soak: seed ${SEED} (BANGER_SOAK_SEED=${SEED} repeats the walk), ${MINUTES} min, home ${home}, image ${img}\n`);
  mkdirSync(repo, { recursive: true });
  git("init", "-q");
  git("config", "user.email", "soak@banger.local");
  git("config", "user.name", "soak");
  for (let i = 0; i < 5; i++) editRepo();
  git("add", ".");
  git("commit", "-qm", "soak");
  const tapsBefore = taps();
  const wsTempsBefore = new Set(readdirSync(tmpdir()).filter((f) => _DAEMON_TMP.test(f)));

  const imp = await cli(["image", "import", "--name", "default", "--kernel", join(img, "vmlinuz"), "--rootfs", join(img, "rootfs.ext4"), "--initrd", join(img, "initrd.img")]);
  if (imp.code !== 0) throw new Error(`image import: ${imp.stderr}`);
  stats.rss.start = rssKiB(daemonPid());
  const deadline = started + MINUTES * 60_000;
  let steps = 0;
  while (Date.now() < deadline) {
    if (!injected && chance(0.08)) await injectFailure();
    if (chance(0.06)) {
      await killDaemon("between ops");
      await checkConsistent(`after kill at step ${steps}`);
    }
    await step();
    if (++steps % 10 === 0) {
      const done = [...stats.ops.values()].reduce((a, b) => a + b, 0);
      log(`step ${steps}: ${done} ops, ${stats.kills} kills, ${[...stats.expectedFailures.values()].reduce((a, b) => a + b, 0)} expected failures, ${stats.unexpected.length} unexpected, ${stats.leaks.length} leaks`);
    }
  }
  await finalChecks(tapsBefore, wsTempsBefore);

  const total = [...stats.ops.values()].reduce((a, b) => a + b, 0);
  const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
  const fmt = (m: Map<string, number>) => [...m].sort().map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  const lines = [
    "",
    "==== soak summary ====",
    `seed ${SEED}, ${((Date.now() - started) / 60_000).toFixed(1)} min, ${steps} steps`,
    `ops done: ${total} (${fmt(stats.ops)})`,
    `daemon kill -9s: ${stats.kills} (${stats.killsMidOp} in the middle of an op); tool failures injected: ${fmt(stats.injections)}`,
    `ops failed as expected: ${[...stats.expectedFailures.values()].reduce((a, b) => a + b, 0)} (${fmt(stats.expectedFailures)})`,
    `snapshots left at the end (all whole, then removed): ${stats.snapshotsAtEnd}`,
    `unexpected failures: ${stats.unexpected.length}`,
    ...stats.unexpected.map((u) => `  - ${u}`),
    `leaks: ${stats.leaks.length}`,
    ...stats.leaks.map((l) => `  - ${l}`),
    `daemon RSS: start ${mib(stats.rss.start)}, end ${mib(stats.rss.end)} (that daemon served ${stats.rss.endDaemonOps} ops), peak ${mib(stats.rss.peak)}; longest-lived daemon: ${stats.longest.ops} ops, ${mib(stats.longest.first)} → ${mib(stats.longest.last)}`,
    "======================",
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return stats.leaks.length || stats.unexpected.length ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  process.stderr.write(`soak: ${(e as Error).stack ?? e}\n`);
} finally {
  // whatever happened: nothing of ours keeps running
  const pid = daemonPid();
  if (pid && alive(pid)) process.kill(pid, "SIGKILL");
  for (const p of procsMentioning(home)) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {}
  }
  if (code === 0 || !process.env.BANGER_SOAK_KEEP) {
    rmSync(home, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  } else process.stderr.write(`soak: kept ${home} and ${scratch} for a look (BANGER_SOAK_KEEP)\n`);
}
process.exit(code);
