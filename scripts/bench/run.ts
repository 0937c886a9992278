/**
 * The bench's context: a temp BANGER_HOME, timed and untimed commands, an
 * undo stack run once at the end (LIFO), and the ratios collected for the
 * final summary. Timing is performance.now() around Bun.spawn only.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { RowInput } from "./results.ts";
import { interleave } from "./stats.ts";

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface SummaryLine {
  section: string;
  what: string;
  ratio: string;
  note?: string;
}

export interface BenchOptions {
  repo: string;
  /** dist/banger */
  bin: string;
}

export class Bench {
  readonly repo: string;
  readonly bin: string;
  home = "";
  tmp = "";
  readonly summary: SummaryLine[] = [];
  /** The rows for bench/results.json, in the order sections recorded them. */
  readonly rows: RowInput[] = [];
  private readonly _undo: { what: string; fn: () => Promise<unknown> | unknown }[] = [];
  private _hello: string | null = null;
  /** Daemon pids seen during the run: killed by pid at the end if `daemon stop` left one behind. */
  readonly daemonPids = new Set<number>();

  constructor(o: BenchOptions) {
    this.repo = o.repo;
    this.bin = o.bin;
  }

  /** A short temp BANGER_HOME (a VM's API socket path must stay under 107 bytes). */
  async init(): Promise<void> {
    this.home = await mkdtemp("/tmp/bb-");
    this.tmp = join(this.home, "bench");
    await Bun.$`mkdir -p ${this.tmp}`.quiet();
    this.defer("remove temp BANGER_HOME", async () => {
      // a daemon that is still exiting can write its log again mid-removal: retry, then check
      for (let i = 0; i < 5 && existsSync(this.home); i++) {
        await rm(this.home, { recursive: true, force: true }).catch(() => {});
        if (existsSync(this.home)) await sleep(200);
      }
      if (existsSync(this.home)) throw new Error(`could not remove ${this.home}`);
    });
  }

  get env(): Record<string, string> {
    // no automatic warm-start templates: the boot figures are of cold boots, and a background template would load the host
    return { ...(process.env as Record<string, string>), BANGER_HOME: this.home, NO_COLOR: "1", BANGER_AUTO_WARM: "0" };
  }

  /** Register an undo; they run in reverse order at the end, like defer. */
  defer(what: string, fn: () => Promise<unknown> | unknown): void {
    this._undo.push({ what, fn });
  }

  /** Run every undo once, in reverse; report failures and keep going. */
  async cleanup(): Promise<void> {
    while (this._undo.length) {
      const u = this._undo.pop()!;
      try {
        await u.fn();
      } catch (e) {
        console.error(`bench cleanup: ${u.what} failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /** Spawn argv, wait for exit, collect output; ms is wall time from spawn to exit. */
  async exec(argv: string[], opts: { env?: Record<string, string>; stdin?: string; cwd?: string } = {}): Promise<CmdResult> {
    const t0 = performance.now();
    const p = Bun.spawn(argv, {
      env: opts.env ?? this.env,
      cwd: opts.cwd ?? this.repo,
      stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, stdout, stderr, ms: performance.now() - t0 };
  }

  /** exec that must succeed: a failing command never yields a (fast) timing. */
  async must(argv: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<CmdResult> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) {
      throw new Error(`${argv.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim().split("\n").slice(-5).join("\n")}`);
    }
    return r;
  }

  /** Timed, must succeed; returns milliseconds. */
  async time(argv: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<number> {
    return (await this.must(argv, opts)).ms;
  }

  banger(...args: string[]): string[] {
    return [this.bin, ...args];
  }

  async bangerJson<T>(...args: string[]): Promise<T> {
    const r = await this.must(this.banger(...args, "--json"));
    return JSON.parse(r.stdout) as T;
  }

  /** Remember the running daemon's pid so the final cleanup can make sure it is gone. */
  async noteDaemon(): Promise<void> {
    const r = await this.exec(this.banger("daemon", "status", "--json"));
    if (r.code !== 0) return;
    try {
      const pid = Number((JSON.parse(r.stdout) as { pid?: number }).pid);
      if (pid > 0) this.daemonPids.add(pid);
    } catch {}
  }

  /**
   * A compiled Bun hello-world (`console.log("hi")`): the floor any compiled Bun CLI pays.
   * Built by scripts/build.sh --hello, with the bun and the compile flags dist/banger is built with.
   */
  async hello(): Promise<string> {
    if (this._hello) return this._hello;
    const out = join(this.tmp, "hello");
    await this.must(["bash", join(this.repo, "scripts/build.sh"), "--hello", out]);
    this._hello = out;
    return out;
  }

  /** P1's floor (scripts/bench/floor.ts): one GET + the owner check and nothing else, built as banger is; argv to run it. */
  async floor(): Promise<string[]> {
    const out = join(this.tmp, "floor");
    if (!existsSync(out)) await this.must(["bash", join(this.repo, "scripts/build.sh"), "--compile", join(this.repo, "scripts/bench/floor.ts"), out]);
    const version = (await this.must(this.banger("--version"))).stdout.trim().replace(/^banger /, "");
    return [out, join(this.home, "bangerd.sock"), version];
  }

  /**
   * Run each variant counts[k] times in round-robin order (A B A B …) and
   * return the samples per variant. `onEach` is told after every sample.
   */
  async interleaved<K extends string>(variants: Record<K, () => Promise<number>>, counts: Record<K, number>, label = ""): Promise<Record<K, number[]>> {
    const out = Object.fromEntries(Object.keys(variants).map((k) => [k, [] as number[]])) as unknown as Record<K, number[]>;
    const order = interleave(counts);
    let done = 0;
    for (const k of order) {
      out[k].push(await variants[k]());
      done++;
      if (label && process.stderr.isTTY) process.stderr.write(`\r  ${label}: ${done}/${order.length}   `);
    }
    if (label && process.stderr.isTTY) process.stderr.write("\r" + " ".repeat(label.length + 20) + "\r");
    return out;
  }

  /** Record a headline figure for bench/results.json and results.md. */
  row(r: RowInput): void {
    this.rows.push(r);
  }

  note(section: string, what: string, ratio: string, note?: string): void {
    this.summary.push({ section, what, ratio, note });
  }
}

/** A loopback port that was free a moment ago (bind :0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port from bind"))));
    });
  });
}

/** Is pid alive and (when given) still the process whose cmdline contains `needle`? */
export function pidAlive(pid: number, needle?: string): boolean {
  if (!(pid > 0)) return false;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    // a zombie has an empty cmdline: it is gone for our purposes
    if (cmd === "") return false;
    return needle ? cmd.includes(needle) : true;
  } catch {
    return false;
  }
}

/** Wait up to ms for pid to exit (or stop looking like ours); true when it is gone. */
export async function waitGone(pid: number, needle: string, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (pidAlive(pid, needle)) {
    if (performance.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** SIGKILL pid only if it still looks like the process we started (pid reuse guard). */
export function killPid(pid: number, needle: string): boolean {
  if (!pidAlive(pid, needle)) return false;
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

export function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = join(dir || ".", cmd);
    if (existsSync(p)) return p;
  }
  return null;
}

export const sleep = (ms: number) => Bun.sleep(ms);
