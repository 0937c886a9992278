import type { FileEvent, FileInfo } from "../shared/api.ts";
import type { VMRecord } from "../shared/model.ts";
import type { GuestSSH } from "../host/types.ts";
import type { SplitPath } from "./paths.ts";
import { BangerError } from "../shared/errors.ts";
import { EXIT, type CopyKind, archiveScript, bashCommand, commitScript, cutError, extractScript, stagedPath, infoScript, mkdirScript, parseInfo, placeLabel, readScript, removeScript, scriptError, watchParser, watchScript, writeScript } from "./scripts.ts";

/** The exits a script chooses (EXIT: not a dir, exists…): a decision on what is there, never a symptom of a short stdin. */
const _REFUSALS: ReadonlySet<number> = new Set(Object.values(EXIT));
/** Errors made from such an exit. */
const _refused = new WeakSet<Error>();

/** How a script's non-zero exit becomes the error its caller throws. */
export type ScriptFailure = (code: number, stderr: string) => Error;

/** A streamed request body, and whether it arrived to its end (asked once it ended). */
export interface Body {
  chunks: AsyncIterable<Uint8Array>;
  whole(): boolean;
  /** Read what is left after the consumer stopped at its own end marker; resolves whether the body then ended (else it was cut). */
  drained?(): Promise<boolean>;
}

/**
 * Bytes streamed between two collections. Every chunk of a copy is dead
 * the moment it is passed on, but Bun collects ArrayBuffers lazily: left
 * alone, a 200 MB copy piled up ~130 MiB of garbage in the daemon (peak
 * RSS) though nothing held it. A full collection per 4 MiB costs a few ms.
 */
const GC_EVERY_BYTES = 4 << 20;

function _collector(): (n: number) => void {
  let since = 0;
  return (n) => {
    since += n;
    if (since < GC_EVERY_BYTES) return;
    since = 0;
    Bun.gc(true);
  };
}

/** How long a watch's guest loop gets to stop by itself after its stdin ended, beyond one poll. */
const WATCH_GRACE_MS = 5000;

/** Chunks a download queues ahead of its reader before the guest is paused (ssh2 hands us ≤ 32 KiB each). */
const QUEUED_CHUNKS = 8;

/**
 * Files in a VM over its pooled SSH connection: each call is one channel
 * running one script. Bytes stream through with backpressure both ways
 * (an upload is read as the guest takes it; a download is read from the
 * guest as its reader takes it), so the daemon never holds a whole file.
 */
export class GuestFiles {
  constructor(private readonly dial: (vm: VMRecord) => Promise<GuestSSH>) {}

  async stat(vm: VMRecord, p: SplitPath): Promise<FileInfo> {
    const out = await this._run(vm, infoScript(p.path, 0), "stat", p.path);
    return parseInfo(out)[0]!;
  }

  async list(vm: VMRecord, p: SplitPath, depth: number): Promise<FileInfo[]> {
    return parseInfo(await this._run(vm, infoScript(p.path, Math.max(1, depth)), "list", p.path));
  }

  async mkdir(vm: VMRecord, p: SplitPath, parents: boolean): Promise<FileInfo & { created: boolean }> {
    try {
      return { ...parseInfo(await this._run(vm, mkdirScript(p, parents), "mkdir", p.path))[0]!, created: true };
    } catch (e) {
      // already a dir: like `mkdir -p`, not a failure; the caller learns it from `created`
      if ((e as { exists?: boolean }).exists) return { ...(await this.stat(vm, p)), created: false };
      throw e;
    }
  }

  async remove(vm: VMRecord, p: SplitPath, recursive: boolean): Promise<void> {
    await this._run(vm, removeScript(p.path, recursive), "remove", p.path);
  }

