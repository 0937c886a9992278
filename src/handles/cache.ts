import type { VMHandles } from "../core/model.ts";

function clone(h: VMHandles): VMHandles {
  return { ...h, extra: { ...h.extra } };
}

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
