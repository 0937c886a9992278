import type { Engine } from "../core/engine.ts";
import { BangerError } from "../shared/errors.ts";
import { GuestFiles, type Body } from "../files/guest.ts";
import { guestPath } from "../files/paths.ts";
import { placeLabel } from "../files/scripts.ts";
import type { Logger } from "../core/plugin.ts";
import type { HandlersFor } from "./router.ts";
import type { SSHPool } from "./ssh-pool.ts";

export interface FileRouteDeps {
  engine: Engine;
  ssh: SSHPool;
  log: Logger;
}

/**
 * A streamed request body the guest reads at its own pace. When the guest
 * stops early (a bad path, a full disk) up to DRAIN_MAX more is read and
 * dropped before the answer goes out, so a client still sending a small
 * body sees the one-line error rather than a broken pipe; past that the
 * body is cancelled (a dir of gigabytes refused is not read to its end).
 * `drained()` is for a reader that stops at its own end marker (tar):
 * what follows it (the sender's padding) is read, up to DRAIN_MAX too, and
 * the body was whole if it then ended.
 */
async function _withBody<T>(req: Request, fn: (body: Body) => Promise<T>): Promise<T> {
  const reader = req.body?.getReader();
  let ended = !reader;
  // one read at a time, shared: a drain that starts while the generator waits on a read takes the same chunk
  let inFlight: Promise<{ done: boolean; value?: Uint8Array }> | null = null;
  const read = () =>
    (inFlight ??= reader!.read().then((r) => {
      inFlight = null;
      if (r.done) ended = true;
      return r;
    }));
  // a generator over our own reader: ending it early (the SSH pump stops) does not cancel the body
  const chunks = (async function* () {
    if (!reader) return;
    for (;;) {
      const { value, done } = await read();
      if (done || !value) return;
      yield value;
    }
  })();
  const drain = async (max: number): Promise<boolean> => {
    if (!reader || ended) return ended;
    try {
      for (let n = 0; n <= max; ) {
        const { value, done } = await read();
        if (done) return true;
        n += value?.length ?? 0;
      }
    } catch {}
    return false;
  };
  try {
    // after tar's end blocks only the sender's padding can follow (a 10 KiB record at most): more is no tar of ours
    return await fn({ chunks, whole: () => ended, drained: () => drain(DRAIN_MAX) });
  } finally {
    if (reader && !ended && !(await drain(DRAIN_MAX))) await reader.cancel().catch(() => {});
  }
}

/** How much of a refused upload is still read (and dropped) for the client's sake before it is cut. */
const DRAIN_MAX = 4 * 1048576;

const _octalMode = (mode: string | undefined): string => {
  if (mode === undefined || mode === "") return "";
  // as chmod reads it: 0 is 000
  if (!/^[0-7]{1,4}$/.test(mode)) throw new BangerError("E_BAD_REQUEST", `mode must be octal permission bits like 644 or 0755, not ${JSON.stringify(mode).slice(0, 40)}`);
  return mode;
};

/** File routes: stat, list, read, write, mkdir, remove, watch, and the tar streams of `vm cp`. */
export function createFileRoutes(d: FileRouteDeps) {
  const files = new GuestFiles((vm) => d.ssh.get(vm));
  const handlers: HandlersFor<"file"> = {
    fileStat: async ({ params, query }) => files.stat(await d.engine.running(params.vm), guestPath(query.path)),
    fileList: async ({ params, query }) => ({ entries: await files.list(await d.engine.running(params.vm), guestPath(query.path), query.depth || 1) }),
    fileRead: async ({ params, query }) => {
      const vm = await d.engine.running(params.vm);
      return new Response(await files.read(vm, guestPath(query.path)), { headers: { "content-type": "application/octet-stream" } });
    },
    fileWrite: async ({ req, params, query }) =>
      _withBody(req, async (body) => {
        const vm = await d.engine.running(params.vm);
        return files.write(vm, guestPath(query.path, false), body, _octalMode(query.mode));
      }),
    fileMkdir: async ({ params, body }) => files.mkdir(await d.engine.running(params.vm), guestPath(body.path, false), !!body.parents),
    fileRemove: async ({ params, query }) => {
      const vm = await d.engine.running(params.vm);
      const p = guestPath(query.path, false);
      await files.remove(vm, p, query.recursive);
      return { deleted: p.path };
    },
    fileWatch: async ({ params, query, ndjson }) => {
      const vm = await d.engine.running(params.vm);
      const p = guestPath(query.path);
      // a bad path is a 4xx with one line, before the stream's 200
      const info = await files.stat(vm, p);
      if (info.type !== "dir") throw new BangerError("E_CONFLICT", `watch: not a directory: ${placeLabel(vm.name, p.path)}`);
      return ndjson(async (emit) => {
        const o = { recursive: query.recursive, intervalMs: query.interval || 1000, signal: emit.signal };
        const events = await files.watch(vm, p, o, (event) => emit.event({ type: "file", event }));
        return { type: "result", data: { events } };
      });
    },
    fileArchiveGet: async ({ params, query }) => {
      const vm = await d.engine.running(params.vm);
      const p = guestPath(query.path, false);
      return new Response(await files.archive(vm, p), { headers: { "content-type": "application/x-tar" } });
    },
    fileArchivePut: async ({ req, params, query }) =>
      _withBody(req, async (body) => {
        const vm = await d.engine.running(params.vm);
        const dest = guestPath(query.path);
        const name = query.name ?? "";
        if (name.includes("/") || name === "." || name === "..") throw new BangerError("E_BAD_REQUEST", `name must be one path component, not ${JSON.stringify(name).slice(0, 60)}`);
        if (name && dest.name === "") throw new BangerError("E_BAD_REQUEST", "copy onto the guest's root directory itself is refused: name a directory under it");
        const kind = query.kind ?? "";
        if (kind !== "" && kind !== "dir" && kind !== "file") throw new BangerError("E_BAD_REQUEST", `kind must be dir or file, not ${JSON.stringify(kind).slice(0, 60)}`);
        const bytes = await files.extract(vm, dest, name, query.contents, body, kind);
        d.log.info(`cp → ${placeLabel(vm.name, dest.path)} (${bytes} bytes of tar)`);
        return { path: dest.path, bytes };
      }),
  };
  return { files, handlers };
}
