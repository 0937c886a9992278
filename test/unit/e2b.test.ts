// The E2B front door without a socket: keys, the listener's dispatch and
// refusals, and the control plane's JSON shapes, with a recording stand-in
// for the daemon's own API (what the front door translates into).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { VMView } from "../../src/shared/api.ts";
import { E2BServer, isLoopback, parseListen, sandboxFromHost } from "../../src/daemon/e2b/server.ts";
import { ENVD_VERSION, pageOf, parseMetadataQuery, parseStates, timeoutMs } from "../../src/daemon/e2b/control.ts";
import { checkKey, createKey, hashKey, sameToken } from "../../src/daemon/e2b/keys.ts";
import type { Envd, EnvdSandbox } from "../../src/daemon/e2b/envd/index.ts";
import { rawDb, sampleVM, testLogger, testStore, fakeClock, type TestStore } from "../helpers/fakes.ts";

/** The daemon's API as the front door sees it: records every call, answers from a map of VMs. */
function fakeDaemon(store: TestStore["store"], guestPorts: Record<number, number> = {}) {
  const calls: { method: string; path: string; body: unknown }[] = [];
  const published: { proto: string; hostIP: string; guestPort: number; boundPort: number }[] = [];
  const vms = new Map<string, VMView>();
  const images = new Set(["tiny", "e2b-base", "default"]);
  const app = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const body = req.headers.get("content-type") ? await req.json() : undefined;
    calls.push({ method: req.method, path: url.pathname + url.search, body });
    const err = (status: number, code: string, message: string) => Response.json({ error: { code, message } }, { status });
    let m: RegExpExecArray | null;
    if (req.method === "GET" && (m = /^\/v1\/images\/(.+)$/.exec(url.pathname))) return images.has(m[1]!) ? Response.json({ name: m[1] }) : err(404, "E_IMAGE_NOT_FOUND", `image not found: ${m[1]}`);
    if (req.method === "POST" && url.pathname === "/v1/vms") {
      const b = body as { name: string; image: string; ttlMs?: number };
      const vm = { ...sampleVM({ id: `id-${b.name}`, name: b.name, state: "running" }), alive: true, pid: 1 } as VMView;
      vm.spec.image = b.image;
      vm.lifetime = { expiresAt: b.ttlMs ? new Date(Date.parse("2026-01-01T00:00:00Z") + b.ttlMs).toISOString() : "", ttlAction: "delete", idleTimeoutMs: 0, idleAction: "stop", lastActiveAt: "", idleDeadline: "" };
      vms.set(vm.id, vm);
      store.upsertVM(vm); // the sandbox row refers to it
      return new Response(JSON.stringify({ type: "result", data: vm }) + "\n", { headers: { "content-type": "application/x-ndjson" } });
    }
    if (req.method === "GET" && url.pathname === "/v1/vms") return Response.json({ vms: [...vms.values()] });
    if ((m = /^\/v1\/vms\/([^/]+)\/ports$/.exec(url.pathname))) {
      // a "published port": the guest port's stand-in server on this host
      if (req.method === "POST") {
        const guestPort = Number((body as { spec: string }).spec.split(":").at(-1));
        const added = { proto: "tcp", hostIP: "127.0.0.1", guestPort, boundPort: guestPorts[guestPort] ?? 1 };
        published.push(added);
        return Response.json({ ports: published, added }, { status: 201 });
      }
      return Response.json({ ports: published });
    }
    if (req.method === "POST" && (m = /^\/v1\/vms\/([^/]+)\/lifetime$/.exec(url.pathname))) {
      const vm = [...vms.values()].find((v) => v.name === decodeURIComponent(m![1]!) || v.id === decodeURIComponent(m![1]!));
      return vm ? Response.json(vm) : err(404, "E_VM_NOT_FOUND", "vm not found");
    }
    if (req.method === "POST" && (m = /^\/v1\/vms\/([^/]+)\/(pause|resume|start)$/.exec(url.pathname))) {
      const vm = vms.get(decodeURIComponent(m[1]!));
      if (!vm) return err(404, "E_VM_NOT_FOUND", "vm not found");
      vm.runtime.state = m[2] === "pause" ? "paused" : "running";
      return Response.json(vm);
    }
    if ((m = /^\/v1\/vms\/([^/]+)$/.exec(url.pathname))) {
      const key = decodeURIComponent(m[1]!);
      const vm = vms.get(key) ?? [...vms.values()].find((v) => v.name === key);
      if (!vm) return err(404, "E_VM_NOT_FOUND", "vm not found");
      if (req.method === "DELETE") vms.delete(vm.id);
      return Response.json(vm);
    }
    return err(404, "E_NOT_FOUND", `no such route ${url.pathname}`);
  };
  return { app, calls, vms, images, published };
}

