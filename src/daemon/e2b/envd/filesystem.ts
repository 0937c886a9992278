import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { EntryInfoSchema, EventType, FileType, Filesystem, type FilesystemEventSchema, type WatchDirResponseSchema } from "../gen/filesystem/filesystem_pb.ts";
import type { VMRecord } from "../../../shared/model.ts";
import { sandboxOf, type EnvdDeps } from "./context.ts";
import { SandboxFs } from "./fs-guest.ts";
import { EnvdFsError, type FsErrorKind, type GuestEntry, type WatchEvent } from "./fs-scripts.ts";
import { EnvdUserError, callUser as requestUser, type CallUser } from "./user.ts";

/**
 * envd's filesystem.Filesystem Connect service (Stat, MakeDir, Move,
 * ListDir, Remove, WatchDir and the polling watchers) on a banger VM:
 * each call a script over the VM's pooled SSH connection (fs-guest.ts),
 * acting for the user the SDK names (`Authorization: Basic user:`).
 */

type EntryInit = MessageInitShape<typeof EntryInfoSchema>;
type EventInit = MessageInitShape<typeof FilesystemEventSchema>;
type WatchInit = MessageInitShape<typeof WatchDirResponseSchema>;

const _CODES: Record<FsErrorKind, Code> = {
  not_found: Code.NotFound,
  invalid: Code.InvalidArgument,
  exists: Code.AlreadyExists,
  user: Code.Unauthenticated,
  precondition: Code.FailedPrecondition,
  permission: Code.PermissionDenied,
  no_space: Code.ResourceExhausted,
  internal: Code.Internal,
};

/** Our errors as the Connect codes the SDK maps to its classes (not_found → FileNotFoundError, …). */
export function connectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof EnvdFsError) return new ConnectError(e.message, _CODES[e.kind]);
  if (e instanceof EnvdUserError) return new ConnectError(e.message, _CODES.user);
  return new ConnectError(e instanceof Error ? e.message : String(e), Code.Internal);
}

const _FILE_TYPES: Record<GuestEntry["type"], FileType> = {
  file: FileType.FILE,
  dir: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.UNSPECIFIED,
};

export function entryInfo(e: GuestEntry): EntryInit {
  return {
    name: e.name,
    type: _FILE_TYPES[e.type],
    path: e.path,
    size: BigInt(e.size),
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    modifiedTime: { seconds: e.modified.seconds, nanos: e.modified.nanos },
    ...(e.symlinkTarget !== undefined ? { symlinkTarget: e.symlinkTarget } : {}),
  };
}

const _EVENT_TYPES: Record<WatchEvent["type"], EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
};

/** The user a call acts for: the SDK's Basic authorization, else envd's default user. */
export function callUser(ctx: HandlerContext): CallUser {
  return requestUser({ authorization: ctx.requestHeader.get("authorization") });
}

/** The SDK asks for a keepalive every N seconds (it sends 50); a quiet stream must not look dead to an idle timeout on the way, so never less often than this. */
const MAX_KEEPALIVE_MS = 5000;

function _keepaliveMs(ctx: HandlerContext): number {
  const asked = Number(ctx.requestHeader.get("keepalive-ping-interval"));
  return Number.isFinite(asked) && asked > 0 ? Math.min(asked * 1000, MAX_KEEPALIVE_MS) : MAX_KEEPALIVE_MS;
}