  /** `body.whole()` says, once it ended, whether the stream arrived to its end: only then is the staged file moved into place. */
  async write(vm: VMRecord, p: SplitPath, body: Body, mode: string): Promise<FileInfo> {
    const where = placeLabel(vm.name, p.path);
    let out: Uint8Array;
    const chunks = _started(body.chunks);
    try {
      out = await this._run(vm, writeScript(p, mode), "write", p.path, chunks);
    } catch (e) {
      // a failure before the first byte was asked for (the guest unreachable, say), or the script's own refusal, is
      // its own error, not a cut stream
      throw body.whole() || !chunks.started || _refused.has(e as Error) ? e : cutError("write", where);
    }
    const staged = stagedPath(out, "write");
    if (!staged) throw new BangerError("E_INTERNAL", "the write script staged nothing");
    const whole = body.whole();
    const info = await this._run(vm, commitScript(staged.tmp, staged.tmp, staged.dest, !whole), "write", p.path);
    if (!whole) throw cutError("write", where);
    return parseInfo(info)[0]!;
  }

  /** Untar the body at `dest` (extract.sh's rules), committing a staged copy only when the stream arrived whole; returns the bytes taken in. */
  async extract(vm: VMRecord, dest: SplitPath, name: string, contents: boolean, input: Body, kind: CopyKind = ""): Promise<number> {
    const where = placeLabel(vm.name, dest.path);
    const body = input.chunks;
    let bytes = 0;
    const counted = _started(
      (async function* () {
        const gc = _collector();
        for await (const c of body) {
          bytes += c.length;
          yield c;
          gc(c.length);
        }
      })(),
    );
    let out: Uint8Array;
    try {
      out = await this._run(vm, extractScript(dest, name, contents, kind), "copy", dest.path, counted);
    } catch (e) {
      // extract.sh refuses a dest that is not a dir, say, whether or not it read the whole stream first
      throw input.whole() || !counted.started || _refused.has(e as Error) ? e : cutError("copy", where);
    }
    const staged = stagedPath(out, "cp");
    // tar stops at its end-of-archive blocks; the sender's padding after them may still be on its way
    const whole = input.whole() || ((await input.drained?.()) ?? false);
    if (staged) await this._run(vm, commitScript(`${staged.tmp}/${name}`, staged.tmp, staged.dest, !whole), "copy", dest.path);
    if (!whole) throw cutError("copy", where, !staged);
    return bytes;
  }

  /** A file's bytes, streamed; a missing file or a dir fails before the first byte. */
  read(vm: VMRecord, p: SplitPath): Promise<ReadableStream<Uint8Array>> {
    return this._streamOut(vm, readScript(p.path), "read", p.path);
  }

  /** A tar of p (archive.sh), streamed. */
  archive(vm: VMRecord, p: SplitPath): Promise<ReadableStream<Uint8Array>> {
    return this._streamOut(vm, archiveScript(p), "copy", p.path);
  }

  /** Report changes under dir p until `signal` aborts or the dir goes; returns how many events there were. */
  async watch(vm: VMRecord, p: SplitPath, o: { recursive: boolean; intervalMs: number; signal: AbortSignal }, onEvent: (ev: FileEvent) => void): Promise<number> {
    const conn = await this.dial(vm);
    const err: Uint8Array[] = [];
    let events = 0;
    const parse = watchParser((ev) => {
      events++;
      onEvent(ev);
    });
    // The script polls until its stdin ends: held open here until the watcher goes away, then
    // ended (EOF), so the guest loop stops by itself; killing the channel is only the fallback,
    // as a guest's dropbear neither honours the signal nor lets the loop see the channel close.
    const stdin = (async function* (): AsyncGenerator<Uint8Array> {
      if (!o.signal.aborted) await new Promise<void>((r) => o.signal.addEventListener("abort", () => r(), { once: true }));
    })();
    const force = new AbortController();
    o.signal.addEventListener("abort", () => setTimeout(() => force.abort(), WATCH_GRACE_MS + o.intervalMs), { once: true });
    try {
      const code = await conn.exec(bashCommand(watchScript(p.path, o.recursive, o.intervalMs)), { stdin, onStdout: parse, onStderr: (c) => err.push(c.slice()), signal: force.signal });
      if (code !== 0) throw scriptError(code, Buffer.concat(err).toString("utf8"), "watch", placeLabel(vm.name, p.path));
    } catch (e) {
      if (!o.signal.aborted) throw e;
    }
    return events;
  }