function fakeEnvd() {
  const seen: { path: string; sandbox: EnvdSandbox }[] = [];
  const envd: Envd = {
    async handle(req, sandbox) {
      seen.push({ path: new URL(req.url).pathname, sandbox });
      return new Response("envd", { status: 200 });
    },
  };
  return { envd, seen };
}

describe("keys", () => {
  let ts: TestStore;
  beforeEach(() => (ts = testStore()));
  afterEach(() => ts.cleanup());

  test("a key is E2B-shaped, shown once, stored only as its hash; checks take it and nothing else", () => {
    const k = createKey(ts.store.e2b, "ci", new Date());
    expect(k.key).toMatch(/^e2b_[0-9a-f]{40}$/);
    expect(k.prefix).toBe(`${k.key.slice(0, 8)}…`);
    const rows = rawDb(ts.store).query<Record<string, string>, []>("SELECT * FROM e2b_keys").all();
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(k.key);
    expect(rows[0]!.hash).toBe(hashKey(k.key));
    expect(checkKey(ts.store.e2b, k.key)?.id).toBe(k.id);
    expect(checkKey(ts.store.e2b, `${k.key.slice(0, -1)}0` === k.key ? `${k.key.slice(0, -1)}1` : `${k.key.slice(0, -1)}0`)).toBeNull();
    expect(checkKey(ts.store.e2b, null)).toBeNull();
    expect(checkKey(ts.store.e2b, "")).toBeNull();
    expect(checkKey(ts.store.e2b, hashKey(k.key))).toBeNull(); // the stored hash is not a key
    expect(ts.store.e2b.listKeys()).toEqual([{ id: k.id, name: "ci", prefix: k.prefix, createdAt: k.createdAt }]);
    expect(() => createKey(ts.store.e2b, "ci", new Date())).toThrow(/already exists/);
    expect(() => createKey(ts.store.e2b, "bad name", new Date())).toThrow(/bad key name/);
    expect(ts.store.e2b.removeKey("ci")?.id).toBe(k.id);
    expect(checkKey(ts.store.e2b, k.key)).toBeNull();
  });

  test("two keys differ (crypto randomness); tokens compare in full", () => {
    const a = createKey(ts.store.e2b, undefined, new Date());
    const b = createKey(ts.store.e2b, undefined, new Date());
    expect(a.key).not.toBe(b.key);
    expect(sameToken("abc", "abc")).toBe(true);
    expect(sameToken("abd", "abc")).toBe(false);
    expect(sameToken("ab", "abc")).toBe(false);
    expect(sameToken(null, "abc")).toBe(false);
  });
});

