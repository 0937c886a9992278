import { BangerError } from "../shared/errors.ts";
import type { Engine } from "../core/engine.ts";
import type { LoadedPlugin } from "../core/loader.ts";
import type { VMRecord } from "../shared/model.ts";
import type { DaemonPaths } from "../shared/paths.ts";
import { shellJoin } from "../shared/quote.ts";
import { errorResponse, json, MAX_EXEC_BODY_BYTES, ndjson, parseBody, type Emitter, type StreamEvent } from "./http.ts";
import { withRequestScope } from "./request-scope.ts";
import { sshTargetFor, type SSHPool } from "./ssh-pool.ts";
import type { ImageService } from "./images.ts";
import type { FS } from "../host/types.ts";
import { VERSION_HEADER } from "../version.ts";

export interface AppDeps {
  engine: Engine;
  images: ImageService;
  ssh: SSHPool;
  fs: FS;
  plugins: LoadedPlugin[];
  version: string;
  paths: DaemonPaths;
  startedAt: string;
  reconcile: unknown;
  /** Extra route groups (sessions…) tried before the 404. */
  extraRoutes?: ((req: Request, url: URL, parts: string[]) => Promise<Response | null>)[];
  shutdown(): void;
}

/** Public view of a VM: durable record plus liveness. */
export async function vmView(engine: Engine, vm: VMRecord) {
  let alive = await engine.alive(vm);
  if (!alive && vm.runtime.state === "running" && (await engine.noticeExit(vm.id))) {
    vm = engine.getVM(vm.id); // it died under us: show it demoted and cleaned up
  }
  const handles = await engine.handlesOf(vm);
  return { ...vm, alive, pid: handles?.pid ?? 0 };
}

const CREATE_SCHEMA = {
  name: { type: "string", required: true },
  image: { type: "string" },
  cpus: { type: "integer" },
  memoryMiB: { type: "integer" },
  diskMiB: { type: "integer" },
  workDiskMiB: { type: "integer" },
  driver: { type: "string" },
  net: { type: "string" },
  start: { type: "boolean" },
} as const;

