import type { GuestSSH } from "../../../host/types.ts";
import type { VMRecord } from "../../../shared/model.ts";
import { GuestFiles, type Body } from "../../../files/guest.ts";
import { bashCommand } from "../../../files/scripts.ts";
import {
  EnvdFsError,
  commitScript,
  fsError,
  listScript,
  makeDirScript,
  moveScript,
  parseEntries,
  parseStaged,
  readScript,
  removeScript,
  statScript,
  walkOrder,
  watchParser,
  watchScript,
  writeScript,
  type GuestEntry,
  type WatchEvent,
} from "./fs-scripts.ts";
import type { CallUser } from "./user.ts";

/** How long a watch's guest loop gets to stop by itself after its stdin ended before the channel is closed. */
const WATCH_GRACE_MS = 3000;

/**
 * envd's filesystem calls on one VM, each one script over the VM's pooled
 * SSH connection (one round trip; an upload two, so a cut body never
 * replaces a file). Bytes stream both ways through GuestFiles.
 */
export class SandboxFs {
  private readonly files: GuestFiles;

  constructor(private readonly dial: (vm: VMRecord) => Promise<GuestSSH>) {
    this.files = new GuestFiles(dial);
  }

  private _run(vm: VMRecord, script: string, stdin?: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
    return this.files.runScript(vm, script, fsError, stdin);
  }

  async stat(vm: VMRecord, user: CallUser, path: string): Promise<GuestEntry> {
    return parseEntries(await this._run(vm, statScript(user, path)))[0]!;
  }

  async list(vm: VMRecord, user: CallUser, path: string, depth: number): Promise<GuestEntry[]> {
    if (!Number.isInteger(depth) || depth < 1) throw new EnvdFsError("invalid", "depth should be at least one");
    return parseEntries(await this._run(vm, listScript(user, path, depth))).sort(walkOrder);
  }

  async makeDir(vm: VMRecord, user: CallUser, path: string): Promise<GuestEntry> {
    return parseEntries(await this._run(vm, makeDirScript(user, path)))[0]!;
  }

  async move(vm: VMRecord, user: CallUser, source: string, destination: string): Promise<GuestEntry> {
    return parseEntries(await this._run(vm, moveScript(user, source, destination)))[0]!;
  }

  async remove(vm: VMRecord, user: CallUser, path: string): Promise<void> {
    await this._run(vm, removeScript(user, path));
  }

  /** A file's bytes (gzip: compressed); a missing file or a dir fails before the first byte. */
  read(vm: VMRecord, user: CallUser, path: string, gzip: boolean): Promise<ReadableStream<Uint8Array>> {
    return this.files.streamScript(vm, readScript(user, path, gzip), fsError);
  }

  /**
   * Write `body` to path: staged next to it and moved into place only once
   * `body.whole()` says the stream arrived to its end (else the temp is
   * removed and the file left as it was). `gunzip`: the body is gzip.
   */
  async write(vm: VMRecord, user: CallUser, path: string, body: Body, gunzip: boolean): Promise<GuestEntry> {
    let out: Uint8Array;
    try {
      out = await this._run(vm, writeScript(user, path, gunzip), body.chunks);
    } catch (e) {
      if (body.whole()) throw e;
      throw new EnvdFsError("invalid", `the upload of ${path} was cut before its end: nothing was written`);
    }
    const { tmp, dest } = parseStaged(out);
    const whole = body.whole();
    const info = await this._run(vm, commitScript(user, tmp, dest, !whole));
    if (!whole) throw new EnvdFsError("invalid", `the upload of ${path} was cut before its end: nothing was written`);
    return parseEntries(info)[0]!;
  }

  /**
   * Watch dir `path` (inotify in the guest) until `signal` aborts or the
   * dir goes away: `onReady(root)` once the watch is set, then `onEvent`
   * per change. Resolves when the watch ended; rejects (before onReady)
   * when it could not start.
   */
  async watch(vm: VMRecord, user: CallUser, path: string, o: { recursive: boolean; signal: AbortSignal; onReady(root: string): void; onEvent(ev: WatchEvent): void }): Promise<void> {
    const conn = await this.dial(vm);
    const err: Uint8Array[] = [];
    let root: string | null = null;
    let ready = false;
    const stop = new AbortController();
    const ended = new Promise<void>((r) => {
      if (o.signal.aborted) r();
      o.signal.addEventListener("abort", () => r(), { once: true });
      stop.signal.addEventListener("abort", () => r(), { once: true });
    });
    // stdout and stderr are separate streams: an event read before "Watches established." waits for it
    const early: WatchEvent[] = [];
    const parse = watchParser({ onRoot: (r) => (root = r), onEvent: (ev) => (ready ? o.onEvent(ev) : early.push(ev)), onGone: () => stop.abort() });
    // stdin is held open while the watch is wanted; its end (EOF) stops the guest loop by itself.
    // Killing the channel is only the fallback: a guest's dropbear honours no signal.
    const stdin = (async function* (): AsyncGenerator<Uint8Array> {
      await ended;
    })();
    const force = new AbortController();
    ended.then(
      () => setTimeout(() => force.abort(), WATCH_GRACE_MS).unref?.(),
      () => {},
    );
    const code = await conn
      .exec(bashCommand(watchScript(user, path, o.recursive)), {
        stdin,
        signal: force.signal,
        onStdout: parse,
        onStderr: (c) => {
          if (ready) return;
          err.push(c.slice());
          if (root !== null && Buffer.concat(err).toString("utf8").includes("Watches established.")) {
            ready = true;
            o.onReady(root);
            for (const ev of early.splice(0)) o.onEvent(ev);
          }
        },
      })
      .catch((e: unknown) => {
        if (o.signal.aborted || stop.signal.aborted) return 0;
        throw e;
      });
    stop.abort();
    if (!ready) {
      if (code !== 0) throw fsError(code, Buffer.concat(err).toString("utf8"));
      if (!o.signal.aborted) throw new EnvdFsError("internal", `the watch of ${path} ended before it was set: ${Buffer.concat(err).toString("utf8").trim().slice(0, 200)}`);
    }
  }
}
