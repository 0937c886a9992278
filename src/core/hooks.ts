import type { GuestSSH } from "../host/types.ts";
import type { BootConfig } from "../vmm/driver.ts";
import type { GuestSession, ImageRecord, SnapshotRecord, VMHandles, VMRecord } from "../shared/model.ts";
import type { CheckedRecipe } from "../shared/image-recipe.ts";
import type { EgressPolicy } from "../shared/egress.ts";
import type { ProgressSink } from "./operation.ts";
import { BangerError, errorMessage, type ErrorCode } from "../shared/errors.ts";
import { labelledOperation, type Operation, type Undo } from "./operation.ts";

export type { Operation, ProgressSink, Undo } from "./operation.ts";

/**
 * How a clone's guest, still at its parent's network address, is reached and
 * moved to its own: its network provider fills it in vm:start:after (before
 * the ordinary handlers), the plugin that gives clones their identity uses it.
 */
export interface CloneNet {
  /** Where its SSH server answers meanwhile, instead of runtime.sshHost:sshPort. */
  dialVia?: { host: string; port: number };
  /** Run in the guest (bash) over that connection, after the identity is given: re-addresses it. */
  guestScript?: string;
  /** Once that connection is closed, before the guest is dialled at its own address. */
  afterIdentity?: () => Promise<void>;
}

/**
 * Every hook, by name, with the payload its handlers receive. Names are
 * `noun:verb[:when]`; an unknown name is a type error and a runtime error.
 * A hook that is a step of an operation carries it as `op`: defer the undo
 * of what you make with `op.defer(label, fn)` right after making it (or
 * return the undo, which is deferred for you once the handler returns).
 */
