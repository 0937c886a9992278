import type { Clock } from "../host/types.ts";
import type { DeadlineRow, Store } from "../store/store.ts";
import { BangerError, errorMessage } from "../shared/errors.ts";
import { formatDuration, MAX_DURATION_MS } from "../shared/duration.ts";
import type { TTLAction, VMLifetime, VMRecord, VMState } from "../shared/model.ts";
import type { HookEngine } from "./hooks.ts";
import type { Logger } from "./plugin.ts";

/** How long a deadline whose stop or delete failed waits before it is tried again. */
const RETRY_MS = 30_000;

/** A lifetime request's numbers, checked: a duration in ms (1 ms … MAX_DURATION_MS) or an action name. */
export function checkDurationMs(v: number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 0) {
    throw new BangerError("E_BAD_REQUEST", `${what} must be a whole number of milliseconds from 0 (none) to ${MAX_DURATION_MS}, got ${JSON.stringify(v)}`);
  }
  // in the units people typed (`vm ttl box 400d`), the milliseconds for an API client
  if (v > MAX_DURATION_MS) throw new BangerError("E_BAD_REQUEST", `${what} is at most ${formatDuration(MAX_DURATION_MS)} (${MAX_DURATION_MS} ms), got ${formatDuration(v)}`);
  return v;
}

export function checkTTLAction(v: string | undefined, what = "ttl action"): TTLAction | undefined {
  if (v === undefined || v === "delete" || v === "stop") return v;
  throw new BangerError("E_BAD_REQUEST", `${what} must be "delete" or "stop", got ${JSON.stringify(v).slice(0, 80)}`);
}

/** What a VM's lifetime may be given: a TTL and its action, an idle timeout and its action. */
export interface LifetimeRequest {
  ttlMs?: number;
  ttlAction?: TTLAction;
  idleTimeoutMs?: number;
  idleAction?: TTLAction;
}

/** The lifetime a new VM starts with. */
export function initialLifetime(now: Date, o: LifetimeRequest): VMLifetime {
  const ttl = checkDurationMs(o.ttlMs, "ttl") ?? 0;
  const idle = checkDurationMs(o.idleTimeoutMs, "idle timeout") ?? 0;
  return {
    expiresAt: ttl ? new Date(now.getTime() + ttl).toISOString() : "",
    ttlAction: checkTTLAction(o.ttlAction) ?? "delete",
    idleTimeoutMs: idle,
    idleAction: checkTTLAction(o.idleAction, "idle action") ?? "stop",
    lastActiveAt: idle ? now.toISOString() : "",
    idleDeadline: idle ? new Date(now.getTime() + idle).toISOString() : "",
  };
}

export interface LifetimeDeps {
  store: Pick<Store, "getVM" | "setExpiry" | "setIdleTimeout" | "touchVM" | "listDeadlines">;
  clock: Clock;
  log: Logger;
  /** The normal operations (hooks, undo, leases): the scheduler never tears a VM down itself. */
  /** `why`: what a command the stop cuts says ("its ttl expired"). */
  stop(id: string, why: string): Promise<unknown>;
  delete(id: string, why: string): Promise<unknown>;
  /** Is an operation (create, start, restore, stop…) at work on the VM (its lock held)? An idle deletion waits for it. */
  inOperation?(id: string): boolean;
  retryMs?: number;
}

type _Due = { row: DeadlineRow; kind: "ttl" | "idle"; at: number };

/** How often an idle deletion that fell due mid-operation looks again (see recheckAt). */
const _RECHECK_MS = 5000;

/** The states no operation is in the middle of: an idle deletion may fire in them. */
const _SETTLED = new Set<VMState>(["created", "running", "paused", "stopped", "error"]);

/**
 * Fires VM deadlines: a TTL (delete, or stop) and an idle timeout (stop, or delete).
 * The deadlines live in the store as absolute times; this keeps one timer,
 * armed for the earliest of them, and re-arms whenever one may have moved.
 */
export class Lifetimes {
  private cancel: (() => void) | null = null;
  private armedFor = Number.POSITIVE_INFINITY;
  /** Requests in flight per VM id: a VM someone is using is never idle. */
  private readonly busyCount = new Map<string, number>();
  /** A deadline whose firing failed is not retried before this time (ms), so a broken VM cannot spin the loop. */
  private readonly retryAfter = new Map<string, number>();
  private firing: Promise<void> | null = null;
  private fireAgain = false;
  private stopped = false;

  constructor(private readonly d: LifetimeDeps) {}

