/**
 * The only door to the host. Everything with a side effect (processes,
 * files, SSH, time) goes through these interfaces so tests can pass fakes
 * that record what was asked.
 */

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Uint8Array;
  timeoutMs?: number;
  /** Throw a BangerError when the exit code is not 0 (default true). */
  check?: boolean;
  /** Called with each line of stderr/stdout as it arrives (progress). */
  onLine?: (line: string) => void;
  /**
   * The person waiting went away: stop the tool. With a signal the tool runs
   * in a process group of its own, which gets SIGINT when it aborts (what
   * Ctrl-C in a terminal sends: tools that clean up on it, as mmdebstrap
   * unmounting what it mounted, do) and SIGKILL `abortGraceMs` later (default
   * 10 s) if any of it is left. run() then rejects with E_CANCELLED.
   */
  signal?: AbortSignal;
  abortGraceMs?: number;
}

export interface Exec {
  run(cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Start a process in its own session (setsid), detached from us; returns its pid. */
  spawnDetached(cmd: string, args: string[], opts?: { cwd?: string; env?: Record<string, string | undefined>; logPath?: string }): Promise<number>;
  /** Absolute path of a command on PATH, or null. */
  which(cmd: string): Promise<string | null>;
}

export interface ProcInfo {
  pid: number;
  startTime: number;
  cmdline: string[];
}

export interface Procs {
  /** /proc/<pid> info or null when there is no such process (zombies count as gone). */
  info(pid: number): Promise<ProcInfo | null>;
  /** All processes whose cmdline contains every one of the given strings. */
  find(...needles: string[]): Promise<ProcInfo[]>;
  kill(pid: number, signal: NodeJS.Signals | number): boolean;
}

export interface Clock {
  now(): Date;
  sleep(ms: number): Promise<void>;
  /** Call fn once after ms (a fake clock: when advanced past it); returns the cancel. */
  timer(ms: number, fn: () => void): () => void;
}

/** `length` bytes at `from` in one file, for `to` in another (FS.copyRanges). */
export interface ByteRange {
  from: number;
  to: number;
  length: number;
}

/** One entry of a dir, typed as lstat sees it: a symlink is a symlink, never what it points at. */
export interface DirEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "other";
}

/** What stat/lstat say about a path. */
export interface FileStat {
  type: DirEntry["type"] | "socket";
  /** Apparent size in bytes. */
  size: number;
  /** Bytes allocated on disk (st_blocks * 512): less than size for a sparse file. */
  allocated: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
}

