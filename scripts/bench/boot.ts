/**
 * `boot`: `banger vm run --rm -- true` against the same image booted by hand
 * with banger's exact qemu argv, to the first OpenSSH `true` that succeeds.
 */
import { copyFile, readFile, rm } from "node:fs/promises";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseQemuLogArgv, rewriteQemuArgv, argvValue } from "./qemu-argv.ts";
import { freePort, sleep, type Bench } from "./run.ts";
import { formatTable, fmtMs, ratio, summarize, summaryRow } from "./stats.ts";
import { Ssh, type BenchVMs } from "./vm.ts";

const READY = "BANGER-READY";
const RAW_TIMEOUT_MS = 240_000;

interface RawTemplate {
  argv: string[];
  rootfs: string;
  initrd: string;
  keys: string;
  dir: string;
}

/** banger's qemu argv for the shared VM, from qemu.log, checked against the live /proc cmdline. */
async function template(b: Bench, vms: BenchVMs): Promise<RawTemplate> {
  const s = await vms.running();
  const vmDir = s.runtime.vmDir;
  const argv = parseQemuLogArgv(await readFile(join(vmDir, "qemu.log"), "utf8"));
  if (s.pid) {
    const live = (await readFile(`/proc/${s.pid}/cmdline`, "utf8").catch(() => "")).split("\0").filter((x, i, a) => i < a.length - 1 || x !== "");
    const same = live.length === argv.length && live.every((x, i) => x === argv[i]);
    console.log(`  qemu argv from ${join(vmDir, "qemu.log")}: ${argv.length} words, ${same ? "identical to" : "DIFFERENT from"} /proc/${s.pid}/cmdline`);
    if (!same && live.length) throw new Error("qemu.log does not match the running qemu's cmdline: refusing an unfair baseline");
  }
  const kernel = argvValue(argv, "-kernel");
  if (!kernel) throw new Error("banger's qemu argv has no -kernel");
  const dir = join(b.tmp, "raw");
  mkdirSync(dir, { recursive: true });
  // the seed initrd (hostname + keys) and the keys are banger's per-VM ones: made once, not timed
  const initrd = join(dir, "initrd.img");
  await copyFile(join(vmDir, "initrd.img"), initrd);
  const keys = join(dir, "keys");
  mkdirSync(keys, { recursive: true, mode: 0o700 });
  for (const f of ["id_ed25519", "host_ed25519.pub"]) await copyFile(join(vmDir, "keys", f), join(keys, f));
  return { argv, rootfs: join(dirname(kernel), "rootfs.ext4"), initrd, keys, dir };
}

interface RawResult {
  ms: number;
  /** When BANGER-READY appeared on the raw guest's console (sshd listening). */
  readyMs: number | null;
  attempts: number;
}