describe("parsing", () => {
  test("listen addresses, loopback, PORT-ID host names", () => {
    expect(parseListen("127.0.0.1:49982")).toEqual({ host: "127.0.0.1", port: 49982 });
    expect(parseListen("[::1]:0")).toEqual({ host: "::1", port: 0 });
    for (const bad of ["nope", "1.2.3.4", ":80", "h:99999", "h:80;rm", "h :80"]) expect(() => parseListen(bad)).toThrow(/--listen must be HOST:PORT/);
    expect(isLoopback("127.0.0.1") && isLoopback("127.1.2.3") && isLoopback("::1") && isLoopback("localhost")).toBe(true);
    expect(isLoopback("0.0.0.0") || isLoopback("192.0.2.1")).toBe(false);
    expect(sandboxFromHost("3000-e2b-abc.localhost:49982")).toEqual({ port: 3000, id: "e2b-abc" });
    expect(sandboxFromHost("127.0.0.1:49982")).toBeNull();
    expect(sandboxFromHost(null)).toBeNull();
  });

  test("metadata query as the SDK encodes it (pairs encoded, then the whole value again)", () => {
    const md = { "k&=y": "v =&%/é", team: "a" };
    const inner = new URLSearchParams(Object.fromEntries(Object.entries(md).map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)]))).toString();
    const url = new URL(`http://x/v2/sandboxes?metadata=${encodeURIComponent(inner)}`);
    expect(parseMetadataQuery(url.searchParams.get("metadata"))).toEqual(md);
    expect(parseMetadataQuery(null)).toEqual({});
  });

  test("states and timeouts", () => {
    expect(parseStates(new URL("http://x/?state=running,paused"))).toEqual(new Set(["running", "paused"]));
    expect(parseStates(new URL("http://x/?state=paused&state=running"))).toEqual(new Set(["running", "paused"]));
    expect(parseStates(new URL("http://x/"))).toBeNull();
    expect(() => parseStates(new URL("http://x/?state=dead"))).toThrow(/running or paused/);
    expect(timeoutMs(60, 15)).toBe(60_000);
    expect(timeoutMs(undefined, 15)).toBe(15_000);
    expect(timeoutMs(undefined, undefined)).toBeUndefined();
    for (const bad of [-1, 1.5, "60", 86_401]) expect(() => timeoutMs(bad, 15)).toThrow(/timeout/);
  });

  test("pages: in start order, the token resumes after the last one given, and none after the last page", () => {
    const items = ["c", "a", "b", "d", "e"].map((id, i) => ({ sandboxID: id, startedAt: `2026-01-01T00:00:0${i % 2}Z` }));
    const p1 = pageOf(items, 2, null);
    expect(p1.page.map((x) => x.sandboxID)).toEqual(["b", "c"]);
    const p2 = pageOf(items, 2, p1.next);
    expect(p2.page.map((x) => x.sandboxID)).toEqual(["e", "a"]);
    const p3 = pageOf(items, 2, p2.next);
    expect(p3.page.map((x) => x.sandboxID)).toEqual(["d"]);
    expect(p3.next).toBeNull();
    expect(pageOf(items, 5, null).next).toBeNull();
  });
});

