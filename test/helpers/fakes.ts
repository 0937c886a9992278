/**
 * Fakes for unit tests. Every fake RECORDS what it was asked so tests assert
 * the record (commands run, signals sent, files written); no module mocking.
 */
import type { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import type { ImageRecord, VMHandles, VMRecord } from "../../src/shared/model.ts";
import type { Logger } from "../../src/core/plugin.ts";
import type {
  Clock,
  Exec,
  ExecOptions,
  FileLocks,
  ExecResult,
  ExecStreamOptions,
  FS,
  GuestSSH,
  Host,
  ProcInfo,
  Procs,
  SSHDialer,
  SSHTarget,
} from "../../src/host/types.ts";
import { Store } from "../../src/store/store.ts";
import { Engine } from "../../src/core/engine.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { setupPlugins, type LoaderDeps } from "../../src/core/loader.ts";
import type { BangerPlugin } from "../../src/core/plugin.ts";
import { Providers } from "../../src/core/providers.ts";
import type { Operation, Undo } from "../../src/core/operation.ts";
import type { BangerPaths } from "../../src/core/plugin.ts";
import type { BootConfig, LaunchResult, VMMDriver } from "../../src/vmm/driver.ts";

// ---------------------------------------------------------------- exec

export type ExecMatcher = string | RegExp | ((cmd: string, args: string[]) => boolean);
export type ScriptedResult = Partial<ExecResult> | ((cmd: string, args: string[], opts: ExecOptions) => Partial<ExecResult> | Promise<Partial<ExecResult>>);

export interface FakeExec extends Exec {
  /** Every run() call in order. */
  readonly runs: { cmd: string; args: string[]; opts: ExecOptions }[];
  /** Every spawnDetached() call in order, with the pid handed back. */
  readonly spawns: { cmd: string; args: string[]; pid: number; logPath?: string }[];
  /**
   * Script a result for commands matching `m` (a string matches the command
   * name or the start of "cmd arg1 arg2…"; a RegExp tests that joined line).
   * Later scripts win over earlier ones.
   */
  on(m: ExecMatcher, result: ScriptedResult): FakeExec;
  /** Which commands `which()` reports missing. */
  missing: Set<string>;
  /** Called on each spawnDetached (e.g. to add the process to fakeProcs). */
  onSpawn?: (pid: number, cmd: string, args: string[]) => void;
  /** The joined command lines run so far: ["ip link add tap0", …]. */
  lines(): string[];
}

function _matches(m: ExecMatcher, cmd: string, args: string[]): boolean {
  const line = [cmd, ...args].join(" ");
  if (typeof m === "string") return cmd === m || line === m || line.startsWith(m + " ");
  if (m instanceof RegExp) return m.test(line);
  return m(cmd, args);
}

export function fakeExec(opts: { firstPid?: number } = {}): FakeExec {
  const scripts: { m: ExecMatcher; r: ScriptedResult }[] = [];
  let nextPid = opts.firstPid ?? 40_000;
  const exec: FakeExec = {
    runs: [],
    spawns: [],
    missing: new Set(),
    on(m, r) {
      scripts.push({ m, r });
      return exec;
    },
    lines() {
      return exec.runs.map((r) => [r.cmd, ...r.args].join(" "));
    },
    async run(cmd, args, o = {}) {
      exec.runs.push({ cmd, args, opts: o });
      let script: ScriptedResult | undefined;
      for (let i = scripts.length - 1; i >= 0; i--) {
        if (_matches(scripts[i]!.m, cmd, args)) {
          script = scripts[i]!.r;
          break;
        }
      }
      const partial = typeof script === "function" ? await script(cmd, args, o) : (script ?? {});
      const result: ExecResult = { stdout: "", stderr: "", exitCode: 0, ...partial };
      if ((o.check ?? true) && result.exitCode !== 0) {
        const sub = args[0] && /^[a-z][a-z-]*$/.test(args[0]) ? ` ${args[0]}` : "";
        throw new BangerError("E_INTERNAL", `${cmd}${sub} failed (exit ${result.exitCode})${result.stderr ? `: ${result.stderr.trim()}` : ""}`);
      }
      return result;
    },
    async spawnDetached(cmd, args, o = {}) {
      const pid = nextPid++;
      exec.spawns.push({ cmd, args, pid, logPath: o.logPath });
      exec.onSpawn?.(pid, cmd, args);
      return pid;
    },
    async which(cmd) {
      return exec.missing.has(cmd) ? null : `/usr/bin/${cmd}`;
    },
  };
  return exec;
}

// ---------------------------------------------------------------- procs

export interface FakeProcs extends Procs {
  /** pid → process; tests add and remove entries directly. */
  readonly table: Map<number, ProcInfo>;
  /** Every kill() call in order. */
  readonly kills: { pid: number; signal: NodeJS.Signals | number }[];
  add(pid: number, startTime: number, cmdline?: string[]): ProcInfo;
}

const _FATAL = new Set<NodeJS.Signals | number>(["SIGKILL", "SIGTERM", 9, 15]);

export function fakeProcs(initial: { pid: number; startTime: number; cmdline?: string[] }[] = []): FakeProcs {
  const table = new Map<number, ProcInfo>();
  const p: FakeProcs = {
    table,
    kills: [],
    add(pid, startTime, cmdline = []) {
      const info = { pid, startTime, cmdline };
      table.set(pid, info);
      return info;
    },
    async info(pid) {
      const i = table.get(pid);
      return i ? { ...i, cmdline: [...i.cmdline] } : null;
    },
    async find(...needles) {
      return [...table.values()].filter((i) => needles.every((n) => i.cmdline.join(" ").includes(n))).map((i) => ({ ...i }));
    },
    kill(pid, signal) {
      p.kills.push({ pid, signal });
      if (!table.has(pid)) return false;
      if (_FATAL.has(signal)) table.delete(pid);
      return true;
    },
  };
  for (const i of initial) p.add(i.pid, i.startTime, i.cmdline);
  return p;
}

// ---------------------------------------------------------------- clock

export interface FakeClock extends Clock {
  /** Milliseconds since the epoch, moved only by sleep() and advance(). */
  ms: number;
  readonly sleeps: number[];
  /** Timers armed and not yet fired or cancelled, with the time each is due at. */
  readonly timers: { at: number; fn: () => void }[];
  /** Move time on, firing (in due order) every timer that comes due. */
  advance(ms: number): void;
}

export function fakeClock(startMs = Date.parse("2026-01-01T00:00:00Z")): FakeClock {
  const fire = () => {
    for (;;) {
      const due = c.timers.filter((t) => t.at <= c.ms).sort((a, b) => a.at - b.at)[0];
      if (!due) return;
      c.timers.splice(c.timers.indexOf(due), 1);
      due.fn();
    }
  };
  const c: FakeClock = {
    ms: startMs,
    sleeps: [],
    timers: [],
    now: () => new Date(c.ms),
    async sleep(ms) {
      c.sleeps.push(ms);
      c.ms += ms;
      fire();
    },
    timer(ms, fn) {
      const t = { at: c.ms + Math.max(0, ms), fn };
      c.timers.push(t);
      return () => {
        const i = c.timers.indexOf(t);
        if (i >= 0) c.timers.splice(i, 1);
      };
    },
    advance(ms) {
      c.ms += ms;
      fire();
    },
  };
  return c;
}

// ---------------------------------------------------------------- fs

export interface FakeFS extends FS {
  readonly files: Map<string, string>;
  readonly dirs: Set<string>;
  /** Symlinks: path → target (never followed by list or rmrf, as on the real host). */
  readonly links: Map<string, string>;
  /** Every mutation in order: "write <path>", "mkdirp <path>", "rmrf <path>", "rename <from> <to>", "link <from> <to>", "copy <from> <to>", "chmod <path> <octal>". */
  readonly ops: string[];
  readonly writes: { path: string; data: string; mode?: number }[];
  /** Make the next writeAtomic to a path matching this fail. */
  failWrites?: RegExp;
  /**
   * FIFOs openFifo can open: path → the bytes waiting in it. What is written to one is handed to `onFifoWrite`
   * (a test's stand-in for the process at the other end), or kept for a reader when there is none.
   */
  readonly fifos: Map<string, Uint8Array[]>;
  onFifoWrite?: (path: string, data: Uint8Array) => void;
}

function _under(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith("/") ? root : root + "/");
}