export interface HookMap {
  /** A VM row exists and VMDir is made; allocate durable resources (ports, disks, keys). */
  /** `disksFrom`: the VM is a clone of that snapshot; vm:restore puts its disks in place next, so making the image's copy first is wasted work. */
  "vm:create": { vm: VMRecord; progress: ProgressSink; op: Operation; disksFrom?: SnapshotRecord };
  /**
   * Before the VMM process launches: fill the boot config, acquire transient handles (defer their teardown on `op`).
   * `restored`/`snapshot` as in vm:start:after: a clone (the snapshot is another VM's) runs on with that VM's network identity.
   */
  "vm:start:before": { vm: VMRecord; boot: BootConfig; handles: VMHandles; progress: ProgressSink; op: Operation; restored?: boolean; snapshot?: SnapshotRecord };
  /**
   * The VMM process runs: wait for the guest (e.g. SSH) before the VM counts as running. `restored`: it runs on from
   * `snapshot` instead of having booted; when the snapshot is another VM's, this VM is its clone and needs its own identity.
   */
  "vm:start:after": { vm: VMRecord; handles: VMHandles; progress: ProgressSink; signal: AbortSignal; op: Operation; restored?: boolean; snapshot?: SnapshotRecord; cloneNet?: CloneNet };
  /**
   * A snapshot `snapshotId` is about to be made and the VM still runs (`live`: its VMM process is up): prepare
   * whatever can be made before the freeze (the storage provider: the new overlays its disks switch to), and put
   * in `dir` (the snapshot's temp dir, as in vm:snapshot) what does not change at the freeze (the guest's keys).
   * `streamDisk` (a live VM whose VMM can): the VM's disk at `index` takes in every layer of its chain above
   * `base`, then reads through it directly (VMMDriver.streamDisk), the guest running on: how a long chain is shortened.
   */
  "vm:snapshot:before": { vm: VMRecord; dir: string; snapshotId: string; live: boolean; progress: ProgressSink; op: Operation; streamDisk?: (index: number, base: { path: string; name: string }) => Promise<void> };
  /**
   * A snapshot is being made: the VM's vCPUs stand still (or it is stopped). Copy what you own (disks) into
   * `dir`, a temp dir renamed into place only when the whole snapshot is made, and push each file's name to `disks`.
   * `switchDisk` (a live VM whose VMM can): the VM's disk at `index` (its place in BootConfig.disks) writes to
   * `overlay` from now on, a qcow2 made over the file it wrote until now, which becomes read-only.
   */
  "vm:snapshot": { vm: VMRecord; dir: string; disks: string[]; progress: ProgressSink; op: Operation; snapshotId: string; live: boolean; switchDisk?: (index: number, overlay: string) => Promise<void> };
  /** A rollback: the VM is stopped; put back your part of the snapshot (disks from `snapshot.dir`) before it starts again. */
  "vm:restore": { vm: VMRecord; snapshot: SnapshotRecord; progress: ProgressSink; op: Operation };
  /**
   * A paused VM runs again (`vm resume`): its guest's clock stood still for `pausedMs` (null: not known, a daemon
   * restart came between). Bring the guest up to date over `guest()` (its pooled connection). A failure is logged;
   * the resume stands.
   */
  "vm:resume": { vm: VMRecord; pausedMs: number | null; guest: () => Promise<GuestSSH> };
  /** `snapshot rm`: push the names of the VMs that still run on the snapshot's disks (overlays backed by them); the disks then stay until the last of them is deleted. */
  "snapshot:remove": { snapshot: SnapshotRecord; users: string[] };
  "vm:stop:before": { vm: VMRecord; handles: VMHandles };
  "vm:stop:after": { vm: VMRecord };
  /**
   * The VM process is gone after a stop, or found dead (reconcile, a crash cut a start short): tear down the
   * kernel state the handles name (taps, loops, dm). Not run after a start that failed in this daemon: there
   * the start's own undos (op.defer) tear down what it made, once.
   */
  "vm:cleanup": { vm: VMRecord; handles: VMHandles };
  "vm:delete": { vm: VMRecord };
  /**
   * A policy source: the VM's egress policy is being worked out (at start, on `banger vm egress VM LIST`,
   * after a daemon restart). `add("pkgs.example.org")` (any `--egress` list entry) adds to what it allows;
   * `policy` is what it is so far. Runs before every `vm:egress:apply`.
   */
  "vm:egress": { vm: VMRecord; policy: EgressPolicy; add(entry: string): void };
  /**
   * Enforce `policy` on a running VM (its network provider's job): once right after the VMM launched, on each
   * live change (the next connection must obey it) and after a daemon restart re-adopted the VM.
   */
  "vm:egress:apply": { vm: VMRecord; policy: EgressPolicy; handles: VMHandles };
  /**
   * Startup reconcile: re-find this plugin's handles for a VM the store says is running. `discard(reason)`: a live VM
   * that must not run on as it is (a clone whose start was cut short before it had its own network address) is
   * killed and demoted, with its cleanup, instead of kept.
   */
  "vm:reconcile": { vm: VMRecord; handles: VMHandles; alive: boolean; discard?: (reason: string) => void };
  /** A session's process runs in the guest (fired by the session engine once it launched). */
  "session:start": { vm: VMRecord; session: GuestSession };
  /** A session ended (stop, kill, rm --force, its process exited, its VM went away): fired once per session. */
  "session:stop": { vm: VMRecord; session: GuestSession };
  /** The repo is in place at guestPath (not yet read-only): add steps over `guest`; a throw puts the previous tree back. */
  "workspace:prepare": { vm: VMRecord; sourcePath: string; guestPath: string; readOnly: boolean; guest: GuestSSH; op: Operation };
  /** `vm commit`: write the (stopped) VM's system disk as a plain ext4 image file at `out` (storage providers). */
  "vm:commit": { vm: VMRecord; out: string; progress: ProgressSink; op: Operation };
  /**
   * Build an image into `dir` (a temp dir renamed into place on success). With `recipe`, the image is
   * derived from `base` (an image that exists): the recipe is checked and `base` is its `from`.
   */
  "image:build": {
    name: string;
    dir: string;
    force: boolean;
    progress: ProgressSink;
    result: { built: boolean };
    op: Operation;
    recipe?: CheckedRecipe;
    base?: ImageRecord;
    /** `vm commit`: `dir` already holds the VM's rootfs.ext4; start from it (not the base's) and scrub what belongs to that VM. */
    commitOf?: string;
    /** `image import --oci`: an OCI layout dir or archive to import, booted with `base`'s kernel and initrd. */
    oci?: string;
  };
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
  "vm:egress",
  "vm:egress:apply",
  "vm:snapshot:before",
  "vm:snapshot",
  "vm:restore",
  "vm:resume",
  "snapshot:remove",
  "session:start",
  "session:stop",
  "workspace:prepare",
  "vm:commit",
  "image:build",
];

/** The hooks whose payload names a VM: the ones a storage or network provider may handle. */
export const VM_HOOK_NAMES: readonly HookName[] = HOOK_NAMES.filter((n) => n !== "image:build");

export interface HookOptions {
  /** "pre" handlers run before all normal ones, "post" after; registration order within a group. */
  order?: "pre" | "normal" | "post";
}

/** The kinds of provider a VM chooses one of (src/core/providers.ts); each names a VMSpec field holding the chosen one's name. */
export type ProviderKind = "storage" | "net";

interface Registered {
  plugin: string;
  order: number;
  seq: number;
  /** A provider's handler: runs only when the payload's VM chose this provider (vm.spec[kind] === name). */
  claim?: { kind: ProviderKind; name: string };
  handler: (p: unknown) => void | Undo | Promise<void | Undo>;
}