describe("the listener", () => {
  let ts: TestStore;
  let d: ReturnType<typeof fakeDaemon>;
  let e: ReturnType<typeof fakeEnvd>;
  let server: E2BServer;
  let key: string;
  const log = testLogger();
  beforeEach(() => {
    ts = testStore();
    d = fakeDaemon(ts.store);
    e = fakeEnvd();
    server = new E2BServer({ repo: ts.store.e2b, log, clock: fakeClock(), app: () => d.app, envd: async () => e.envd, base: { ensure: async () => {}, build: async () => {} } });
    key = createKey(ts.store.e2b, "t", new Date()).key;
  });
  afterEach(() => ts.cleanup());

  const api = (method: string, path: string, body?: unknown, k: string | null = key) =>
    server.handle(new Request(`http://127.0.0.1:49982${path}`, { method, headers: { ...(k ? { "X-API-Key": k } : {}), ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined }));

  test("control plane: no key, a wrong one, a malformed one → 401 {code, message}, and the daemon is never asked", async () => {
    for (const k of [null, `e2b_${"0".repeat(40)}`, "x", key.toUpperCase()]) {
      const r = await api("POST", "/v2/sandboxes", { templateID: "tiny" }, k);
      expect(r.status).toBe(401);
      expect(await r.json()).toEqual({ code: 401, message: expect.stringContaining("API key") });
    }
    expect(d.calls).toEqual([]);
  });

  test("create: the daemon's create with the template's image, the timeout as TTL and the VMM; the SDK's shape back", async () => {
    ts.store.e2b.setSetting("vmm", "qemu");
    const r = await api("POST", "/v2/sandboxes", { templateID: "tiny", timeout: 60, metadata: { a: "1" }, envVars: { K: "v" } });
    expect(r.status).toBe(201);
    const body = (await r.json()) as Record<string, string>;
    expect(Object.keys(body).sort()).toEqual(["clientID", "domain", "envdAccessToken", "envdVersion", "sandboxID", "templateID"]);
    // (bun's toMatchObject writes asymmetric matchers into the object it checks: plain checks here)
    expect([body.templateID, body.envdVersion]).toEqual(["tiny", ENVD_VERSION]);
    expect(body.sandboxID).toMatch(/^e2b-[a-z0-9]{16}$/);
    expect(body.envdAccessToken).toMatch(/^[0-9a-f]{48}$/);
    expect(d.calls.map((c) => `${c.method} ${c.path}`)).toEqual(["GET /v1/images/tiny", "POST /v1/vms", `POST /v1/vms/${body.sandboxID}/lifetime`]);
    expect(d.calls[1]!.body).toEqual({ name: body.sandboxID, image: "tiny", start: true, ttlMs: 60_000, ttlAction: "delete", driver: "qemu" });
    // the timeout counts again from when the sandbox is up
    expect(d.calls[2]!.body).toEqual({ ttlMs: 60_000, ttlAction: "delete" });
    expect(ts.store.e2b.getSandbox(body.sandboxID)).toMatchObject({ metadata: { a: "1" }, envVars: { K: "v" }, accessToken: body.envdAccessToken, vmId: `id-${body.sandboxID}` });
    // info and list never carry the token
    const info = await (await api("GET", `/sandboxes/${body.sandboxID}`)).json();
    expect(info).toMatchObject({ sandboxID: body.sandboxID, templateID: "tiny", state: "running", metadata: { a: "1" }, endAt: "2026-01-01T00:01:00.000Z", envdVersion: ENVD_VERSION });
    expect(JSON.stringify(info)).not.toContain(body.envdAccessToken);
    const list = await api("GET", "/v2/sandboxes");
    expect(JSON.stringify(await list.json())).not.toContain(body.envdAccessToken);
  });

  test("connect to a paused sandbox: its timeout is set before the resume (a daemon killed between them leaves a sandbox that goes by itself) and again after it", async () => {
    const id = ((await (await api("POST", "/v2/sandboxes", { templateID: "tiny", timeout: 60 })).json()) as { sandboxID: string }).sandboxID;
    expect((await api("POST", `/sandboxes/${id}/pause`)).status).toBe(204);
    d.calls.length = 0;
    expect((await api("POST", `/sandboxes/${id}/connect`, { timeout: 90 })).status).toBe(201);
    const asked = d.calls.filter((c) => c.method === "POST").map((c) => [c.path, c.body]);
    expect(asked).toEqual([
      [`/v1/vms/id-${id}/lifetime`, { ttlMs: 90_000 }],
      [`/v1/vms/id-${id}/resume`, {}],
      [`/v1/vms/id-${id}/lifetime`, { ttlMs: 90_000 }],
    ]);
  });

  test("create refusals: unknown template 404, bad body 400, bad timeout 400 — all {code, message}", async () => {
    const nf = await api("POST", "/v2/sandboxes", { templateID: "nope" });
    expect(nf.status).toBe(404);
    expect(await nf.json()).toEqual({ code: 404, message: expect.stringContaining(`template "nope" not found`) });
    const bad = await server.handle(new Request("http://x/v2/sandboxes", { method: "POST", headers: { "X-API-Key": key }, body: "{" }));
    expect([bad.status, ((await bad.json()) as { code: number }).code]).toEqual([400, 400]);
    expect((await api("POST", "/v2/sandboxes", { templateID: "tiny", timeout: "1h" })).status).toBe(400);
    expect((await api("POST", "/v2/sandboxes", { templateID: "tiny", metadata: { a: 1 } })).status).toBe(400);
    expect((await api("POST", "/v2/sandboxes", { templateID: "tiny", metadata: { a: "x".repeat(1 << 20) } })).status).toBe(400);
    expect((await api("GET", "/sandboxes/e2b-none")).status).toBe(404);
    expect((await api("GET", "/nope")).status).toBe(404);
    expect(d.calls.filter((c) => c.method === "POST")).toEqual([]);
  });

  test("envd: the token is checked, /health says running or not, everything else goes to envd with the sandbox's env", async () => {
    const made = (await (await api("POST", "/v2/sandboxes", { templateID: "tiny", envVars: { K: "v" } })).json()) as { sandboxID: string; envdAccessToken: string };
    const sb = (path: string, token: string | null, port = "49983") =>
      server.handle(new Request(`http://127.0.0.1:49982${path}`, { method: "POST", headers: { "E2b-Sandbox-Id": made.sandboxID, "E2b-Sandbox-Port": port, ...(token ? { "X-Access-Token": token } : {}) } }));
    expect((await sb("/health", null)).status).toBe(401);
    expect((await sb("/health", "0".repeat(48))).status).toBe(401);
    expect((await sb("/health", made.envdAccessToken)).status).toBe(204);
    const r = await sb("/process.Process/Start", made.envdAccessToken);
    expect(await r.text()).toBe("envd");
    expect(e.seen).toEqual([{ path: "/process.Process/Start", sandbox: { id: made.sandboxID, vm: expect.objectContaining({ name: made.sandboxID }), envVars: { K: "v" } } }]);
    // paused: health 502 and envd is not asked
    d.vms.get(`id-${made.sandboxID}`)!.runtime.state = "paused";
    expect((await sb("/health", made.envdAccessToken)).status).toBe(502);
    expect((await sb("/process.Process/Start", made.envdAccessToken)).status).toBe(502);
    expect(e.seen).toHaveLength(1);
    // gone: 502, as E2B's proxy answers
    d.vms.clear();
    const gone = await sb("/health", made.envdAccessToken);
    expect([gone.status, ((await gone.json()) as { code: number }).code]).toEqual([502, 502]);
    expect((await sb("/health", made.envdAccessToken, "abc")).status).toBe(400);
  });

  test("a sandbox is pending from before its VM is made until it is recorded: a create that fails after the VM was made deletes it; none stays pending", async () => {
    const ok = ((await (await api("POST", "/v2/sandboxes", { templateID: "tiny" })).json()) as { sandboxID: string }).sandboxID;
    expect(ts.store.e2b.getSandbox(ok)).not.toBeNull();
    expect(ts.store.e2b.listPending()).toEqual([]);
    // the step after the VM's create fails: the VM goes again
    const failing = fakeDaemon(ts.store);
    const appWithBadLifetime = async (req: Request) => (new URL(req.url).pathname.endsWith("/lifetime") ? Response.json({ error: { code: "E_INTERNAL", message: "disk full" } }, { status: 500 }) : failing.app(req));
    server = new E2BServer({ repo: ts.store.e2b, log, clock: fakeClock(), app: () => appWithBadLifetime, envd: async () => e.envd, base: { ensure: async () => {}, build: async () => {} } });
    const r = await api("POST", "/v2/sandboxes", { templateID: "tiny" });
    expect(r.status).toBe(500);
    const made = failing.calls.find((c) => c.method === "POST" && c.path === "/v1/vms")!.body as { name: string };
    expect(failing.calls.map((c) => `${c.method} ${c.path}`)).toContain(`DELETE /v1/vms/${made.name}?force=1`);
    expect(failing.vms.size).toBe(0);
    expect(ts.store.e2b.listPending()).toEqual([]);
  });

  test("at daemon start, a VM a killed daemon left half made (pending, no sandbox row) is deleted; a recorded one is kept; a failed deletion stays pending", async () => {
    const kept = ((await (await api("POST", "/v2/sandboxes", { templateID: "tiny" })).json()) as { sandboxID: string }).sandboxID;
    // as a daemon killed mid-create leaves them: the VM made, no sandbox row
    for (const name of ["e2b-half", "e2b-gone"]) ts.store.e2b.addPending(name, "2026-01-01T00:00:00.000Z");
    await d.app(new Request("http://banger/v1/vms", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "e2b-half", image: "tiny" }) }));
    ts.store.e2b.addPending(kept, "2026-01-01T00:00:00.000Z"); // recorded, its pending mark left behind
    d.calls.length = 0;
    expect((await server.reconcile()).swept.sort()).toEqual(["e2b-gone", "e2b-half"]);
    // (then the paused sandboxes' timeouts are looked at: none here)
    expect(d.calls.map((c) => `${c.method} ${c.path}`)).toEqual(["DELETE /v1/vms/e2b-gone?force=1", "DELETE /v1/vms/e2b-half?force=1", "GET /v1/vms"]);
    expect([...d.vms.values()].map((v) => v.name)).toEqual([kept]);
    expect(ts.store.e2b.listPending()).toEqual([]);
    // a daemon that cannot delete it now: it stays pending for the next start
    ts.store.e2b.addPending("e2b-stuck", "2026-01-01T00:00:00.000Z");
    const refusing = async () => Response.json({ error: { code: "E_INTERNAL", message: "busy" } }, { status: 500 });
    const s2 = new E2BServer({ repo: ts.store.e2b, log, clock: fakeClock(), app: () => refusing, envd: async () => e.envd, base: { ensure: async () => {}, build: async () => {} } });
    expect(await s2.reconcile().catch(() => "refused")).toBe("refused");
    expect(ts.store.e2b.listPending().map((p) => p.id)).toEqual(["e2b-stuck"]);
  });

  test("at daemon start, a paused sandbox whose timeout a killed daemon left (mid-pause, mid-connect) has it cleared; a running one, and one paused with `vm pause`, keep theirs", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(((await (await api("POST", "/v2/sandboxes", { templateID: "tiny", timeout: 60 })).json()) as { sandboxID: string }).sandboxID);
    const [pausedWithTtl, pausedClean, running, pausedByCli] = ids as [string, string, string, string];
    // as a kill between the pause and the timeout clear leaves it: paused, its TTL still set (the fake keeps it), marked in flight
    ts.store.e2b.putSandbox({ ...ts.store.e2b.getSandbox(pausedWithTtl)!, inFlight: "pause" });
    await d.app(new Request(`http://banger/v1/vms/id-${pausedWithTtl}/pause`, { method: "POST" }));
    expect((await api("POST", `/sandboxes/${pausedClean}/pause`)).status).toBe(204);
    expect(ts.store.e2b.getSandbox(pausedClean)!.inFlight).toBeUndefined(); // a finished pause leaves no mark
    d.vms.get(`id-${pausedClean}`)!.lifetime!.expiresAt = ""; // what the finished pause's clear did
    // `banger vm pause` of a sandbox's VM: its TTL is the user's to keep
    await d.app(new Request(`http://banger/v1/vms/id-${pausedByCli}/pause`, { method: "POST" }));
    d.calls.length = 0;
    expect(await server.reconcile()).toEqual({ swept: [], untimed: [pausedWithTtl] });
    expect(d.calls.filter((c) => c.method === "POST").map((c) => [c.path, c.body])).toEqual([[`/v1/vms/id-${pausedWithTtl}/lifetime`, { ttlMs: 0 }]]);
    expect(d.calls.some((c) => (c.path.includes(running) || c.path.includes(pausedByCli)) && c.method === "POST")).toBe(false);
    expect(ts.store.e2b.getSandbox(pausedWithTtl)!.inFlight).toBeUndefined();
  });

  test("status: off loopback is a warning; the store remembers where to listen", () => {
    expect(server.status()).toMatchObject({ listening: false, listen: "" });
    ts.store.e2b.setSetting("listen", "0.0.0.0:49982");
    expect(server.status()).toMatchObject({ listening: false, listen: "0.0.0.0:49982", warning: expect.stringContaining("off loopback") });
  });
});