export function fakeFS(initial: Record<string, string> = {}): FakeFS {
  /** Each piece at its offset of a file (grown as needed), the rest kept: what writeRanges and copyRanges do. */
  async function overwrite(path: string, pieces: readonly { offset: number; data: Uint8Array }[]): Promise<void> {
    const old = f.files.has(path) ? await f.readBytes(path) : new Uint8Array();
    const out = new Uint8Array(Math.max(old.length, ...pieces.map((r) => r.offset + r.data.length)));
    out.set(old);
    for (const r of pieces) out.set(r.data, r.offset);
    f.files.set(path, new TextDecoder().decode(out));
  }
  const f: FakeFS = {
    files: new Map(Object.entries(initial)),
    dirs: new Set(),
    links: new Map(),
    ops: [],
    writes: [],
    fifos: new Map(),
    async openFifo(path, end) {
      if (!f.fifos.has(path)) throw Object.assign(new Error(`ENOENT: no FIFO ${path}`), { code: "ENOENT" });
      f.ops.push(`openFifo ${path} ${end}`);
      let open = true;
      const live = () => {
        if (!open) throw new Error(`EBADF: ${path} closed`);
      };
      return {
        read() {
          live();
          const parts = f.fifos.get(path)!.splice(0);
          return new Uint8Array(Buffer.concat(parts));
        },
        write(data) {
          live();
          const copy = Uint8Array.from(data);
          if (f.onFifoWrite) f.onFifoWrite(path, copy);
          else f.fifos.get(path)!.push(copy);
          return copy.length;
        },
        close() {
          open = false;
        },
      };
    },
    async readText(path) {
      return f.files.get(path) ?? null;
    },
    async writeAtomic(path, data, mode) {
      if (f.failWrites?.test(path)) throw new Error(`EIO: write ${path}`);
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      f.ops.push(`write ${path}`);
      f.writes.push({ path, data: text, mode });
      f.files.set(path, text);
    },
    async list(dir) {
      const prefix = dir.endsWith("/") ? dir : dir + "/";
      const names = new Set<string>();
      for (const k of [...f.files.keys(), ...f.dirs, ...f.links.keys()]) if (k.startsWith(prefix)) names.add(k.slice(prefix.length).split("/")[0]!);
      return [...names].sort().map((name) => {
        const p = prefix + name;
        if (f.links.has(p)) return { name, type: "symlink" as const };
        if (f.files.has(p)) return { name, type: "file" as const };
        return { name, type: "dir" as const };
      });
    },
    async listTree(dir) {
      const prefix = dir.endsWith("/") ? dir : dir + "/";
      const paths = new Set<string>();
      for (const k of [...f.files.keys(), ...f.dirs, ...f.links.keys()]) {
        if (!k.startsWith(prefix)) continue;
        // every dir on the way down is an entry too, as readdir -R lists it
        const parts = k.slice(prefix.length).split("/");
        for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join("/"));
      }
      return [...paths].sort();
    },
    async readBytes(path) {
      const t = f.files.get(path);
      if (t === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
      return new TextEncoder().encode(t);
    },
    async readRange(path, offset, length) {
      return (await f.readBytes(path)).subarray(offset, offset + length);
    },
    async *readStream(path, chunkBytes = 4 << 20) {
      const b = await f.readBytes(path);
      for (let i = 0; i < b.length; i += chunkBytes) yield b.subarray(i, i + chunkBytes);
    },
    async appendFile(path, data) {
      f.ops.push(`append ${path}`);
      f.files.set(path, (f.files.get(path) ?? "") + data);
    },
    async writeFile(path, data, mode) {
      if (f.failWrites?.test(path)) throw new Error(`EIO: write ${path}`);
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      f.ops.push(`write ${path}`);
      f.writes.push({ path, data: text, mode });
      f.files.set(path, text);
    },
    async rename(from, to) {
      f.ops.push(`rename ${from} ${to}`);
      for (const [k, v] of [...f.files]) if (_under(k, from)) (f.files.delete(k), f.files.set(to + k.slice(from.length), v));
      for (const d of [...f.dirs]) if (_under(d, from)) (f.dirs.delete(d), f.dirs.add(to + d.slice(from.length)));
    },
    async link(from, to) {
      f.ops.push(`link ${from} ${to}`);
      const t = f.files.get(from);
      if (t === undefined) throw Object.assign(new Error(`ENOENT: link ${from}`), { code: "ENOENT" });
      if (await f.exists(to)) throw Object.assign(new Error(`EEXIST: link ${to}`), { code: "EEXIST" });
      f.files.set(to, t);
    },
    async copyFile(from, to) {
      f.ops.push(`copy ${from} ${to}`);
      await f.writeFile(to, await f.readBytes(from));
    },
    async writeRanges(path, ranges) {
      f.ops.push(`write ranges ${path} ${ranges.map((r) => `${r.offset}+${r.data.length}`).join(" ")}`);
      await overwrite(path, ranges);
    },
    async copyRanges(from, to, ranges) {
      f.ops.push(`copy ranges ${from} ${to} ${ranges.map((r) => `${r.from}+${r.length}@${r.to}`).join(" ")}`);
      await f.readBytes(to); // it must exist (ENOENT otherwise), as the real one opens it in place
      const src = await f.readBytes(from);
      if (ranges.some((r) => r.from + r.length > src.length)) throw Object.assign(new Error(`EIO: ${from}`), { code: "EIO" });
      await overwrite(to, ranges.map((r) => ({ offset: r.to, data: src.subarray(r.from, r.from + r.length) })));
      return ranges.reduce((n, r) => n + r.length, 0);
    },
    async chmod(path, mode) {
      f.ops.push(`chmod ${path} ${mode.toString(8)}`);
    },
    async stat(path) {
      const t = f.files.get(path);
      if (t !== undefined) return { type: "file", size: t.length, allocated: t.length, mode: 0o644 };
      return (await f.exists(path)) ? { type: "dir", size: 0, allocated: 0, mode: 0o755 } : null;
    },
    async lstat(path) {
      return f.links.has(path) ? { type: "symlink", size: f.links.get(path)!.length, allocated: 0, mode: 0o777 } : f.stat(path);
    },
    async readlink(path) {
      return f.links.get(path) ?? null;
    },
    async mkdtemp(prefix) {
      const dir = `${prefix}${(f.ops.length + 1).toString(36).padStart(6, "0")}`;
      await f.mkdirp(dir);
      return dir;
    },
    async exists(path) {
      if (f.files.has(path) || f.dirs.has(path) || f.links.has(path)) return true;
      for (const k of f.files.keys()) if (_under(k, path)) return true;
      return false;
    },
    async mkdirp(path) {
      f.ops.push(`mkdirp ${path}`);
      f.dirs.add(path);
    },
    async rmrf(path) {
      f.ops.push(`rmrf ${path}`);
      for (const k of [...f.files.keys()]) if (_under(k, path)) f.files.delete(k);
      for (const d of [...f.dirs]) if (_under(d, path)) f.dirs.delete(d);
      for (const l of [...f.links.keys()]) if (_under(l, path)) f.links.delete(l);
    },
  };
  return f;
}

