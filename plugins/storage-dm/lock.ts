import { BangerError } from "../../src/plugin-api.ts";
import type { Clock, FileLocks } from "../../src/plugin-api.ts";

export interface GlobalLockOptions {
  locks: FileLocks;
  clock: Clock;
  /** The lock file, shared by every banger process on this BANGER_HOME (daemon and CLI tools). */
  path: string;
  timeoutMs?: number;
  pollMs?: number;
}

/**
 * The one lock around all loop-device and device-mapper work: `losetup
 * --find` picks the first free loop and dm names are global, so two
 * sequences that interleave can grab each other's devices.
 *
 * Lock order (outermost first), never taken the other way round:
 *   1. the engine's per-VM lock (HandleCache.withLock, held by the caller)
 *   2. this in-process mutex (queues this process's callers in arrival order)
 *   3. the flock on `path` (excludes other processes)
 * Nothing run under this lock may take a VM lock or run hooks.
 */
export class GlobalLock {
  private tail: Promise<void> = Promise.resolve();
  private readonly timeoutMs: number;
  private readonly pollMs: number;

  constructor(private readonly o: GlobalLockOptions) {
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.pollMs = o.pollMs ?? 50;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((r) => (done = r));
    await prev;
    try {
      const unlock = await this._lockFile();
      try {
        return await fn();
      } finally {
        unlock();
      }
    } finally {
      done();
    }
  }

  // polls instead of a blocking flock, which would freeze the daemon's event loop while another process holds it
  private async _lockFile(): Promise<() => void> {
    const deadline = this.o.clock.now().getTime() + this.timeoutMs;
    for (;;) {
      const release = this.o.locks.tryLock(this.o.path);
      if (release) return release;
      if (this.o.clock.now().getTime() >= deadline) {
        throw new BangerError("E_TIMEOUT", `another process has held ${this.o.path} for ${this.timeoutMs / 1000} s (loop/device-mapper work); try again`);
      }
      await this.o.clock.sleep(this.pollMs);
    }
  }
}