/** The daemon's request handler: a plain (Request) => Response, testable without a socket. */
export function createApp(d: AppDeps): (req: Request) => Promise<Response> {
  const { engine } = d;
  /** Requests received before the current one (GET /v1/health shows it: tests count a command's round trips). */
  let received = 0;

  async function route(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== "v1") throw new BangerError("E_NOT_FOUND", `no such route: ${req.method} ${url.pathname} (routes live under /v1)`);
    const [, group, id, action] = parts;
    const m = req.method;

    if (group === "health" && m === "GET") {
      return json({ version: d.version, pid: process.pid, home: d.paths.home, startedAt: d.startedAt, reconcile: d.reconcile, requestsReceived: received - 1 });
    }
    if (group === "shutdown" && m === "POST") {
      setTimeout(() => d.shutdown(), 10);
      return json({ ok: true });
    }
    if (group === "plugins" && m === "GET" && !id) return json({ plugins: d.plugins });

    if (group === "vms") {
      if (!id && m === "GET") {
        return json({ vms: await Promise.all(engine.listVMs().map((vm) => vmView(engine, vm))) });
      }
      if (!id && m === "POST") {
        const body = await parseBody<{ name: string; image?: string; cpus?: number; memoryMiB?: number; diskMiB?: number; workDiskMiB?: number; driver?: string; net?: string; start?: boolean }>(req, CREATE_SCHEMA);
        const { start, ...params } = body;
        params.driver = await engine.resolveDriver(params.driver); // --vmm: asked for and usable, or the best usable one
        engine.checkCreate(params); // refuse bad input with a 4xx before the stream's 200 goes out
        return ndjson(req, async (emit) => {
          let vm = await engine.create(params, emit.progress);
          if (start) vm = await engine.start(vm.id, emit.progress, emit.signal);
          return { type: "result", data: await vmView(engine, vm) };
        });
      }
      if (id && !action && m === "GET") return json(await vmView(engine, engine.getVM(id)));
      if (id && !action && m === "DELETE") {
        const force = url.searchParams.get("force") === "1";
        const vm = engine.getVM(id);
        d.ssh.drop(vm.id);
        const deleted = await engine.delete(vm.id, { force });
        return json({ deleted: deleted.name, id: deleted.id });
      }
      if (id && m === "POST" && (action === "start" || action === "restart")) {
        await parseBody(req, {});
        const vm = engine.getVM(id);
        if (action === "restart") d.ssh.drop(vm.id);
        return ndjson(req, async (emit) => {
          const out = action === "start" ? await engine.start(vm.id, emit.progress, emit.signal) : await engine.restart(vm.id, emit.progress);
          return { type: "result", data: await vmView(engine, out) };
        });
      }
      if (id && m === "POST" && action === "stop") {
        const body = await parseBody<{ force?: boolean; timeoutMs?: number }>(req, { force: { type: "boolean" }, timeoutMs: { type: "integer" } });
        const vm = engine.getVM(id);
        d.ssh.drop(vm.id);
        return json(await vmView(engine, await engine.stop(vm.id, body)));
      }
      if (id && m === "POST" && action === "exec") {
        const body = await parseBody<{ argv: string[]; stdin?: string }>(req, { argv: { type: "string[]", required: true }, stdin: { type: "string" } }, MAX_EXEC_BODY_BYTES);
        if (body.argv.length === 0) throw new BangerError("E_USAGE", "a command is required after --");
        const command = shellJoin(body.argv); // quoting refuses what no shell can carry (NUL) before the stream's 200
        const vm = await engine.running(id);
        return ndjson(req, (emit) => execIn(vm, command, body.stdin, emit));
      }
      if (id && m === "GET" && action === "ssh-info") {
        const vm = await engine.running(id);
        const t = await sshTargetFor(d.fs, vm);
        return json({ host: t.host, port: t.port, user: t.user, privateKey: t.privateKey, hostKey: t.hostKey });
      }
      if (id && m === "GET" && action === "logs") {
        const vm = engine.getVM(id);
        const follow = url.searchParams.get("follow") === "1";
        const offset = Number(url.searchParams.get("offset") || "0");
        if (!Number.isSafeInteger(offset) || offset < 0) throw new BangerError("E_BAD_REQUEST", `offset must be a byte offset >= 0, not ${JSON.stringify(url.searchParams.get("offset")).slice(0, 40)}`);
        return streamFile(req, vm.runtime.logPath, offset, follow, () => engine.alive(vm), d.fs);
      }
    }

    if (group === "images") return d.images.route(req, url, parts);

    for (const extra of d.extraRoutes ?? []) {
      const r = await extra(req, url, parts);
      if (r) return r;
    }
    throw new BangerError("E_NOT_FOUND", `no such route: ${m} ${url.pathname}`);
  }

  async function execIn(vm: VMRecord, command: string, stdin: string | undefined, emit: Emitter): Promise<StreamEvent> {
    const conn = await d.ssh.get(vm);
    const code = await conn.exec(command, {
      stdin: stdin !== undefined ? Buffer.from(stdin, "base64") : undefined,
      onStdout: emit.stdout,
      onStderr: emit.stderr,
      signal: emit.signal,
    });
    return { type: "exit", code };
  }

  async function handle(req: Request): Promise<Response> {
    const theirs = req.headers.get(VERSION_HEADER);
    // refused before anything runs, so the CLI can replace us and resend without doing it twice
    if (theirs !== null && theirs !== d.version) {
      return errorResponse(new BangerError("E_DAEMON_VERSION", `this daemon is ${d.version}, the CLI is ${theirs}: the CLI replaces the daemon and resends`));
    }
    try {
      return await withRequestScope(`${req.method} ${new URL(req.url).pathname}`, () => route(req));
    } catch (e) {
      return errorResponse(e);
    }
  }

  return async (req: Request) => {
    received++;
    const res = await handle(req);
    res.headers.set(VERSION_HEADER, d.version);
    return res;
  };
}

/** Stream a file from a byte offset; with follow, keep tailing while `stillGoing` says so. */
export function streamFile(req: Request, path: string, offset: number, follow: boolean, stillGoing: () => Promise<boolean>, fs: Pick<FS, "stat" | "readRange">): Response {
  return ndjson(req, async (emit) => {
    let pos = offset;
    for (;;) {
      const size = await fs.stat(path).then((s) => s?.size ?? 0, () => 0);
      if (size > pos) {
        const bytes = await fs.readRange(path, pos, Math.min(size - pos, 1 << 20));
        pos += bytes.length;
        emit.stdout(bytes);
        continue;
      }
      if (!follow || emit.signal.aborted || !(await stillGoing())) break;
      await Bun.sleep(200);
    }
    return { type: "result", data: { offset: pos } };
  });
}
