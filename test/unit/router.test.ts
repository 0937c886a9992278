// The declared routes (src/shared/routes.ts): the daemon's router matches and
// checks requests against them, the client builds requests from them.
import { createPortRoutes } from "../../src/daemon/ports-routes.ts";
import { createStatsRoutes } from "../../src/daemon/stats.ts";
import { createLifetimeRoutes } from "../../src/daemon/lifetime-routes.ts";
import { Lifetimes } from "../../src/core/lifetimes.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonClient } from "../../src/client/daemon-client.ts";
import { errorResponse, MAX_JSON_BODY_BYTES } from "../../src/daemon/http.ts";
import { ImageService } from "../../src/daemon/images.ts";
import { createRouter, type Handlers } from "../../src/daemon/router.ts";
import { createSessionRoutes } from "../../src/daemon/sessions.ts";
import { vmSSHPool } from "../../src/daemon/ssh-pool.ts";
import { createWorkspaceRoutes } from "../../src/daemon/workspace-routes.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { daemonPaths } from "../../src/shared/paths.ts";
import { requestPath, routes, type RouteName } from "../../src/shared/routes.ts";
import { FULL_VERSION, VERSION_HEADER } from "../../src/version.ts";
import { caught, engineWorld } from "../helpers/fakes.ts";

/** A router whose handlers echo what they were given. */
function echo(handlers: Partial<Handlers>) {
  const route = createRouter(handlers);
  return async (method: string, path: string, body?: string, headers: Record<string, string> = {}) => {
    try {
      return await route(new Request(`http://banger${path}`, { method, body, headers }));
    } catch (e) {
      return errorResponse(e);
    }
  };
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  return ((await res.json()) as { error: { code: string; message: string } }).error;
}

describe("router: matching", () => {
  const seen: unknown[] = [];
  const call = echo({
    vmShow: async ({ params }) => {
      seen.push(params);
      return new Response("ok");
    },
    sessionShow: async ({ params }) => {
      seen.push(params);
      return new Response("ok");
    },
    imageImport: async ({ body }) => ({ ...body, dir: "", kernelPath: "", initrdPath: "", rootfsPath: "", kernelVersion: "", sizeBytes: 0, createdAt: "", source: "imported" as const }),
  });

  test("path parameters by name, each segment percent-decoded on its own", async () => {
    seen.length = 0;
    expect((await call("GET", "/v1/vms/web")).status).toBe(200);
    expect((await call("GET", "/v1/vms/..%2F..%2Fetc")).status).toBe(200);
    expect((await call("GET", "/v1/vms/box/sessions/a%20b/")).status).toBe(200);
    expect(seen).toEqual([{ vm: "web" }, { vm: "../../etc" }, { vm: "box", session: "a b" }]);
  });

  test("a JSON answer goes out with the declared status", async () => {
    const res = await call("POST", "/v1/images/import", JSON.stringify({ name: "i", kernel: "/k", rootfs: "/r" }));
    expect(res.status).toBe(201);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await res.json()).toMatchObject({ name: "i", kernel: "/k", rootfs: "/r" });
  });

  test("unknown paths and routes without a handler are 404 naming the route", async () => {
    for (const [m, p, extra] of [
      ["GET", "/v1/nope", ""],
      ["DELETE", "/v1/vms/web/stop/now", ""],
      ["GET", "/v1/vms", ""], // declared, but no handler in this router
      ["GET", "/etc/passwd", " (routes live under /v1)"],
    ] as const) {
      const res = await call(m, p);
      expect(res.status).toBe(404);
      expect(await errorOf(res)).toEqual({ code: "E_NOT_FOUND", message: `no such route: ${m} ${p}${extra}` });
    }
  });

  test("a known path asked with another method is a 405 whose Allow header lists the methods it takes", async () => {
    const res = await call("PATCH", "/v1/vms/web");
    expect(res.status).toBe(405);
    // only the routes this router has handlers for: vmShow (GET); vmDelete has none here
    expect(res.headers.get("allow")).toBe("GET");
    expect(await errorOf(res)).toEqual({ code: "E_METHOD", message: "/v1/vms/web takes GET, not PATCH" });
  });

  test("a malformed percent-encoding is a 400, not a crash", async () => {
    const res = await call("GET", "/v1/vms/%E0%A4%A");
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe("E_BAD_REQUEST");
  });
});

