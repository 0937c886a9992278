// `banger vm cp` and `banger vm files`: thin over the daemon's file routes.
// The host half of a copy (tar out of or into a host path) runs here, in
// the CLI, with the same scripts the guest runs (src/files/scripts), so a
// copy either way keeps modes, symlinks and empty dirs and follows one set
// of docker cp rules.
import { defineCommand } from "./define.ts";
import type { FileEvent, FileInfo } from "../shared/api.ts";
import { BangerError } from "../shared/errors.ts";
import { parseDuration } from "../shared/exec-options.ts";
import { parseCpEnd, splitPath, type SplitPath } from "../files/paths.ts";
import { EXIT, type CopyKind, archiveScript, copyKindOf, commitScript, cutError, extractScript, placeLabel, scriptError, stagedPath } from "../files/scripts.ts";
import { guardGuestTar } from "../files/tar-guard.ts";
import { spawnPiped } from "../host/pipe.ts";
import { writeOut } from "../host/stdio.ts";
import { daemon, exitIfBrokenPipe, intArg, jsonArg, out, progress, usage } from "./context.ts";
import { log } from "./log.ts";

const MiB = 1048576;

/** Counts the bytes going through and shows them as progress (a copy over a second says how far it got). */
function _metered(stream: ReadableStream<Uint8Array>, quiet: boolean): { stream: ReadableStream<Uint8Array>; bytes(): number; done(): void } {
  let bytes = 0;
  const p = progress(quiet);
  let last = 0;
  const tick = setInterval(() => {
    if (bytes !== last) p.update(`copied ${bytes < MiB ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / MiB).toFixed(1)} MiB`}`);
    last = bytes;
  }, 1000);
  const t = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      bytes += chunk.length;
      c.enqueue(chunk);
    },
  });
  return {
    stream: stream.pipeThrough(t),
    bytes: () => bytes,
    done: () => {
      clearInterval(tick);
      p.done();
    },
  };
}

/**
 * A stream that ends only if `ok` says so once its source ended (a tar
 * process exited 0), and errors otherwise: the daemon must see a failed
 * sender as a cut upload, never as a whole but short one. `cut()` is the
 * source's own error, if it failed.
 */
function _guarded(src: ReadableStream<Uint8Array>, ok: () => Promise<Error | null>): { stream: ReadableStream<Uint8Array>; cut(): unknown } {
  const reader = src.getReader();
  let cut: unknown = null;
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      let r: Awaited<ReturnType<typeof reader.read>>;
      try {
        r = await reader.read();
      } catch (e) {
        cut = e ?? new Error("stream cut");
        c.error(cut);
        return;
      }
      if (!r.done) return c.enqueue(r.value);
      const bad = await ok();
      if (bad) c.error(bad);
      else c.close();
    },
    cancel: (why) => reader.cancel(why),
  });
  return { stream, cut: () => cut };
}

/** Run a files script on the host; its stdout is read whole (a staged path, an info record: small). */
async function _hostScript(script: string, stdin: ReadableStream<Uint8Array> | "ignore" = "ignore") {
  const p = spawnPiped(["bash", "-c", script], { stdin, stdout: "pipe" });
  const out = new Uint8Array(await new Response(p.stdout!).arrayBuffer());
  return { ...(await p.exited), out };
}

interface CpResult {
  source: string;
  destination: string;
  bytes: number;
  /** Device nodes a copy out of the guest left out (never made on the host). */
  skipped?: string[];
}

/** host (or "-": a tar on stdin) → vm:dest */
async function _copyIn(src: string, vm: string, dest: string, quiet: boolean): Promise<CpResult> {
  const c = await daemon();
  const destination = placeLabel(vm, dest);
  splitPath(dest, "guest"); // a bad guest path is one line before anything is read
  if (src === "-") {
    const m = _metered(Bun.stdin.stream() as ReadableStream<Uint8Array>, quiet);
    try {
      await c.upload("fileArchivePut", { params: { vm }, query: { path: dest } }, m.stream);
    } finally {
      m.done();
    }
    return { source: "-", destination, bytes: m.bytes() };
  }
  const s = splitPath(src, "host", process.cwd());
  if (s.name === "") usage("copying the host's root directory is refused: name a directory under it");
  const { createFS } = await import("../host/fs.ts");
  const st = await createFS().lstat(s.path);
  if (!st) throw new BangerError("E_NOT_FOUND", `copy: no such file or directory: ${placeLabel(null, s.path)}`);
  if (s.slash && st.type !== "dir" && (await createFS().stat(s.path))?.type !== "dir") throw new BangerError("E_CONFLICT", `copy: not a directory: ${placeLabel(null, src)}`);
  const tar = spawnPiped(["bash", "-c", archiveScript(s)], { stdin: "ignore", stdout: "pipe" });
  const failed = async () => {
    const { code, stderr } = await tar.exited;
    return code === 0 ? null : scriptError(code, stderr, "copy", placeLabel(null, s.path));
  };
  let tarEnded = false;
  tar.exited.then(
    () => (tarEnded = true),
    () => (tarEnded = true),
  );
  const m = _metered(_guarded(tar.stdout!, failed).stream, quiet);
  try {
    const kind = copyKindOf(st.type);
    await c.upload("fileArchivePut", { params: { vm }, query: { path: dest, name: s.name, contents: s.contents, kind } }, m.stream);
  } catch (e) {
    // the daemon refused before the stream ended (its answer is the cause: the tar is stopped), or the host tar failed and the daemon only saw a cut
    if (!tarEnded) {
      tar.kill();
      throw e;
    }
    throw (await failed()) ?? e;
  } finally {
    m.done();
  }
  return { source: s.path, destination, bytes: m.bytes() };
}

/** A stream to stdout as it comes; a reader that went away (`| head`) ends the command (exitIfBrokenPipe). */
async function _toStdout(stream: AsyncIterable<Uint8Array>): Promise<void> {
  const w = Bun.stdout.writer();
  try {
    for await (const chunk of stream) {
      await w.write(chunk);
      await w.flush();
    }
    await w.end();
  } catch (e) {
    exitIfBrokenPipe(e);
    throw e;
  }
}

/**
 * Where the host dest is a file (or, written with a trailing slash, not
 * there; or a dir holding a file of the source's name), what the source is
 * decides whether extract.sh would refuse it: ask first (one stat) rather
 * than stream a whole dir only to throw it away. Elsewhere the source's
 * kind does not matter and nothing is asked.
 */
async function _refuseBeforeCopy(vm: string, src: SplitPath, d: SplitPath): Promise<CopyKind> {
  const { createFS } = await import("../host/fs.ts");
  const fs = createFS();
  const there = await fs.lstat(d.path);
  const into = (await fs.stat(d.path))?.type === "dir";
  if (into) {
    const inner = `${d.path}/${src.name}`;
    if (src.contents || !(await fs.lstat(inner)) || (await fs.stat(inner))?.type === "dir") return "";
  } else if (there === null && !d.slash) return "";
  const info = await (await daemon()).call("fileStat", { params: { vm }, query: { path: src.path } });
  const kind = copyKindOf(info.type);
  const where = placeLabel(null, d.path);
  if (kind === "dir" && there) throw scriptError(EXIT.DIR_TO_FILE, "", "copy", where);
  if (kind === "file" && d.slash && !into) throw scriptError(EXIT.NOT_FOUND, "", "copy", where);
  return kind;
}

/** vm:src → host (or "-": a tar on stdout) */
async function _copyOut(vm: string, src: string, dest: string, quiet: boolean): Promise<CpResult> {
  const s = splitPath(src, "guest");
  if (s.name === "") usage("copying the guest's root directory is refused: name a directory under it");
  const c = await daemon();
  const d = dest === "-" ? null : splitPath(dest, "host", process.cwd());
  const kind = d ? await _refuseBeforeCopy(vm, s, d) : "";
  const body = await c.download("fileArchiveGet", { params: { vm }, query: { path: src } });
  const m = _metered(body, quiet);
  const source = placeLabel(vm, s.path);
  try {
    if (!d) {
      await _toStdout(m.stream);
      return { source, destination: "-", bytes: m.bytes() };
    }
    const where = placeLabel(null, d.path);
    // the guest's tar is not trusted: no device nodes, no set-id bits reach the host (the guard's refusal is the cause of a cut)
    const skipped: string[] = [];
    const g = _guarded(m.stream.pipeThrough(guardGuestTar((e) => skipped.push(`${e.name} (${e.type})`))), async () => null);
    const refused = () => (g.cut() instanceof BangerError ? (g.cut() as BangerError) : null);
    const x = await _hostScript(extractScript(d, s.name, s.contents, kind), g.stream);
    if (x.code !== 0) throw refused() ?? (g.cut() ? cutError("copy", where) : scriptError(x.code, x.stderr, "copy", where));
    const staged = stagedPath(x.out, "cp");
    if (staged) {
      // a stream cut at a tar member's boundary untars "fine": only a whole one is put in place
      const done = await _hostScript(commitScript(`${staged.tmp}/${s.name}`, staged.tmp, staged.dest, !!g.cut()));
      if (done.code !== 0 && !g.cut()) throw scriptError(done.code, done.stderr, "copy", where);
    }
    if (g.cut()) throw refused() ?? cutError("copy", where, !staged);
    if (skipped.length && !quiet) log().warn(`left out ${skipped.length === 1 ? "a device node" : `${skipped.length} device nodes`} (not made on the host): ${skipped.slice(0, 5).join(", ")}${skipped.length > 5 ? ", …" : ""}`);
    return { source, destination: d.path, bytes: m.bytes(), ...(skipped.length ? { skipped } : {}) };
  } catch (e) {
    if (e instanceof BangerError) throw e;
    // the daemon cut the stream: the guest side failed after it started, or the daemon went away
    throw new BangerError("E_STATE", `copy from ${source} was cut mid-stream: ${(e as Error).message} (banger daemon logs)`);
  } finally {
    m.done();
  }
}

export const cp = defineCommand({
  meta: {
    name: "cp",
    description:
      "Copy files and dirs between the host and a running VM, like docker cp: banger vm cp SRC DST, one side VM:PATH (absolute). DIR/. copies what is under DIR; - is a tar stream on stdin/stdout",
  },
  args: {
    src: { type: "positional", required: true, description: "Source: host path, VM:PATH or - (a tar on stdin)" },
    dst: { type: "positional", required: true, description: "Destination: host path, VM:PATH or - (a tar on stdout)" },
    ...jsonArg,
  },
  async run({ args }) {
    const a = parseCpEnd(args.src);
    const b = parseCpEnd(args.dst);
    if ((a.vm === null) === (b.vm === null)) usage("exactly one of SRC and DST must be VM:PATH (write ./a:b for a host file named a:b)");
    if (a.path === "-" && b.path === "-") usage("only one side can be - (a tar stream)");
    const quiet = !!args.json;
    const r = b.vm !== null ? await _copyIn(a.path, b.vm, b.path, quiet) : await _copyOut(a.vm!, a.path, b.path, quiet);
    if (b.path === "-" && !args.json) return;
    // with a tar on stdout, --json goes to stderr so the stream stays a tar
    if (b.path === "-") writeOut(2, JSON.stringify(r) + "\n");
    else out(r, !!args.json, () => `copied ${r.source} → ${r.destination} (${(r.bytes / MiB).toFixed(1)} MiB of tar)`);
  },
});

function _q(name: string): string {
  return /^[\w./@+,:=~-]+$/.test(name) ? name : JSON.stringify(name);
}

function _mode(m: number): string {
  return m.toString(8).padStart(4, "0");
}

function _describe(f: FileInfo): string {
  const lines = [`path:  ${_q(f.path)}`, `type:  ${f.type}`, `size:  ${f.size}`, `mode:  ${_mode(f.mode)}`, `mtime: ${f.mtime}`];
  if (f.target !== undefined) lines.push(`target: ${_q(f.target)}`);
  return lines.join("\n");
}

function _eventLine(e: FileEvent): string {
  return `${e.op} ${e.type} ${_q(e.path)}`;
}

const ACTIONS = ["ls", "stat", "cat", "write", "mkdir", "rm", "watch"] as const;

export const files = defineCommand({
  meta: {
    name: "files",
    description: "Files in a running VM: banger vm files VM ls|stat|cat|write|mkdir|rm|watch PATH (absolute guest path; write reads stdin)",
  },
  args: {
    vm: { type: "positional", required: true, description: "VM name" },
    action: { type: "positional", required: true, description: ACTIONS.join("|") },
    path: { type: "positional", required: true, description: "Absolute guest path" },
    recursive: { type: "boolean", alias: "r", description: "rm: a whole tree; watch: at any depth" },
    parents: { type: "boolean", alias: "p", description: "mkdir: make parents too" },
    depth: { type: "string", description: "ls: levels down (default 1)" },
    mode: { type: "string", description: "write: octal mode, e.g. 0755 (default: the existing file's, else 0644)" },
    count: { type: "string", description: "watch: stop after this many changes" },
    timeout: { type: "string", description: "watch: stop after this long (30, 30s, 5m: a bare number is seconds)" },
    interval: { type: "string", description: "watch: poll interval in ms (default 1000)" },
    ...jsonArg,
  },
  async run({ args }) {
    const action = args.action as (typeof ACTIONS)[number];
    if (!ACTIONS.includes(action)) usage(`unknown files action ${JSON.stringify(args.action).slice(0, 40)}: use one of ${ACTIONS.join(", ")}`);
    const json = !!args.json;
    const params = { vm: args.vm };
    const path = args.path;
    splitPath(path, "guest");
    const c = await daemon();
    switch (action) {
      case "stat": {
        const f = await c.call("fileStat", { params, query: { path } });
        return out(f, json, () => _describe(f));
      }
      case "ls": {
        const depth = intArg(args.depth, "--depth");
        // 0 would list nothing: the route takes it for its default, 1
        if (depth === 0) usage("--depth must be at least 1 (the dir's own entries; `stat` is the path alone)");
        const r = await c.call("fileList", { params, query: { path, depth } });
        return out(r, json, () => r.entries.map((f) => `${f.type.padEnd(7)} ${_mode(f.mode)} ${String(f.size).padStart(10)} ${f.mtime}  ${_q(f.path)}${f.target !== undefined ? ` -> ${_q(f.target)}` : ""}`).join("\n"));
      }
      case "cat": {
        const body = await c.download("fileRead", { params, query: { path } });
        if (json) {
          const bytes = new Uint8Array(await new Response(body).arrayBuffer());
          return out({ path, bytes: bytes.length, data: Buffer.from(bytes).toString("base64") }, true, () => "");
        }
        const m = _metered(body, false);
        try {
          await _toStdout(m.stream);
        } finally {
          m.done();
        }
        return;
      }
      case "write": {
        const m = _metered(Bun.stdin.stream() as ReadableStream<Uint8Array>, json);
        let f: FileInfo;
        try {
          f = await c.upload("fileWrite", { params, query: { path, mode: args.mode || undefined } }, m.stream);
        } finally {
          m.done();
        }
        return out(f, json, () => `wrote ${f.size} bytes to ${placeLabel(args.vm, f.path)}`);
      }
      case "mkdir": {
        const f = await c.call("fileMkdir", { params, body: { path, parents: !!args.parents } });
        return out(f, json, () => (f.created ? `made ${placeLabel(args.vm, f.path)}` : `${placeLabel(args.vm, f.path)} already exists`));
      }
      case "rm": {
        const r = await c.call("fileRemove", { params, query: { path, recursive: !!args.recursive } });
        return out(r, json, () => `removed ${placeLabel(args.vm, r.deleted)}`);
      }
      case "watch":
        return _watch(args.vm, path, { recursive: !!args.recursive, count: intArg(args.count, "--count"), timeoutMs: args.timeout ? parseDuration(args.timeout, "--timeout") : undefined, interval: intArg(args.interval, "--interval"), json });
    }
  },
});

/** Print changes as they come (one line each, or one JSON object per line) until --count changes, --timeout passes, or the dir goes. */
async function _watch(vm: string, path: string, o: { recursive: boolean; count?: number; timeoutMs?: number; interval?: number; json: boolean }): Promise<void> {
  const c = await daemon();
  const stop = new AbortController();
  if (o.timeoutMs !== undefined) setTimeout(() => stop.abort(), o.timeoutMs);
  let changes = 0;
  try {
    await c.stream(
      "fileWatch",
      { params: { vm }, query: { path, recursive: o.recursive, interval: o.interval } },
      (ev) => {
        if (ev.type !== "file") return;
        writeOut(1, (o.json ? JSON.stringify(ev.event) : _eventLine(ev.event)) + "\n");
        if (ev.event.op !== "ready" && o.count !== undefined && ++changes >= o.count) stop.abort();
      },
      stop.signal,
    );
  } catch (e) {
    if (!stop.signal.aborted) throw e;
  }
  process.exit(0);
}