// ---------------------------------------------------------------- ssh

export interface FakeGuestSSH extends GuestSSH {
  readonly target: SSHTarget;
  readonly execs: string[];
  readonly scripts: string[];
  readonly uploads: { path: string; data: string; mode?: number }[];
  /** Signals sent to its running commands (onRunning), in order. */
  readonly signals: string[];
}

export interface FakeSSH extends SSHDialer {
  readonly dials: SSHTarget[];
  readonly conns: FakeGuestSSH[];
  /** Make dial() reject with this error. */
  failDial?: Error;
  /** Scripted guest behaviour: exit code (and output) for a command line or script. */
  respond?: (command: string, opts?: ExecStreamOptions) => FakeAnswer | Promise<FakeAnswer>;
  /** Hears each signal sent to a running command (after it is recorded in its connection's `signals`). */
  onSignal?: (name: string) => void;
}

type FakeAnswer = { exitCode?: number; stdout?: string; stderr?: string };

export function fakeSSH(): FakeSSH {
  const d: FakeSSH = {
    dials: [],
    conns: [],
    async dial(target) {
      d.dials.push(target);
      if (d.failDial) throw d.failDial;
      let closed = false;
      const conn: FakeGuestSSH = {
        target,
        execs: [],
        scripts: [],
        uploads: [],
        signals: [],
        async exec(command, opts) {
          conn.execs.push(command);
          opts?.onRunning?.({
            signal: (name) => {
              conn.signals.push(name);
              d.onSignal?.(name);
            },
          });
          const r = (await d.respond?.(command, opts)) ?? {};
          if (r.stdout) opts?.onStdout?.(new TextEncoder().encode(r.stdout));
          if (r.stderr) opts?.onStderr?.(new TextEncoder().encode(r.stderr));
          return r.exitCode ?? 0;
        },
        async runScript(script) {
          conn.scripts.push(script);
          const r = (await d.respond?.(script)) ?? {};
          return { stdout: r.stdout ?? "", stderr: r.stderr ?? "", exitCode: r.exitCode ?? 0 };
        },
        async upload(path, data, mode) {
          conn.uploads.push({ path, data: typeof data === "string" ? data : new TextDecoder().decode(data), mode });
        },
        close() {
          closed = true;
        },
        get closed() {
          return closed;
        },
      };
      d.conns.push(conn);
      return conn;
    },
  };
  return d;
}