describe("router: query and body are checked against the declaration", () => {
  let got: unknown = null;
  const call = echo({
    sessionLogs: async ({ query }) => {
      got = query;
      return new Response("");
    },
    vmStop: async ({ body }) => {
      got = body;
      return new Response("");
    },
    vmStart: async ({ body }) => {
      got = body;
      return new Response("");
    },
    sessionSend: async ({ req, body }) => {
      got = { body, bytes: new Uint8Array(await req.arrayBuffer()).length };
      return new Response("");
    },
  });

  test("flags, offsets (default 0) and strings; undeclared parameters are ignored", async () => {
    await call("GET", "/v1/vms/a/sessions/s/logs");
    expect(got).toEqual({ stream: undefined, offset: 0, follow: false });
    await call("GET", "/v1/vms/a/sessions/s/logs?stream=stderr&offset=12&follow=1&extra=x");
    expect(got).toEqual({ stream: "stderr", offset: 12, follow: true });
    await call("GET", "/v1/vms/a/sessions/s/logs?follow=yes");
    expect(got).toMatchObject({ follow: false });
  });

  test.each(["-1", "abc", "1e999", "1.5"])("offset=%s is 400 E_BAD_REQUEST", async (v) => {
    const res = await call("GET", `/v1/vms/a/sessions/s/logs?offset=${v}`);
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toEqual({ code: "E_BAD_REQUEST", message: `offset must be a byte offset >= 0, not ${JSON.stringify(v)}` });
  });

  test("the body schema: unknown field, wrong type, missing field, __proto__, too large", async () => {
    const cases: [string, string, string, number, string][] = [
      ["POST", "/v1/vms/a/stop", '{"hard":true}', 400, 'unknown field "hard" (allowed: force, timeoutMs)'],
      ["POST", "/v1/vms/a/stop", '{"timeoutMs":"soon"}', 400, 'field "timeoutMs" must be integer, got "soon"'],
      ["POST", "/v1/vms/a/stop", '{"__proto__":{"x":1}}', 400, 'unknown field "__proto__"'],
      ["POST", "/v1/vms/a/start", '{"bogus":1}', 400, 'unknown field "bogus" (allowed: none)'],
      ["POST", "/v1/vms/a/stop", "[1]", 400, "request body must be a JSON object"],
      ["POST", "/v1/vms/a/stop", `{"force":"${"a".repeat(MAX_JSON_BODY_BYTES)}"}`, 413, "over the 1048576-byte limit"],
    ];
    for (const [m, p, body, status, msg] of cases) {
      const res = await call(m, p, body);
      expect(res.status).toBe(status);
      expect((await errorOf(res)).message).toContain(msg);
    }
    await call("POST", "/v1/vms/a/stop", '{"force":true,"timeoutMs":null}');
    expect(got).toEqual({ force: true });
    await call("POST", "/v1/vms/a/start");
    expect(got).toEqual({});
  });

  test("a raw body is the handler's to read: not parsed, not capped at the JSON limit", async () => {
    const res = await call("POST", "/v1/vms/a/sessions/s/send", "not json {");
    expect(res.status).toBe(200);
    expect(got).toEqual({ body: undefined, bytes: 10 });
  });

  test("a required field", async () => {
    const call2 = echo({ vmExec: async () => new Response("") });
    const res = await call2("POST", "/v1/vms/a/exec", "{}");
    expect(await errorOf(res)).toEqual({ code: "E_BAD_REQUEST", message: 'missing required field "argv"' });
  });
});

describe("every declared route has a handler in the daemon", () => {
  test("app + images + sessions + workspaces + ports + stats + lifetimes cover the table", () => {
    const paths = daemonPaths("/state");
    const { host, ts, hooks, log, make } = engineWorld({ paths, newId: () => "id" });
    try {
      const engine = make();
      const ssh = vmSSHPool(host.ssh, host.fs);
      const sessions = createSessionRoutes({ engine, ssh, host, store: ts.store, log });
      const workspaces = createWorkspaceRoutes({ engine, ssh, host, log });
      const images = new ImageService(ts.store, hooks, host, paths.imagesDir).handlers();
      const ports = createPortRoutes(engine).handlers;
      const stats = createStatsRoutes({ engine, ssh, host }).handlers;
      const lifetimes = createLifetimeRoutes({ engine, clock: host.clock, lifetimes: new Lifetimes({ store: ts.store, clock: host.clock, log, stop: async () => {}, delete: async () => {} }) });
      // the app's own group is typed Omit<Handlers, the other groups>: the compiler checks it is complete
      const others = new Set([...Object.keys(sessions.handlers), ...Object.keys(workspaces.handlers), ...Object.keys(images), ...Object.keys(ports), ...Object.keys(stats), ...Object.keys(lifetimes)]);
      const missing = (Object.keys(routes) as RouteName[]).filter((k) => !others.has(k) && /^(session|workspace|image|port|stats|lifetime)/.test(k));
      expect(missing).toEqual([]);
    } finally {
      ts.cleanup();
    }
  });

  test("no two routes share a method and path; every path is under /v1", () => {
    const seen = new Set<string>();
    for (const def of Object.values(routes)) {
      const key = `${def.method} ${def.path.replace(/:[A-Za-z]+/g, ":")}`;
      expect(seen.has(key)).toBe(false);
      seen.add(key);
      expect(def.path.startsWith("/v1/")).toBe(true);
    }
    expect(seen.size).toBe(Object.keys(routes).length);
  });
});

