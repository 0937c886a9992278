/**
 * A second BANGER_HOME whose daemon loads the test driver
 * (test/fixtures/fake-vmm-plugin.ts): its "VMs" are node processes serving
 * their API socket, so recovery and parallel figures measure banger's own
 * work without a guest. Every fake VM is deleted at the end and any survivor
 * killed by pid.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { killPid, pidAlive, waitGone, type Bench, type CmdResult } from "./run.ts";

export interface FakeVM {
  name: string;
  pid: number;
  alive: boolean;
  runtime: { state: string };
}

export const FAKE_VM_SCRIPT = "fake-vm.mjs";

const _worlds = new WeakMap<Bench, FakeWorld>();

export class FakeWorld {
  /** One fake home per bench run, shared by the sections that use it. */
  static of(b: Bench): FakeWorld {
    let w = _worlds.get(b);
    if (!w) _worlds.set(b, (w = new FakeWorld(b)));
    return w;
  }

  readonly home: string;
  private readonly _pids = new Set<number>();
  private readonly _daemonPids = new Set<number>();
  private _ready: Promise<void> | null = null;

  private constructor(readonly b: Bench) {
    // short: a VM's API socket path lives under it and must stay under 107 bytes
    this.home = join(b.home, "f");
  }

  get env(): Record<string, string> {
    return { ...this.b.env, BANGER_HOME: this.home };
  }

  run(...args: string[]): Promise<CmdResult> {
    return this.b.exec(this.b.banger(...args), { env: this.env });
  }

  async must(...args: string[]): Promise<CmdResult> {
    const r = await this.run(...args);
    if (r.code !== 0) throw new Error(`banger ${args.join(" ")} (fake home) exited ${r.code}: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join("\n")}`);
    return r;
  }

  /** The home, the plugin in its config.json, a tiny image; the daemon is auto-started by the first command. */
  ready(): Promise<void> {
    this._ready ??= (async () => {
      mkdirSync(this.home, { recursive: true, mode: 0o700 });
      const plugin = join(this.b.repo, "test/fixtures/fake-vmm-plugin.ts");
      writeFileSync(join(this.home, "config.json"), JSON.stringify({ plugins: [plugin] }) + "\n");
      const img = join(this.home, "img");
      mkdirSync(img, { recursive: true });
      writeFileSync(join(img, "vmlinuz"), "not a kernel");
      writeFileSync(join(img, "rootfs.ext4"), Buffer.alloc(1 << 20));
      this.b.defer("fake home: delete fake VMs and stop its daemon", () => this._cleanup());
      await this.must("image", "import", "--name", "tiny", "--kernel", join(img, "vmlinuz"), "--rootfs", join(img, "rootfs.ext4"));
      await this.noteDaemon();
    })();
    return this._ready;
  }

  /** The running daemon's pid (read from daemon.pid; the CLI auto-starts one if needed). */
  async daemonPid(): Promise<number> {
    const pid = Number(readFileSync(join(this.home, "daemon.pid"), "utf8").trim());
    if (!(pid > 0)) throw new Error("fake home: no daemon pid");
    this._daemonPids.add(pid);
    return pid;
  }

  async noteDaemon(): Promise<void> {
    await this.daemonPid().catch(() => {});
  }

  /** `vm create NAME --driver fake --start`; remembers the process for cleanup. */
  async create(name: string): Promise<FakeVM> {
    const r = await this.must("vm", "create", name, "--image", "tiny", "--driver", "fake", "--start", "--json");
    const vm = JSON.parse(r.stdout) as FakeVM;
    if (vm.pid) this._pids.add(vm.pid);
    return vm;
  }

  async delete(name: string): Promise<void> {
    await this.must("vm", "delete", name);
  }

  async list(): Promise<FakeVM[]> {
    const r = await this.must("vm", "list", "--json");
    const vms = JSON.parse(r.stdout) as FakeVM[];
    for (const v of vms) if (v.pid) this._pids.add(v.pid);
    return vms;
  }

  /** Run fn over items with at most `width` at a time. */
  static async pool<T>(items: readonly T[], width: number, fn: (x: T) => Promise<unknown>): Promise<void> {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }));
  }

  private async _cleanup(): Promise<void> {
    const r = await this.run("vm", "list", "--json");
    if (r.code === 0) {
      const vms = JSON.parse(r.stdout) as FakeVM[];
      for (const v of vms) if (v.pid) this._pids.add(v.pid);
      await FakeWorld.pool(vms, 4, async (v) => {
        const d = await this.run("vm", "delete", v.name);
        if (d.code !== 0) console.error(`bench cleanup: fake vm delete ${v.name}: ${d.stderr.trim()}`);
      });
    }
    await this.noteDaemon();
    await this.run("daemon", "stop");
    for (const pid of this._daemonPids) {
      if (!(await waitGone(pid, "banger", 10_000)) && killPid(pid, "banger")) console.error(`bench cleanup: killed leftover fake-home daemon ${pid}`);
    }
    let killed = 0;
    for (const pid of this._pids) if (pidAlive(pid, FAKE_VM_SCRIPT) && killPid(pid, FAKE_VM_SCRIPT)) killed++;
    if (killed) console.error(`bench cleanup: killed ${killed} leftover fake VM process(es)`);
  }
}

/** VmRSS of a process in bytes, and its anonymous and file-backed parts, from /proc/PID/status. */
export function rssBytes(pid: number): { rss: number; anon: number; file: number } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, "m").exec(text);
    if (!m) throw new Error(`no ${field} for pid ${pid}`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}