export interface FS {
  readText(path: string): Promise<string | null>;
  /** A whole file's bytes; throws (ENOENT…) when it cannot be read. */
  readBytes(path: string): Promise<Uint8Array>;
  /** Up to `length` bytes from `offset` (fewer at the end of the file, none past it); throws when it cannot be read. */
  readRange(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** A file's bytes in chunks (a hash over a large image without holding it). */
  readStream(path: string, chunkBytes?: number): AsyncIterable<Uint8Array>;
  /** Create or replace a file in place (not atomic: for temps and files whose half-written state nobody reads). */
  writeFile(path: string, data: string | Uint8Array, mode?: number): Promise<void>;
  /** Append to a file (created with `mode` when missing): one write(2) with O_APPEND, so concurrent appenders' lines never interleave. */
  appendFile(path: string, data: string, mode?: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** link(2): a second name for the same file (same filesystem only: EXDEV otherwise; EEXIST when `to` exists). */
  link(from: string, to: string): Promise<void>;
  copyFile(from: string, to: string): Promise<void>;
  /**
   * Byte ranges of one file written over the same-sized ranges of another, in
   * place (no truncation: `to` must exist). Returns the bytes copied; a range
   * that ends early (past the end of `from`) fails the call.
   */
  copyRanges(from: string, to: string, ranges: readonly ByteRange[]): Promise<number>;
  /** Each piece of data written at its offset of a file, in place (no truncation; created, `mode`, when missing). */
  writeRanges(path: string, ranges: readonly { offset: number; data: Uint8Array }[], mode?: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** stat(2) (symlinks followed), or null when there is nothing there. */
  stat(path: string): Promise<FileStat | null>;
  /** lstat(2) (a symlink is a symlink), or null when there is nothing there. */
  lstat(path: string): Promise<FileStat | null>;
  /** readlink(2): what a symlink points to (for /proc's fd links, what the fd is), or null when it is not a symlink or not there. */
  readlink(path: string): Promise<string | null>;
  /** A new private dir named `prefix` + random characters (prefix is a path: `${tmpdir()}/banger-x-`). */
  mkdtemp(prefix: string): Promise<string>;
  /** The entries of a dir (symlinks not followed); [] when it does not exist. */
  list(dir: string): Promise<DirEntry[]>;
  /** Every path under a dir, relative to it, at any depth (readdir -R; symlinks not followed); [] when it does not exist. */
  listTree(dir: string): Promise<string[]>;
  /** temp file in the same dir + fsync + rename: readers see old or new, never half. */
  writeAtomic(path: string, data: string | Uint8Array, mode?: number): Promise<void>;
  exists(path: string): Promise<boolean>;
  mkdirp(path: string, mode?: number): Promise<void>;
  /** Remove a file or tree; a symlink is removed itself, never followed. */
  rmrf(path: string): Promise<void>;
  /** One end of a FIFO another process holds open both ways (QEMU's pipe chardev, see FifoEnd); throws when there is none. */
  openFifo(path: string, end: "read" | "write"): Promise<FifoEnd>;
}

/**
 * One end of a FIFO, opened non-blocking: reading returns what is there and
 * writing what fits, never waiting (a guest that stops reading or answering
 * must not stall the daemon); the caller polls.
 */
export interface FifoEnd {
  /** The bytes waiting (empty when there are none yet). */
  read(): Uint8Array;
  /** Write as much of `data` as fits now; returns how many bytes that was (0: the FIFO is full). */
  write(data: Uint8Array): number;
  close(): void;
}

export interface ExecStreamOptions {
  stdin?: AsyncIterable<Uint8Array> | Uint8Array | string;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
  pty?: { cols: number; rows: number; term?: string };
  signal?: AbortSignal;
  /**
   * Called once the command runs: while paused, its output is not read, so the
   * guest's writer blocks (over SSH the window fills; over the exec agent it
   * stops reading the command's pipes): a big download never piles up in our
   * memory when its reader is slower than the guest.
   */
  flow?: (ctl: { pause(): void; resume(): void }) => void;
  /**
   * Called once the command is sent, with a way to signal it while it runs: over the exec agent its whole
   * process group gets it, over SSH the server's signal request reaches the command (`vm exec`'s Ctrl-C).
   */
  onRunning?: (ctl: { signal(name: GuestSignal): void }) => void;
}

/** What a user may send a running command (`vm exec`'s Ctrl-C, `timeout`'s TERM, a closed terminal's HUP). */
export type GuestSignal = "INT" | "TERM" | "HUP";

/** One SSH connection to a guest. */
export interface GuestSSH {
  /** Run a command line (already quoted shell) and return its exit code. */
  exec(command: string, opts?: ExecStreamOptions): Promise<number>;
  /** Run a bash script (sent on stdin to `bash -s`); returns exit code, stdout and stderr. */
  runScript(script: string, opts?: { signal?: AbortSignal }): Promise<ExecResult>;
  /** Write a file on the guest (mode octal, e.g. 0o600). */
  upload(path: string, data: Uint8Array | string, mode?: number): Promise<void>;
  close(): void;
  readonly closed: boolean;
}

export interface SSHTarget {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  /** Pinned host public key in OpenSSH format ("ssh-ed25519 AAAA..."); no TOFU. */
  hostKey?: string;
  readyTimeoutMs?: number;
}

export interface SSHDialer {
  dial(target: SSHTarget): Promise<GuestSSH>;
}

/** Advisory file locks shared with other processes (flock). */
export interface FileLocks {
  /** Take an exclusive lock on `path` without waiting; a release function, or null when someone holds it. */
  tryLock(path: string): (() => void) | null;
}

export interface Host {
  exec: Exec;
  procs: Procs;
  clock: Clock;
  fs: FS;
  ssh: SSHDialer;
  /** Cross-process locks (loop/dm work). Optional so hand-built test hosts need not carry one; the real host always does. */
  locks?: FileLocks;
}
