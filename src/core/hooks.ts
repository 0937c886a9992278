import type { GuestSSH } from "../host/types.ts";
import type { BootConfig } from "../vmm/driver.ts";
import type { GuestSession, VMHandles, VMRecord } from "../shared/model.ts";
import { BangerError, errorMessage } from "../shared/errors.ts";

/** Something a handler made that must be unmade if a later step fails. */
export type Undo = () => void | Promise<void>;

export interface ProgressSink {
  (message: string): void;
}

/**
 * Every hook, by name, with the payload its handlers receive. Names are
 * `noun:verb[:when]`; an unknown name is a type error and a runtime error.
 */
export interface HookMap {
  /** A VM row exists and VMDir is made; allocate durable resources (ports, disks, keys). */
  "vm:create": { vm: VMRecord; progress: ProgressSink };
  /** Before the VMM process launches: fill the boot config, acquire transient handles. */
  "vm:start:before": { vm: VMRecord; boot: BootConfig; handles: VMHandles; progress: ProgressSink };
  /** The VMM process runs: wait for the guest (e.g. SSH) before the VM counts as running. */
  "vm:start:after": { vm: VMRecord; handles: VMHandles; progress: ProgressSink; signal: AbortSignal };
  "vm:stop:before": { vm: VMRecord; handles: VMHandles };
  "vm:stop:after": { vm: VMRecord };
  /** The VM process is gone: tear down the kernel state the handles name (taps, loops, dm). */
  "vm:cleanup": { vm: VMRecord; handles: VMHandles };
  "vm:delete": { vm: VMRecord };
  /** Startup reconcile: re-find this plugin's handles for a VM the store says is running. */
  "vm:reconcile": { vm: VMRecord; handles: VMHandles; alive: boolean };
  "session:start": { vm: VMRecord; session: GuestSession };
  "session:stop": { vm: VMRecord; session: GuestSession };
  /** The repo is in place at guestPath (not yet read-only): add steps over `guest`; a throw puts the previous tree back. */
  "workspace:prepare": { vm: VMRecord; sourcePath: string; guestPath: string; readOnly: boolean; guest: GuestSSH };
  /** Build an image into `dir` (a temp dir renamed into place on success). */
  "image:build": { name: string; dir: string; force: boolean; progress: ProgressSink; result: { built: boolean } };
}

export type HookName = keyof HookMap;
export type HookHandler<K extends HookName> = (payload: HookMap[K]) => void | Undo | Promise<void | Undo>;

export const HOOK_NAMES: readonly HookName[] = [
  "vm:create",
  "vm:start:before",
  "vm:start:after",
  "vm:stop:before",
  "vm:stop:after",
  "vm:cleanup",
  "vm:delete",
  "vm:reconcile",
  "session:start",
  "session:stop",
  "workspace:prepare",
  "image:build",
];

export interface HookOptions {
  /** "pre" handlers run before all normal ones, "post" after; registration order within a group. */
  order?: "pre" | "normal" | "post";
}

interface Registered {
  plugin: string;
  order: number;
  seq: number;
  handler: (p: unknown) => void | Undo | Promise<void | Undo>;
}

const ORDER = { pre: 0, normal: 1, post: 2 } as const;

/** LIFO stack of undos for one operation; runs each once. */
export class UndoStack {
  private readonly items: { label: string; fn: Undo }[] = [];
  defer(label: string, fn: Undo): void {
    this.items.push({ label, fn });
  }
  get size(): number {
    return this.items.length;
  }
  /** Forget the undos (the operation succeeded). */
  commit(): void {
    this.items.length = 0;
  }
  /**
   * Run the undos in reverse order (so changes unwind like defer). Never
   * throws: failures are returned so the caller can attach them to the
   * original error instead of masking it.
   */
  async unwind(): Promise<Error[]> {
    const failures: Error[] = [];
    while (this.items.length > 0) {
      const { label, fn } = this.items.pop()!;
      try {
        await fn();
      } catch (e) {
        failures.push(new Error(`undo ${label}: ${errorMessage(e)}`, { cause: e }));
      }
    }
    return failures;
  }
}

/**
 * Typed serial hook runner. Handlers run in order (pre, normal, post; then
 * registration order); the first throw stops the chain and is rethrown
 * naming the plugin and hook.
 */
export class HookEngine {
  private readonly handlers = new Map<HookName, Registered[]>();
  private seq = 0;

  hook<K extends HookName>(plugin: string, name: K, handler: HookHandler<K>, opts: HookOptions = {}): () => void {
    if (!HOOK_NAMES.includes(name)) {
      throw new BangerError("E_PLUGIN", `${plugin}: unknown hook "${String(name)}" (known: ${HOOK_NAMES.join(", ")})`);
    }
    const entry: Registered = {
      plugin,
      order: ORDER[opts.order ?? "normal"],
      seq: this.seq++,
      handler: handler as Registered["handler"],
    };
    const list = this.handlers.get(name) ?? [];
    list.push(entry);
    list.sort((a, b) => a.order - b.order || a.seq - b.seq);
    this.handlers.set(name, list);
    return () => {
      const current = this.handlers.get(name) ?? [];
      const i = current.indexOf(entry);
      if (i >= 0) current.splice(i, 1);
    };
  }

  count(name: HookName): number {
    return this.handlers.get(name)?.length ?? 0;
  }

  /**
   * Run every handler for `name`. Undos returned by handlers are pushed on
   * `undo` (when given) as they are acquired.
   */
  async run<K extends HookName>(name: K, payload: HookMap[K], undo?: UndoStack): Promise<void> {
    for (const h of [...(this.handlers.get(name) ?? [])]) {
      let result: void | Undo;
      try {
        result = await h.handler(payload);
      } catch (e) {
        if (e instanceof BangerError) {
          throw new BangerError(e.code, `${h.plugin}:${name}: ${e.message}`, { cause: e });
        }
        throw new BangerError("E_PLUGIN", `${h.plugin}:${name}: ${errorMessage(e)}`, { cause: e });
      }
      if (typeof result === "function") {
        if (undo) undo.defer(`${h.plugin}:${name}`, result);
      }
    }
  }

  /** Like run, but every handler runs even if one fails (teardown paths); errors are collected. */
  async runAll<K extends HookName>(name: K, payload: HookMap[K]): Promise<Error[]> {
    const failures: Error[] = [];
    for (const h of [...(this.handlers.get(name) ?? [])]) {
      try {
        await h.handler(payload);
      } catch (e) {
        failures.push(new Error(`${h.plugin}:${name}: ${errorMessage(e)}`, { cause: e }));
      }
    }
    return failures;
  }
}