  /**
   * The hooks that move deadlines: a new VM (its TTL), the end of a create, a clone's restore or a start (idleness
   * counts from each), a stop (a stopping idle timeout has no deadline while stopped).
   */
  hookInto(hooks: HookEngine): void {
    // idleness counts from the end of a create or a clone's restore, not from its start: a long disk copy is no idleness
    hooks.hook("lifetimes", "vm:create", ({ vm }) => this.touch(vm.id), { order: "post" });
    hooks.hook("lifetimes", "vm:create", () => this.rearm());
    hooks.hook("lifetimes", "vm:restore", ({ vm }) => this.touch(vm.id), { order: "post" });
    hooks.hook(
      "lifetimes",
      "vm:start:after",
      ({ vm }) => {
        this.touch(vm.id);
        // the start answers with this record: show the idle clock it restarted
        vm.lifetime = this.d.store.getVM(vm.id)?.lifetime ?? vm.lifetime;
      },
      { order: "post" },
    );
    hooks.hook("lifetimes", "vm:stop:after", () => this.rearm());
  }

  /** At daemon start: fire what fell due while no daemon ran, then keep the timer. */
  start(): Promise<void> {
    return this.fireDue();
  }

  /** Stop the timer (daemon shutdown). */
  close(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = null;
  }

  /** When the timer fires next (ms since the epoch; Infinity: no deadline). For tests and logs. */
  get nextAt(): number {
    return this.armedFor;
  }

  /**
   * Set a VM's TTL from now (ttlMs 0: none) and/or its idle timeout (0: none), and what each does; undefined leaves
   * that one as it is (an action alone keeps its timeout and restarts the idle clock).
   */
  set(vm: VMRecord, o: LifetimeRequest): void {
    const ttlMs = checkDurationMs(o.ttlMs, "ttl");
    // a TTL changed keeps its action; one cleared (or gone: spent) leaves none behind, so the next is the default's
    const running = ttlMs !== 0 && vm.lifetime?.expiresAt ? vm.lifetime.ttlAction : undefined;
    const action = checkTTLAction(o.ttlAction) ?? running ?? "delete";
    const idleAction = checkTTLAction(o.idleAction, "idle action");
    const idle = checkDurationMs(o.idleTimeoutMs, "idle timeout") ?? (idleAction !== undefined ? (vm.lifetime?.idleTimeoutMs ?? 0) : undefined);
    const now = this.d.clock.now();
    if (ttlMs !== undefined || o.ttlAction !== undefined) {
      const expiresAt = ttlMs === undefined ? (vm.lifetime?.expiresAt ?? "") : ttlMs ? new Date(now.getTime() + ttlMs).toISOString() : "";
      this.d.store.setExpiry(vm.id, expiresAt, action);
      this.d.log.info(`lifetime: vm ${vm.name} ${expiresAt ? `expires at ${expiresAt} (then ${action})` : "has no ttl"}`);
    }
    if (idle !== undefined) {
      const then = idleAction ?? vm.lifetime?.idleAction ?? "stop";
      this.d.store.setIdleTimeout(vm.id, idle, then, now.toISOString());
      this.d.log.info(`lifetime: vm ${vm.name} ${idle ? `${then === "delete" ? "is deleted" : "stops"} after ${formatDuration(idle)} idle` : "has no idle timeout"}`);
    }
    this.retryAfter.delete(vm.id);
    this.rearm();
  }