// ---------------------------------------------------------------- locks

export interface FakeLocks extends FileLocks {
  /** Paths locked right now. */
  readonly held: Set<string>;
  /** Every event in order: "lock <path>", "busy <path>", "unlock <path>". */
  readonly events: string[];
}

/** In-memory flock: a second tryLock on a held path gets null, like a second open file would. */
export function fakeLocks(): FakeLocks {
  const l: FakeLocks = {
    held: new Set(),
    events: [],
    tryLock(path) {
      if (l.held.has(path)) {
        l.events.push(`busy ${path}`);
        return null;
      }
      l.held.add(path);
      l.events.push(`lock ${path}`);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        l.held.delete(path);
        l.events.push(`unlock ${path}`);
      };
    },
  };
  return l;
}

// ---------------------------------------------------------------- host

export interface FakeHost extends Host {
  exec: FakeExec;
  procs: FakeProcs;
  clock: FakeClock;
  fs: FakeFS;
  ssh: FakeSSH;
  locks: FakeLocks;
}

export function fakeHost(o: { files?: Record<string, string> } = {}): FakeHost {
  return { exec: fakeExec(), procs: fakeProcs(), clock: fakeClock(), fs: fakeFS(o.files), ssh: fakeSSH(), locks: fakeLocks() };
}