/** Copy the disk, start qemu, poll `ssh true` until it succeeds; kill qemu by pid after. */
async function rawBoot(b: Bench, t: RawTemplate, i: number): Promise<RawResult> {
  const disk = join(t.dir, `disk-${i}.img`);
  const serial = join(t.dir, `serial-${i}.log`);
  const qlog = join(t.dir, `qemu-${i}.log`);
  const port = await freePort();
  const ssh = await Ssh.forGuest(t.dir, port, t.keys, String(i));
  const argv = rewriteQemuArgv(t.argv, {
    disk, sshPort: port, serialLog: serial, qmpSock: join(t.dir, `q${i}.sock`), pidfile: join(t.dir, `q${i}.pid`), initrd: t.initrd, name: `bench-raw-${i}`,
  });
  const t0 = performance.now();
  // a fresh sparse copy each boot, as banger makes one per VM
  await b.must(["cp", "--sparse=always", "--reflink=auto", t.rootfs, disk]);
  const qemu = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: Bun.file(qlog), cwd: t.dir });
  const pid = qemu.pid;
  b.defer(`kill raw qemu ${pid}`, () => {
    if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill("SIGKILL");
  });
  let readyMs: number | null = null;
  let attempts = 0;
  let stop = false;
  // watch the console marker on the side: the guest-side ready time, for context only
  const watcher = (async () => {
    while (!stop && readyMs === null) {
      const text = await Bun.file(serial).text().catch(() => "");
      if (text.includes(READY)) readyMs = performance.now() - t0;
      else await sleep(50);
    }
  })();
  try {
    for (;;) {
      if (qemu.exitCode !== null || qemu.signalCode !== null) {
        throw new Error(`raw qemu exited (${qemu.exitCode ?? qemu.signalCode}): ${(await Bun.file(qlog).text().catch(() => "")).trim().slice(-500)}`);
      }
      if (performance.now() - t0 > RAW_TIMEOUT_MS) throw new Error(`raw boot: no ssh after ${RAW_TIMEOUT_MS / 1000} s`);
      attempts++;
      const r = await b.exec(ssh.cmd("true", ["-o", "ConnectTimeout=2"]));
      if (r.code === 0) break;
      await sleep(100);
    }
    const ms = performance.now() - t0;
    return { ms, readyMs, attempts };
  } finally {
    stop = true;
    await watcher;
    if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill("SIGKILL");
    await qemu.exited;
    await rm(disk, { force: true });
  }
}

export async function bootSection(b: Bench, vms: BenchVMs, n = 3): Promise<void> {
  const t = await template(b, vms);
  const accel = (argvValue(t.argv, "-accel") ?? "tcg").split(",")[0]!;
  if (accel === "tcg") console.log("  QEMU under TCG (no usable KVM here): absolute KVM/Firecracker boot times cannot be measured on this machine; the ratio is the point.");
  else console.log(`  QEMU with ${accel}: both sides use it.`);
  // keep the machine quiet while timing boots: the shared VM is started again by the sections after this one
  await vms.stop();
  const raw: RawResult[] = [];
  let i = 0;
  let j = 0;
  const samples = await b.interleaved(
    {
      banger: () => b.time(b.banger("vm", "run", "--name", `b${i++}`, "--rm", "--", "true")),
      raw: async () => {
        const r = await rawBoot(b, t, j++);
        raw.push(r);
        return r.ms;
      },
    },
    { banger: n, raw: n },
    "boots",
  );
  const s = { banger: summarize(samples.banger), raw: summarize(samples.raw) };
  const ready = raw.map((r) => r.readyMs).filter((x): x is number => x !== null);
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs raw"], [
    summaryRow("banger vm run --rm -- true", s.banger, { baseline: s.raw }),
    summaryRow("raw qemu + ssh true (baseline)", s.raw, { baseline: s.raw }),
  ]));
  console.log(`  banger vm run = create (disk copy, keys, seed initrd) + boot + wait for ssh + run + delete; raw = sparse disk copy + same qemu argv + OpenSSH polled every 100 ms (ConnectTimeout=2) + kill.`);
  if (ready.length) console.log(`  raw guest printed ${READY} at median ${fmtMs(summarize(ready).median)}; ssh attempts per raw boot: ${raw.map((r) => r.attempts).join(", ")}`);
  console.log(`  banger overhead: ${fmtMs(s.banger.median - s.raw.median)} per boot (median difference), ratio ${ratio(s.banger.median, s.raw.median)}`);
  b.note("boot", `vm run --rm -- true / raw qemu boot to ssh true, medians (${accel.toUpperCase()})`, ratio(s.banger.median, s.raw.median));
  b.row({ id: "P3", section: "boot", measure: `banger vm run --rm -- true, cold (${accel.toUpperCase()})`, stats: s.banger, baseline: { name: "raw qemu, same argv and image, to ssh true", stats: s.raw }, goal: { on: "ratio", max: 1.15, text: "overhead ≤ 1.15×" } });
}