  /**
   * A request that counts as activity on a VM (exec, ssh, session, workspace)
   * begins: the VM is not idle until the returned end() is called, and its
   * idle clock restarts at both ends.
   */
  busy(idOrName: string): () => void {
    const vm = this.d.store.getVM(idOrName);
    if (!vm) return () => {};
    const id = vm.id;
    this.busyCount.set(id, (this.busyCount.get(id) ?? 0) + 1);
    this.touch(id);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.busyCount.get(id) ?? 1) - 1;
      if (n > 0) this.busyCount.set(id, n);
      else this.busyCount.delete(id);
      this.touch(id);
    };
  }

  /** How many requests that count as use are open on this VM now (by id). */
  requestsOpen(id: string): number {
    return this.busyCount.get(id) ?? 0;
  }

  /** Restart a VM's idle clock (no write for a VM without an idle timeout). */
  touch(id: string): void {
    // a read first: most VMs have no idle timeout, and an UPDATE takes SQLite's write lock even when it matches nothing
    if (!this.d.store.getVM(id)?.lifetime?.idleTimeoutMs) return;
    if (this.d.store.touchVM(id, this.d.clock.now().toISOString())) this.rearm();
  }

  /** Arm the one timer for the earliest deadline. */
  rearm(): void {
    if (this.stopped) return;
    const rows = this.d.store.listDeadlines();
    const next = Math.min(...this.deadlines(rows).map((x) => x.at), this.recheckAt(rows));
    if (next === this.armedFor && this.cancel) return;
    this.cancel?.();
    this.cancel = null;
    this.armedFor = next;
    if (next === Number.POSITIVE_INFINITY) return;
    this.cancel = this.d.clock.timer(next - this.d.clock.now().getTime(), () => {
      this.cancel = null;
      this.armedFor = Number.POSITIVE_INFINITY;
      this.fireDue().catch((e: unknown) => this.d.log.error(`lifetime: ${errorMessage(e)}`));
    });
  }

  /**
   * Every deadline that applies now: a TTL always; an idle deadline for a VM nobody is using that is running or, when
   * the idle timeout deletes, in any settled state (a `vm run --rm` whose client died while its VM booted, stopped or
   * failed to start is deleted too), never in the middle of an operation (a long cold boot is not idleness).
   */
  private deadlines(rows: DeadlineRow[] = this.d.store.listDeadlines()): _Due[] {
    const out: _Due[] = [];
    for (const row of rows) {
      const l = row.lifetime;
      const notBefore = this.retryAfter.get(row.id) ?? 0;
      if (l.expiresAt) out.push({ row, kind: "ttl", at: Math.max(Date.parse(l.expiresAt), notBefore) });
      const idleApplies = row.state === "running" || (l.idleAction === "delete" && this._settled(row));
      if (l.idleDeadline && idleApplies && !this.busyCount.has(row.id)) out.push({ row, kind: "idle", at: Math.max(Date.parse(l.idleDeadline), notBefore) });
    }
    return out;
  }

  /**
   * When to look again at an idle deletion that waits for an operation to end (its VM mid-start, say): no event says
   * when a start that failed leaves it settled, so it is looked at every _RECHECK_MS once due (Infinity: none waits).
   */
  private recheckAt(rows: DeadlineRow[]): number {
    const now = this.d.clock.now().getTime();
    let at = Number.POSITIVE_INFINITY;
    for (const row of rows) {
      const l = row.lifetime;
      if (l.idleAction !== "delete" || !l.idleDeadline || this._settled(row) || this.busyCount.has(row.id)) continue;
      at = Math.min(at, Math.max(Date.parse(l.idleDeadline), now + _RECHECK_MS));
    }
    return at;
  }

  /** No operation is at work on the VM: its state is a settled one and its lock is free. */
  private _settled(row: DeadlineRow): boolean {
    return _SETTLED.has(row.state) && !this.d.inOperation?.(row.id);
  }

  /** Fire every deadline that is due, one VM at a time, then re-arm; a call while firing runs once more after it. */
  private fireDue(): Promise<void> {
    if (this.firing) {
      this.fireAgain = true;
      return this.firing;
    }
    this.firing = (async () => {
      do {
        this.fireAgain = false;
        const now = this.d.clock.now().getTime();
        const due = this.deadlines().filter((x) => x.at <= now);
        const done = new Set<string>();
        for (const x of due) {
          if (this.stopped) return;
          if (done.has(x.row.id)) continue; // a TTL and an idle deadline due together: the TTL wins (it comes first)
          done.add(x.row.id);
          await this.fire(x);
        }
      } while (this.fireAgain && !this.stopped);
    })().finally(() => {
      this.firing = null;
      this.rearm();
    });
    return this.firing;
  }

  private async fire({ row, kind }: _Due): Promise<void> {
    // an earlier firing may have taken seconds: the VM may have been used, extended or deleted meanwhile
    const fresh = this.deadlines().find((x) => x.row.id === row.id && x.kind === kind);
    if (!fresh || fresh.at > this.d.clock.now().getTime()) return;
    const l = fresh.row.lifetime;
    const what = kind === "ttl" ? `ttl expired at ${l.expiresAt}` : `idle since ${l.lastActiveAt} (timeout ${formatDuration(l.idleTimeoutMs)})`;
    const action = kind === "ttl" ? l.ttlAction : l.idleAction;
    this.d.log.info(`lifetime: vm ${row.name}: ${what}: ${action === "delete" ? "deleting" : "stopping"} it`);
    const why = kind === "ttl" ? "its ttl expired" : `it was idle for ${formatDuration(l.idleTimeoutMs)}`;
    try {
      if (action === "delete") {
        await this.d.delete(row.id, `${why} (deleted)`);
      } else {
        await this.d.stop(row.id, why);
        // only after the stop: a crash before this line stops it again, rather than never
        if (kind === "ttl") this.d.store.setExpiry(row.id, "", l.ttlAction);
      }
      this.retryAfter.delete(row.id);
      this.d.log.info(`lifetime: vm ${row.name} ${action === "delete" ? "deleted" : "stopped"}`);
    } catch (e) {
      if (e instanceof BangerError && e.code === "E_VM_NOT_FOUND") return; // deleted meanwhile: nothing left to fire
      const retry = this.d.retryMs ?? RETRY_MS;
      this.retryAfter.set(row.id, this.d.clock.now().getTime() + retry);
      this.d.log.warn(`lifetime: vm ${row.name}: ${action} failed (trying again in ${formatDuration(retry)}): ${errorMessage(e)}`);
    }
  }
}