describe("client: requests built from the table", () => {
  test("requestPath fills parameters (encoded) and the query (false flags left out)", () => {
    expect(requestPath(routes.vmStop, { params: { vm: "a/b c" } })).toBe("/v1/vms/a%2Fb%20c/stop");
    expect(requestPath(routes.vmDelete, { params: { vm: "web" }, query: { force: false } })).toBe("/v1/vms/web");
    expect(requestPath(routes.vmDelete, { params: { vm: "web" }, query: { force: true } })).toBe("/v1/vms/web?force=1");
    expect(requestPath(routes.sessionLogs, { params: { vm: "v", session: "s" }, query: { stream: "stderr", offset: 7, follow: true } })).toBe("/v1/vms/v/sessions/s/logs?stream=stderr&offset=7&follow=1");
    expect(() => requestPath(routes.vmStop, {})).toThrow(/"vm" is missing/);
  });

  let dir = "";
  let server: ReturnType<typeof Bun.serve> | null = null;
  const got: { method: string; url: string; type: string | null; body: string }[] = [];
  let answer: () => Response = () => Response.json({});
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "banger-router-"));
    server = Bun.serve({
      unix: join(dir, "bangerd.sock"),
      fetch: async (req: Request) => {
        got.push({ method: req.method, url: new URL(req.url).pathname + new URL(req.url).search, type: req.headers.get("content-type"), body: await req.text() });
        const res = answer();
        res.headers.set(VERSION_HEADER, FULL_VERSION);
        return res;
      },
    } as unknown as Parameters<typeof Bun.serve>[0]);
  });
  afterAll(async () => {
    await server?.stop(true);
    rmSync(dir, { recursive: true, force: true });
  });

  test("call, raw and stream send the declared method, path, query and body", async () => {
    const c = new DaemonClient(dir);
    got.length = 0;
    answer = () => Response.json({ name: "web", alive: true });
    const vm = await c.call("vmStop", { params: { vm: "web" }, body: { force: true } });
    expect(vm.alive).toBe(true); // typed VMView, no cast
    answer = () => Response.json({ vms: [] });
    expect((await c.call("vmList")).vms).toEqual([]);
    answer = () => Response.json({ bytesWritten: 3 });
    await c.call("sessionSend", { params: { vm: "web", session: "s1" }, raw: new Uint8Array([1, 2, 3]) });
    answer = () => new Response("From abc\n");
    expect(new TextDecoder().decode(await c.raw("workspaceDiff", { params: { vm: "web" }, query: { guestPath: "/root/repo" } }))).toBe("From abc\n");
    answer = () => new Response('{"type":"progress","message":"p"}\n{"type":"result","data":{"offset":9}}\n');
    const events: string[] = [];
    const ev = await c.stream("vmLogs", { params: { vm: "web" }, query: { follow: true } }, (e) => void events.push(e.type));
    expect(ev.data.offset).toBe(9);
    expect(events).toEqual(["progress"]);
    expect(got.map((g) => [g.method, g.url, g.type, g.body.length])).toEqual([
      ["POST", "/v1/vms/web/stop", "application/json", '{"force":true}'.length],
      ["GET", "/v1/vms", null, 0],
      ["POST", "/v1/vms/web/sessions/s1/send", "application/octet-stream", 3],
      ["GET", "/v1/vms/web/workspace/diff?guestPath=%2Froot%2Frepo", null, 0],
      ["GET", "/v1/vms/web/logs?follow=1", null, 0],
    ]);
  });

  test("an error answer becomes the daemon's BangerError, for JSON, raw and stream routes alike", async () => {
    const c = new DaemonClient(dir);
    answer = () => Response.json({ error: { code: "E_VM_NOT_FOUND", message: "vm not found: x" } }, { status: 404 });
    for (const send of [() => c.call("vmShow", { params: { vm: "x" } }), () => c.raw("workspaceDiff", { params: { vm: "x" } }), () => c.stream("vmStart", { params: { vm: "x" } }, () => {})]) {
      const e = await caught(send());
      expect(e).toBeInstanceOf(BangerError);
      expect([e.code, e.message]).toEqual(["E_VM_NOT_FOUND", "vm not found: x"]);
    }
  });
});

describe("errorResponse", () => {
  test("a failure because the host's disk filled is a 507 E_NO_SPACE saying so, wherever it was thrown; others keep their status", async () => {
    const full = errorResponse(new Error("database or disk is full"));
    expect(full.status).toBe(507);
    expect(await full.json()).toEqual({ error: { code: "E_NO_SPACE", message: "the host's disk is full (database or disk is full): free space on it and try again" } });
    const plain = errorResponse(new Error("boom"));
    expect([plain.status, ((await plain.json()) as { error: { code: string } }).error.code]).toEqual([500, "E_INTERNAL"]);
  });
});