  private _run(vm: VMRecord, script: string, what: string, path: string, stdin?: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
    return this.runScript(
      vm,
      script,
      (code, stderr) => {
        const e = scriptError(code, stderr, what, placeLabel(vm.name, path));
        if (code === EXIT.EXISTS) Object.defineProperty(e, "exists", { value: true });
        if (_REFUSALS.has(code)) _refused.add(e);
        return e;
      },
      stdin,
    );
  }

  /**
   * Run a script and return its stdout; a non-zero exit is thrown as
   * `fail(code, stderr)`. Another front door to the guest's files (E2B's
   * envd) runs its own scripts through this, with its own errors.
   */
  async runScript(vm: VMRecord, script: string, fail: ScriptFailure, stdin?: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
    const conn = await this.dial(vm);
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    const code = await conn.exec(bashCommand(script), { stdin, onStdout: (c) => out.push(c.slice()), onStderr: (c) => err.push(c.slice()) });
    if (code !== 0) throw fail(code, Buffer.concat(err).toString("utf8"));
    return Buffer.concat(out);
  }

  /**
   * Run a script whose stdout is the answer: resolves with a stream once the
   * first byte came (or it ended cleanly with none), rejects with the
   * script's one-line error when it failed before any; a failure after that
   * errors the stream, so its reader sees a cut, never a short success.
   */
  private _streamOut(vm: VMRecord, script: string, what: string, path: string): Promise<ReadableStream<Uint8Array>> {
    return this.streamScript(vm, script, (code, stderr) => scriptError(code, stderr, what, placeLabel(vm.name, path)));
  }

  /** `_streamOut` for any script (see runScript): its stdout as a stream once the first byte came, a failure before that thrown as `fail(code, stderr)`. */
  async streamScript(vm: VMRecord, script: string, fail: ScriptFailure): Promise<ReadableStream<Uint8Array>> {
    const conn = await this.dial(vm);
    const abort = new AbortController();
    const err: Uint8Array[] = [];
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    let done = false;
    // the reader may have gone (cancel) before the guest stops talking: drop what still arrives
    const end = (f: () => void) => {
      if (done) return;
      done = true;
      try {
        f();
      } catch {}
    };
    let flow: { pause(): void; resume(): void } | undefined;
    let settle!: (v: { code: number | null }) => void;
    const started = new Promise<{ code: number | null }>((r) => (settle = r));
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => void (ctl = c),
        pull: () => flow?.resume(),
        cancel: () => {
          done = true;
          abort.abort();
        },
      },
      { highWaterMark: QUEUED_CHUNKS },
    );
    const gc = _collector();
    const exited = conn.exec(bashCommand(script), {
      signal: abort.signal,
      flow: (f) => (flow = f),
      onStdout: (c) => {
        if (done) return;
        ctl.enqueue(c.slice());
        gc(c.length);
        settle({ code: null });
        if ((ctl.desiredSize ?? 1) <= 0) flow?.pause();
      },
      onStderr: (c) => err.push(c.slice()),
    });
    exited.then(
      (code) => {
        settle({ code });
        if (code === 0) end(() => ctl.close());
        else end(() => ctl.error(fail(code, Buffer.concat(err).toString("utf8"))));
      },
      (e: unknown) => {
        settle({ code: -1 });
        end(() => ctl.error(e));
      },
    );
    const first = await started;
    if (first.code !== null && first.code !== 0) {
      if (first.code === -1) await exited; // rethrows the transport error
      throw fail(first.code, Buffer.concat(err).toString("utf8"));
    }
    return stream;
  }
}

/** `chunks`, saying whether anyone has asked it for a chunk yet. */
function _started(chunks: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> & { started: boolean } {
  const it = {
    started: false,
    async *[Symbol.asyncIterator]() {
      it.started = true;
      yield* chunks;
    },
  };
  return it;
}