describe("guest ports through a real listener", () => {
  let ts: TestStore;
  let guest: ReturnType<typeof Bun.serve>;
  let server: E2BServer;
  beforeEach(() => {
    ts = testStore();
    // the "guest's" server: HTTP that echoes what it got, and a WebSocket echo
    guest = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req, srv) {
        if (srv.upgrade(req, { data: undefined })) return undefined as unknown as Response;
        return req.text().then((b) => new Response(`${req.method} ${new URL(req.url).pathname}${new URL(req.url).search} ${req.headers.get("x-mine")} ${b}`, { headers: { "x-guest": "1" } }));
      },
      websocket: { message: (ws, m) => void ws.send(typeof m === "string" ? `echo:${m}` : m) },
    });
    const d = fakeDaemon(ts.store, { 7000: guest.port! });
    server = new E2BServer({ repo: ts.store.e2b, log: testLogger(), clock: fakeClock(), app: () => d.app, envd: async () => fakeEnvd().envd, base: { ensure: async () => {}, build: async () => {} } });
  });
  afterEach(() => {
    server.close();
    void guest.stop(true);
    ts.cleanup();
  });

  test("HTTP (method, path, query, headers, body, answer headers) and a WebSocket both ways, by getHost's name", async () => {
    const key = createKey(ts.store.e2b, "t", new Date()).key;
    const st = server.serve({ listen: "127.0.0.1:0" });
    const made = (await (await server.handle(new Request(`${st.apiUrl}/v2/sandboxes`, { method: "POST", headers: { "X-API-Key": key }, body: JSON.stringify({ templateID: "tiny" }) }))).json()) as { sandboxID: string };
    const host = `7000-${made.sandboxID}.localhost:${new URL(st.apiUrl).port}`;
    const res = await fetch(`http://${host}/a/b?q=1`, { method: "POST", headers: { "x-mine": "yes" }, body: "payload" });
    expect([res.status, res.headers.get("x-guest"), await res.text()]).toEqual([200, "1", "POST /a/b?q=1 yes payload"]);
    const ws = new WebSocket(`ws://${host}/ws`);
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      ws.onmessage = (ev) => {
        got.push(String(ev.data));
        if (got.length === 2) resolve();
      };
      ws.onerror = () => reject(new Error("websocket failed"));
    });
    // sent at once: what arrives before the guest side is open is queued, in order
    ws.onopen = () => {
      ws.send("one");
      ws.send("two");
    };
    await done;
    expect(got).toEqual(["echo:one", "echo:two"]);
    ws.close();
  });
});