/** A push queue read as an async iterator: the watch pushes, the stream pulls. */
class _Queue<T> {
  private items: T[] = [];
  private wake: (() => void) | null = null;
  private done = false;
  private failure: unknown = null;
  push(v: T): void {
    this.items.push(v);
    this.wake?.();
  }
  end(e?: unknown): void {
    this.done = true;
    if (e !== undefined) this.failure = e;
    this.wake?.();
  }
  async *drain(): AsyncGenerator<T> {
    for (;;) {
      if (this.items.length) {
        yield this.items.shift()!;
        continue;
      }
      if (this.done) {
        if (this.failure !== null) throw this.failure;
        return;
      }
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
}

interface _Watch {
  path: string;
  recursive: boolean;
  includeEntry: boolean;
  signal: AbortSignal;
}

/**
 * Start a watch; `onEvent` per change (with the entry when asked, best
 * effort: a path already gone has none). Resolves once the watch is set,
 * with a promise of its end; rejects when it could not start.
 */
async function _startWatch(fs: SandboxFs, vm: VMRecord, user: CallUser, w: _Watch, onEvent: (ev: EventInit) => void, onEnd: (e?: unknown) => void): Promise<void> {
  let ready!: () => void;
  let failed!: (e: unknown) => void;
  const started = new Promise<void>((res, rej) => ((ready = res), (failed = rej)));
  // events are handed on in order even when an entry lookup is slow
  let chain = Promise.resolve();
  const watching = fs.watch(vm, user, w.path, {
    recursive: w.recursive,
    signal: w.signal,
    onReady: () => ready(),
    onEvent: (ev) => {
      chain = chain.then(async () => {
        const out: EventInit = { name: ev.name, type: _EVENT_TYPES[ev.type] };
        if (w.includeEntry && ev.type !== "remove" && ev.type !== "rename") {
          const entry = await fs.stat(vm, user, ev.path).catch(() => null);
          if (entry) out.entry = entryInfo(entry);
        }
        onEvent(out);
      });
    },
  });
  // the end is told after every event before it was handed on
  const after = (e?: unknown) => chain.then(() => onEnd(e), (f: unknown) => onEnd(e ?? f));
  watching.then(
    () => {
      // the client left before the watch was set: nothing waits for a start any more, but settle it
      failed(new EnvdFsError("internal", `the watch of ${w.path} ended before it was set`));
      return after();
    },
    (e: unknown) => {
      failed(e);
      return after(e);
    },
  );
  await started;
}

/** Polling watchers (CreateWatcher…): events kept until fetched, per sandbox and id. */
interface _Watcher {
  sandbox: string;
  events: EventInit[];
  error: unknown;
  stop: AbortController;
}

function _handlers(fs: SandboxFs) {
  const watchers = new Map<string, _Watcher>();
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      throw connectError(e);
    }
  };
  const watcherOf = (ctx: HandlerContext, id: string): _Watcher => {
    const w = watchers.get(id);
    if (!w || w.sandbox !== sandboxOf(ctx).id) throw new ConnectError(`watcher ${JSON.stringify(id)} not found`, Code.NotFound);
    return w;
  };
  return {
    stat: (req: { path: string }, ctx: HandlerContext) => call(async () => ({ entry: entryInfo(await fs.stat(sandboxOf(ctx).vm, callUser(ctx), req.path)) })),
    makeDir: (req: { path: string }, ctx: HandlerContext) => call(async () => ({ entry: entryInfo(await fs.makeDir(sandboxOf(ctx).vm, callUser(ctx), req.path)) })),
    move: (req: { source: string; destination: string }, ctx: HandlerContext) =>
      call(async () => ({ entry: entryInfo(await fs.move(sandboxOf(ctx).vm, callUser(ctx), req.source, req.destination)) })),
    listDir: (req: { path: string; depth: number }, ctx: HandlerContext) =>
      call(async () => ({ entries: (await fs.list(sandboxOf(ctx).vm, callUser(ctx), req.path, req.depth || 1)).map(entryInfo) })),
    remove: (req: { path: string }, ctx: HandlerContext) =>
      call(async () => {
        await fs.remove(sandboxOf(ctx).vm, callUser(ctx), req.path);
        return {};
      }),
    async *watchDir(req: { path: string; recursive: boolean; includeEntry: boolean }, ctx: HandlerContext): AsyncGenerator<WatchInit> {
      const q = new _Queue<WatchInit>();
      const stop = new AbortController();
      const abort = () => stop.abort();
      ctx.signal.addEventListener("abort", abort, { once: true });
      try {
        await call(() =>
          _startWatch(
            fs,
            sandboxOf(ctx).vm,
            callUser(ctx),
            { path: req.path, recursive: req.recursive, includeEntry: req.includeEntry, signal: stop.signal },
            (ev) => q.push({ event: { case: "filesystem", value: ev } }),
            (e) => q.end(e === undefined ? undefined : connectError(e)),
          ),
        );
        yield { event: { case: "start", value: {} } };
        const ping = setInterval(() => q.push({ event: { case: "keepalive", value: {} } }), _keepaliveMs(ctx));
        try {
          yield* q.drain();
        } finally {
          clearInterval(ping);
        }
      } finally {
        ctx.signal.removeEventListener("abort", abort);
        stop.abort();
      }
    },
    createWatcher: (req: { path: string; recursive: boolean; includeEntry: boolean }, ctx: HandlerContext) =>
      call(async () => {
        const id = crypto.randomUUID();
        const w: _Watcher = { sandbox: sandboxOf(ctx).id, events: [], error: null, stop: new AbortController() };
        await _startWatch(
          fs,
          sandboxOf(ctx).vm,
          callUser(ctx),
          { path: req.path, recursive: req.recursive, includeEntry: req.includeEntry, signal: w.stop.signal },
          (ev) => w.events.push(ev),
          (e) => (w.error = e ?? null),
        );
        watchers.set(id, w);
        return { watcherId: id };
      }),
    getWatcherEvents: (req: { watcherId: string }, ctx: HandlerContext) =>
      call(async () => {
        const w = watcherOf(ctx, req.watcherId);
        if (w.error !== null && w.events.length === 0) throw w.error;
        return { events: w.events.splice(0) };
      }),
    removeWatcher: (req: { watcherId: string }, ctx: HandlerContext) =>
      call(async () => {
        const w = watcherOf(ctx, req.watcherId);
        w.stop.abort();
        watchers.delete(req.watcherId);
        return {};
      }),
  };
}

/** A RegisterService (context.ts); a declaration, so index.ts may list it however the modules load. */
export function registerFilesystem(router: ConnectRouter, deps: EnvdDeps): void {
  router.service(Filesystem, _handlers(new SandboxFs((vm) => deps.ssh.get(vm))));
}