// ---------------------------------------------------------------- driver

export interface FakeDriver extends VMMDriver {
  /** Every call in order: "launch <vm>", "stop <vm> <pid>", "kill <vm> <pid>". */
  readonly calls: string[];
  readonly launches: { vm: string; boot: BootConfig }[];
  readonly stops: { vm: string; handles: VMHandles; timeoutMs: number }[];
  readonly kills: { vm: string; handles: VMHandles }[];
  /** Make launch() throw this. */
  failLaunch?: Error;
  /** Override: does this VM's API socket answer? Default: a launched, still-listed process answers. */
  answers?: (vm: VMRecord) => boolean;
  /** Override: the live process found for a VM. Default: a process whose cmdline names the API socket. */
  findProcessImpl?: (vm: VMRecord) => { pid: number; startTime: number } | null;
  /** VM ids whose vCPUs the fake VMM has stopped (pause adds, resume removes; runState reads it). */
  readonly paused: Set<string>;
}

/**
 * A VMM driver whose "VMs" are entries in a fakeProcs table: launch adds a
 * process whose cmdline names the API socket, kill/stop remove it (only when
 * pid and start time match, like a careful real driver).
 */
export function fakeDriver(procs: FakeProcs, o: { name?: string; firstPid?: number; startTime?: number } = {}): FakeDriver {
  let nextPid = o.firstPid ?? 50_000;
  const ownsProcess = async (h: VMHandles) => {
    const info = h.pid > 0 ? await procs.info(h.pid) : null;
    return !!info && (!h.pidStartTime || info.startTime === h.pidStartTime);
  };
  const d: FakeDriver = {
    name: o.name ?? "fake",
    calls: [],
    launches: [],
    stops: [],
    kills: [],
    async launch(vm, boot): Promise<LaunchResult> {
      d.calls.push(`launch ${vm.name}`);
      d.launches.push({ vm: vm.name, boot: structuredClone(boot) });
      if (d.failLaunch) throw d.failLaunch;
      const pid = nextPid++;
      const startTime = o.startTime ?? 7_000 + pid;
      procs.add(pid, startTime, ["fake-vmm", "--api-sock", vm.runtime.apiSockPath]);
      return { pid, pidStartTime: startTime };
    },
    async apiAnswers(vm) {
      if (d.answers) return d.answers(vm);
      return (await procs.find(vm.runtime.apiSockPath)).length > 0;
    },
    async findProcess(vm) {
      if (d.findProcessImpl) return d.findProcessImpl(vm);
      const p = (await procs.find("fake-vmm", vm.runtime.apiSockPath))[0];
      return p ? { pid: p.pid, startTime: p.startTime } : null;
    },
    async stop(vm, handles, timeoutMs) {
      d.calls.push(`stop ${vm.name} ${handles.pid}`);
      d.stops.push({ vm: vm.name, handles: structuredClone(handles), timeoutMs });
      if (await ownsProcess(handles)) procs.kill(handles.pid, "SIGTERM");
    },
    async kill(vm, handles) {
      d.calls.push(`kill ${vm.name} ${handles.pid}`);
      d.kills.push({ vm: vm.name, handles: structuredClone(handles) });
      if (await ownsProcess(handles)) procs.kill(handles.pid, "SIGKILL");
      d.paused.delete(vm.id);
    },
    paused: new Set(),
    async pause(vm, handles) {
      d.calls.push(`pause ${vm.name} ${handles.pid}`);
      if (!(await ownsProcess(handles))) throw new Error(`no VMM process ${handles.pid}`);
      d.paused.add(vm.id);
    },
    async resume(vm, handles) {
      d.calls.push(`resume ${vm.name} ${handles.pid}`);
      if (!(await ownsProcess(handles))) throw new Error(`no VMM process ${handles.pid}`);
      d.paused.delete(vm.id);
    },
    async runState(vm) {
      return d.paused.has(vm.id) ? "paused" : "running";
    },
  };
  return d;
}

