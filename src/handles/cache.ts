import type { VMHandles } from "../shared/model.ts";

function clone(h: VMHandles): VMHandles {
  return { ...h, extra: { ...h.extra } };
}

/*
 * Lock order (acquire top to bottom; never wait for a higher one while holding a lower one):
 *
 * 1. The daemon lock: flock on $BANGER_HOME/daemon.lock (src/daemon/lock.ts), taken once at
 *    startup and held for the daemon's life. One daemon per home, so SQLite has one writer
 *    process and its busy timeout only covers a CLI reading the file.
 * 2. A VM's operation lock: HandleCache.withLock(vm.id) below, held by create (from the row
 *    insert), start, stop, delete, restart (stop then start, one at a time), reconcile and
 *    noticeExit. No operation holds two VM locks, so they cannot deadlock with each other;
 *    noticeExit (called from reads) skips a locked VM instead of queueing behind a boot.
 * 3. A session's send chain: SessionEngine._sendChains (src/sessions/engine.ts), per session,
 *    taken without any VM lock; sends and attach never take a VM lock.
 * 4. SQLite: bun:sqlite calls are synchronous on the daemon's one thread, so a statement or
 *    transaction never spans an await and cannot interleave with another request's.
 * 5. Plugin-local claims (net-user's reserved ports) are plain maps updated without an await.
 */

/**
 * In-memory handle cache. Reads and writes hand out copies so no caller can
 * mutate another's view; `withLock` serialises multi-step updates per VM
 * (async handlers interleave even on one thread).
 */
export class HandleCache {
  private readonly map = new Map<string, VMHandles>();
  private readonly locks = new Map<string, Promise<unknown>>();

  get(vmId: string): VMHandles | null {
    const h = this.map.get(vmId);
    return h ? clone(h) : null;
  }

  set(vmId: string, handles: VMHandles): void {
    this.map.set(vmId, clone(handles));
  }

  delete(vmId: string): void {
    this.map.delete(vmId);
  }

  ids(): string[] {
    return [...this.map.keys()];
  }

  /** Is an operation running (or queued) on this VM right now? */
  isLocked(vmId: string): boolean {
    return this.locks.has(vmId);
  }

  /** Run fn with exclusive access for this VM id; calls queue in arrival order. */
  async withLock<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chain = prev.then(() => mine);
    this.locks.set(vmId, chain);
    await prev.catch(() => {});
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(vmId) === chain) this.locks.delete(vmId);
    }
  }
}