// providers' handlers sit between "pre" and the ordinary ones: a VM's disks, then its network, before anything that uses them
const ORDER = { pre: 0, storage: 1, net: 2, normal: 3, post: 4 } as const;

/** Codes that say the user's input cannot be done (a bad value, a name or port taken): their messages stand alone. */
const _USERS_INPUT: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["E_USAGE", "E_BAD_NAME", "E_BAD_REQUEST", "E_NAME_TAKEN", "E_PORT_IN_USE", "E_TOO_LARGE"]);

/**
 * Typed serial hook runner. Handlers run in order (pre; the VM's storage
 * provider's, then its network provider's; normal; post; then registration
 * order); the first throw stops the chain and is rethrown naming the plugin
 * and hook.
 */
export class HookEngine {
  private readonly handlers = new Map<HookName, Registered[]>();
  private seq = 0;
  /** Plugins whose errors are written for the user as they are (banger's built-ins): no "plugin:hook:" before them. */
  private readonly plain = new Set<string>();

  /** Report `plugin`'s BangerErrors (but internal ones) without its name and the hook's: they are already written for the user. */
  speaksForItself(plugin: string): void {
    this.plain.add(plugin);
  }

  hook<K extends HookName>(plugin: string, name: K, handler: HookHandler<K>, opts: HookOptions = {}): () => void {
    return this.add(plugin, name, handler, ORDER[opts.order ?? "normal"]);
  }

  /**
   * Register a provider's handler: it runs only for the VMs whose spec names
   * the provider (`vm.spec[kind] === name`), after "pre" handlers and before
   * ordinary ones. Only hooks whose payload has a VM take one.
   */
  hookFor<K extends HookName>(plugin: string, claim: { kind: ProviderKind; name: string }, name: K, handler: HookHandler<K>): () => void {
    if (HOOK_NAMES.includes(name) && !VM_HOOK_NAMES.includes(name)) {
      throw new BangerError("E_PLUGIN", `${plugin}: ${claim.kind} provider "${claim.name}" cannot handle "${name}" (it names no VM; provider hooks: ${VM_HOOK_NAMES.join(", ")})`);
    }
    return this.add(plugin, name, handler, ORDER[claim.kind], claim);
  }

  private add<K extends HookName>(plugin: string, name: K, handler: HookHandler<K>, order: number, claim?: Registered["claim"]): () => void {
    if (!HOOK_NAMES.includes(name)) {
      throw new BangerError("E_PLUGIN", `${plugin}: unknown hook "${String(name)}" (known: ${HOOK_NAMES.join(", ")})`);
    }
    const entry: Registered = { plugin, order, seq: this.seq++, claim, handler: handler as Registered["handler"] };
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

  /** The handlers for `name` that act on this payload: every ordinary one, and a provider's only for the VM that chose it. */
  private chain(name: HookName, payload: unknown): Registered[] {
    const vm = (payload as { vm?: VMRecord }).vm;
    return (this.handlers.get(name) ?? []).filter((h) => !h.claim || (vm !== undefined && vm.spec[h.claim.kind] === h.claim.name));
  }

  /**
   * Run every handler for `name`. When the payload carries an operation,
   * each handler sees it with its undo labels naming plugin and hook, and an
   * undo a handler returns is deferred on it.
   */
  async run<K extends HookName>(name: K, payload: HookMap[K]): Promise<void> {
    const op = (payload as { op?: Operation }).op;
    for (const h of this.chain(name, payload)) {
      const label = `${h.plugin}:${name}`;
      let result: void | Undo;
      try {
        result = await h.handler(op ? { ...payload, op: labelledOperation(op, label) } : payload);
      } catch (e) {
        if (e instanceof BangerError) {
          // a refusal of what the user asked is written for them: the hook's name would only be noise on their line
          const message = _USERS_INPUT.has(e.code) || (this.plain.has(h.plugin) && e.code !== "E_INTERNAL") ? e.message : `${h.plugin}:${name}: ${e.message}`;
          throw new BangerError(e.code, message, { cause: e, undoFailures: e.undoFailures });
        }
        throw new BangerError("E_PLUGIN", `${h.plugin}:${name}: ${errorMessage(e)}`, { cause: e });
      }
      if (typeof result === "function") op?.defer(label, result);
    }
  }

  /** Like run, but every handler runs even if one fails (teardown paths); errors are collected. */
  async runAll<K extends HookName>(name: K, payload: HookMap[K]): Promise<Error[]> {
    const failures: Error[] = [];
    for (const h of this.chain(name, payload)) {
      try {
        await h.handler(payload);
      } catch (e) {
        failures.push(new Error(`${h.plugin}:${name}: ${errorMessage(e)}`, { cause: e }));
      }
    }
    return failures;
  }
}