// ---------------------------------------------------------------- store, logger, records

export interface TestStore {
  store: Store;
  dir: string;
  path: string;
  /** Close the store and delete its temp dir. */
  cleanup(): void;
}

/** A real Store on a fresh file under os.tmpdir(); call cleanup() (afterEach) to delete it. */
export function testStore(opts: { busyTimeoutMs?: number } = {}): TestStore {
  const dir = mkdtempSync(join(tmpdir(), "banger-store-"));
  const path = join(dir, "banger.db");
  const store = new Store(path, opts);
  return {
    store,
    dir,
    path,
    cleanup() {
      try {
        store.close();
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestLogger extends Logger {
  readonly lines: { level: "info" | "warn" | "error" | "debug"; msg: string }[];
  of(level: "info" | "warn" | "error" | "debug"): string[];
}

export function testLogger(): TestLogger {
  const l: TestLogger = {
    lines: [],
    of: (level) => l.lines.filter((x) => x.level === level).map((x) => x.msg),
    info: (msg) => void l.lines.push({ level: "info", msg }),
    warn: (msg) => void l.lines.push({ level: "warn", msg }),
    error: (msg) => void l.lines.push({ level: "error", msg }),
    debug: (msg) => void l.lines.push({ level: "debug", msg }),
  };
  return l;
}

/** An image row pointing at fake paths (the fake FS/driver never reads them). */
export function sampleImage(name = "default"): ImageRecord {
  return {
    name,
    dir: `/img/${name}`,
    kernelPath: `/img/${name}/vmlinuz`,
    initrdPath: `/img/${name}/initrd.img`,
    rootfsPath: `/img/${name}/rootfs.ext4`,
    kernelVersion: "6.1.0-test",
    sizeBytes: 1,
    createdAt: "2026-01-01T00:00:00.000Z",
    source: "imported",
  };
}

/** A VM record with deterministic paths under vmsDir. */
export function sampleVM(over: { id?: string; name?: string; state?: VMRecord["runtime"]["state"]; vmsDir?: string; driver?: string; sshPort?: number; net?: string; storage?: string } = {}): VMRecord {
  const id = over.id ?? "vm0001";
  const vmDir = join(over.vmsDir ?? "/state/vms", id);
  return {
    id,
    name: over.name ?? "demo",
    spec: { image: "default", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: over.driver ?? "fake", net: over.net ?? "user", storage: over.storage ?? "copy", egress: "none" },
    runtime: {
      state: over.state ?? "created",
      guestIP: "",
      apiSockPath: join(vmDir, "api.sock"),
      vsockPath: "",
      vsockCID: 0,
      logPath: join(vmDir, "serial.log"),
      metricsPath: "",
      dnsName: `${over.name ?? "demo"}.banger`,
      vmDir,
      systemOverlay: "",
      workDiskPath: "",
      lastError: "",
      sshHost: "",
      sshPort: over.sshPort ?? 0,
    },
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:00.000Z",
  };
}

/** Await a promise that must reject; returns its error. */
export async function caught(p: Promise<unknown>): Promise<BangerError> {
  try {
    await p;
  } catch (e) {
    return e as BangerError;
  }
  throw new Error("expected a rejection");
}

/**
 * Providers named like the built-ins but doing nothing ("copy" storage, "user"
 * and "tap" networks), for engines whose tests need a VM to choose some;
 * `storage`/`net` list other names to register instead.
 */
export function testProviders(o: { storage?: string[]; net?: string[] } = {}): Providers {
  const p = new Providers();
  for (const name of o.storage ?? ["copy"]) p.add("storage", "test", { name });
  for (const name of o.net ?? ["user", "tap"]) p.add("net", "test", { name });
  return p;
}

/**
 * An Engine over fakes and a real temp SQLite store with a "default" image.
 * `make()` builds another Engine on the same store/host/driver: what a
 * daemon restart looks like. The caller cleans up `ts`. Its providers are
 * testProviders(fakeProviders): a test loading a real provider's plugin
 * (through setupPlugins with `providers`) leaves that name out.
 */
export function engineWorld(opts: { paths: BangerPaths; newId: () => string; stopTimeoutMs?: number; dropConnection?: (vmId: string) => void; fakeProviders?: { storage?: string[]; net?: string[] }; defaultEgress?: string }) {
  const host = fakeHost();
  const driver = fakeDriver(host.procs);
  const ts = testStore();
  ts.store.upsertImage(sampleImage("default"));
  const hooks = new HookEngine();
  const providers = testProviders(opts.fakeProviders);
  const log = testLogger();
  const make = () =>
    new Engine({
      store: ts.store,
      host,
      hooks,
      providers,
      drivers: new Map([[driver.name, driver]]),
      paths: opts.paths,
      log,
      defaultDriver: driver.name,
      newId: opts.newId,
      stopTimeoutMs: opts.stopTimeoutMs,
      dropConnection: opts.dropConnection,
      defaultEgress: opts.defaultEgress,
    });
  /** Plugins set up on this world's hooks, host and providers (no drivers of their own), reading the test store unless `store` says otherwise. */
  const load = (plugins: { plugin: BangerPlugin; source: string }[], store: Partial<LoaderDeps["store"]> = {}) =>
    setupPlugins(plugins, {
      hooks,
      host,
      paths: opts.paths,
      log,
      drivers: new Map(),
      providers,
      store: { listVMs: () => ts.store.listVMs(), getImage: (x) => ts.store.getImage(x), leases: ts.store.leases, ...store },
    });
  return { host, driver, ts, hooks, providers, log, make, load };
}

/** The store's SQLite handle, for tests that check what is (not) in the file; product code goes through typed methods. */
export function rawDb(store: Store): Database {
  return (store as unknown as { db: Database }).db;
}

// ---------------------------------------------------------------- operation

export interface RecordingOp extends Operation {
  /** Labels deferred so far, in order. */
  readonly deferred: string[];
  readonly progressed: string[];
  /** What the operation runner does on failure: every undo once, last first; returns the failures as `label: message`. */
  unwind(): Promise<string[]>;
}

/** An Operation for calling one hook handler directly (no runner around it): records what is deferred. */
export function recordingOp(o: { name?: string; vm?: VMRecord; host?: Host; log?: Logger } = {}): RecordingOp {
  const stack: { label: string; fn: Undo }[] = [];
  const op: RecordingOp = {
    name: o.name ?? "test op",
    vm: o.vm,
    host: o.host ?? fakeHost(),
    log: o.log ?? testLogger(),
    signal: new AbortController().signal,
    deferred: [],
    progressed: [],
    progress: (m) => void op.progressed.push(m),
    defer(label, fn) {
      op.deferred.push(label);
      stack.push({ label, fn });
    },
    async unwind() {
      const failures: string[] = [];
      for (let it = stack.pop(); it; it = stack.pop()) {
        try {
          await it.fn();
        } catch (e) {
          failures.push(`${it.label}: ${(e as Error).message}`);
        }
      }
      return failures;
    },
  };
  return op;
}
