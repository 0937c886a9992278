// The daemon's request handler, called without a socket (like fastify's inject).
import { afterEach, describe, expect, test } from "bun:test";
import { createApp } from "../../src/daemon/app.ts";
import { errorResponse, type StreamEvent } from "../../src/daemon/http.ts";
import { ImageService } from "../../src/daemon/images.ts";
import type { Handlers } from "../../src/daemon/router.ts";
import { vmSSHPool } from "../../src/daemon/ssh-pool.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { daemonPaths, vmPaths } from "../../src/shared/paths.ts";
import { engineWorld, type TestStore } from "../helpers/fakes.ts";

const stores: TestStore[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
});

function setup(routes: Partial<Handlers> = {}) {
  const paths = daemonPaths("/state");
  let n = 0;
  const { host, driver, ts, hooks, make } = engineWorld({ paths, newId: () => `id${++n}` });
  stores.push(ts);
  const engine = make();
  let shutdowns = 0;
  const app = createApp({
    engine,
    images: new ImageService(ts.store, hooks, host, paths.imagesDir),
    ssh: vmSSHPool(host.ssh, host.fs),
    fs: host.fs,
    plugins: [{ name: "fake-vmm", description: "", source: "test", hooks: [], drivers: ["fake"], storage: [], nets: [] }],
    version: "9.9.9-test",
    paths,
    startedAt: "2026-01-01T00:00:00.000Z",
    reconcile: [],
    routes,
    shutdown: () => void shutdowns++,
  });
  const call = (method: string, path: string, body?: string | object) =>
    app(
      new Request(`http://banger${path}`, {
        method,
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      }),
    );
  return { app, call, engine, hooks, host, driver, ts, shutdowns: () => shutdowns };
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message"]);
  // a message a person can act on, never a stack trace
  expect(body.error.message).not.toMatch(/\n\s+at |\.ts:\d+/);
  return body.error;
}

async function events(res: Response): Promise<StreamEvent[]> {
  expect(res.headers.get("content-type")).toContain("application/x-ndjson");
  return (await res.text())
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as StreamEvent);
}

describe("basic routes", () => {
  test("GET /v1/health", async () => {
    const { call } = setup();
    const res = await call("GET", "/v1/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ version: "9.9.9-test", pid: process.pid, home: "/state", reconcile: [] });
  });

  test("GET /v1/plugins", async () => {
    const { call } = setup();
    expect(((await (await call("GET", "/v1/plugins")).json()) as { plugins: { name: string }[] }).plugins[0]!.name).toBe("fake-vmm");
  });

  test("unknown routes → 404 E_NOT_FOUND naming the route", async () => {
    const { call } = setup();
    for (const [m, p] of [["GET", "/v1/nope"], ["GET", "/nope"], ["GET", "/"]] as const) {
      const res = await call(m, p);
      expect(res.status).toBe(404);
      const e = await errorOf(res);
      expect(e.code).toBe("E_NOT_FOUND");
      expect(e.message).toContain(p);
    }
  });

  test("a known route asked with another method → 405 E_METHOD with Allow", async () => {
    const { call } = setup();
    for (const [m, p, allow] of [["PATCH", "/v1/vms", "GET, POST"], ["POST", "/v1/health", "GET"]] as const) {
      const res = await call(m, p);
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe(allow);
      const e = await errorOf(res);
      expect(e.code).toBe("E_METHOD");
      expect(e.message).toBe(`${p} takes ${allow}, not ${m}`);
    }
  });

  test("POST /v1/shutdown answers, then shuts down", async () => {
    const s = setup();
    expect((await s.call("POST", "/v1/shutdown")).status).toBe(200);
    await Bun.sleep(30);
    expect(s.shutdowns()).toBe(1);
  });
});

describe("the version handshake rides on every request", () => {
  const withVersion = (method: string, path: string, version: string, body?: object) =>
    new Request(`http://banger${path}`, { method, headers: { "x-banger-version": version }, body: body && JSON.stringify(body) });

  test("every answer carries the daemon's version: JSON, errors and streams", async () => {
    const { app, call } = setup();
    expect((await call("GET", "/v1/vms")).headers.get("x-banger-version")).toBe("9.9.9-test");
    expect((await call("GET", "/v1/nope")).headers.get("x-banger-version")).toBe("9.9.9-test");
    const stream = await app(withVersion("POST", "/v1/vms", "9.9.9-test", { name: "v1", image: "default" }));
    expect(stream.headers.get("x-banger-version")).toBe("9.9.9-test");
    await stream.text();
  });

  test("a request naming another build is refused unread: 409 E_DAEMON_VERSION, nothing done", async () => {
    const { app, engine } = setup();
    const res = await app(withVersion("POST", "/v1/vms", "0.0.1+other", { name: "never" }));
    expect(res.status).toBe(409);
    expect(res.headers.get("x-banger-version")).toBe("9.9.9-test");
    const e = await errorOf(res);
    expect(e.code).toBe("E_DAEMON_VERSION");
    expect(e.message).toContain("0.0.1+other");
    expect(engine.listVMs()).toEqual([]);
    // the same build, or no header at all (health, shutdown, older CLIs), is served
    expect((await app(withVersion("GET", "/v1/vms", "9.9.9-test"))).status).toBe(200);
  });

  test("health counts the requests received before it", async () => {
    const { call } = setup();
    const count = async () => ((await (await call("GET", "/v1/health")).json()) as { requestsReceived: number }).requestsReceived;
    expect(await count()).toBe(0);
    await call("GET", "/v1/vms");
    await call("GET", "/v1/nope");
    expect(await count()).toBe(3);
  });
});

describe("bad input is a 4xx with the error envelope", () => {
  test("malformed JSON → 400 E_BAD_REQUEST", async () => {
    const { call } = setup();
    const res = await call("POST", "/v1/vms", '{"name": "web"');
    expect(res.status).toBe(400);
    const e = await errorOf(res);
    expect(e.code).toBe("E_BAD_REQUEST");
    expect(e.message).toContain("malformed JSON");
  });

  test("a non-object body → 400", async () => {
    const { call } = setup();
    for (const body of ["[1,2]", '"web"', "42", "null"]) {
      const res = await call("POST", "/v1/vms", body);
      expect(res.status).toBe(400);
      expect((await errorOf(res)).message).toContain("JSON object");
    }
  });

  test("unknown field → 400 naming it and the allowed ones", async () => {
    const { call } = setup();
    const res = await call("POST", "/v1/vms", { name: "web", memory: 512 });
    expect(res.status).toBe(400);
    const e = await errorOf(res);
    expect(e.code).toBe("E_BAD_REQUEST");
    expect(e.message).toContain('"memory"');
    expect(e.message).toContain("memoryMiB");
  });

  test("wrong types → 400 naming the field and the type", async () => {
    const { call } = setup();
    const cases: [object, string][] = [
      [{ name: 5 }, '"name" must be string'],
      [{ name: "web", cpus: "2" }, '"cpus" must be integer'],
      [{ name: "web", cpus: 1.5 }, '"cpus" must be integer'],
      [{ name: "web", start: "yes" }, '"start" must be boolean'],
    ];
    for (const [body, msg] of cases) {
      const res = await call("POST", "/v1/vms", body);
      expect(res.status).toBe(400);
      expect((await errorOf(res)).message).toContain(msg);
    }
  });

  test("missing required field → 400", async () => {
    const { call } = setup();
    const res = await call("POST", "/v1/vms", {});
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toContain('missing required field "name"');
  });

  test("bad vm name in a path → 400 E_BAD_NAME with the rule", async () => {
    const { call } = setup();
    for (const [m, p] of [["GET", "/v1/vms/Bad_Name"], ["DELETE", "/v1/vms/Bad_Name"], ["POST", "/v1/vms/Bad_Name/stop"]] as const) {
      const res = await call(m, p);
      expect(res.status).toBe(400);
      const e = await errorOf(res);
      expect(e.code).toBe("E_BAD_NAME");
      expect(e.message).toContain("[a-z0-9][a-z0-9-]{0,62}");
    }
  });

  test("bad vm name on create → HTTP 400 E_BAD_NAME before any stream starts", async () => {
    const { call, ts } = setup();
    const res = await call("POST", "/v1/vms", { name: "Bad_Name" });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe("E_BAD_NAME");
    expect(ts.store.listVMs()).toEqual([]);
  });

  test("unknown vm → 404 'vm not found: x'", async () => {
    const { call } = setup();
    for (const [m, p] of [["GET", "/v1/vms/x"], ["DELETE", "/v1/vms/x"], ["POST", "/v1/vms/x/stop"], ["POST", "/v1/vms/x/start"]] as const) {
      const res = await call(m, p);
      expect(res.status).toBe(404);
      expect(await errorOf(res)).toEqual({ code: "E_VM_NOT_FOUND", message: "vm not found: x" });
    }
  });

  test("unknown field / wrong type on stop → 400", async () => {
    const { call, engine } = setup();
    await engine.create({ name: "web" });
    expect((await call("POST", "/v1/vms/web/stop", { force: "yes" })).status).toBe(400);
    expect((await call("POST", "/v1/vms/web/stop", { hard: true })).status).toBe(400);
    expect((await call("POST", "/v1/vms/web/start", { bogus: 1 })).status).toBe(400);
  });

  test("exec on a VM that isn't running → 409 E_STATE telling how to start it", async () => {
    const { call, engine } = setup();
    await engine.create({ name: "web" });
    const res = await call("POST", "/v1/vms/web/exec", { argv: ["true"] });
    expect(res.status).toBe(409);
    const e = await errorOf(res);
    expect(e.code).toBe("E_STATE");
    expect(e.message).toContain("banger vm start web");
  });

  test("an unexpected exception → 500 E_INTERNAL with its message only", async () => {
    const { call } = setup({
      pluginList: async () => {
        throw new TypeError("cannot read properties of undefined");
      },
    });
    const res = await call("GET", "/v1/plugins");
    expect(res.status).toBe(500);
    expect(await errorOf(res)).toEqual({ code: "E_INTERNAL", message: "cannot read properties of undefined" });
  });

  test("BangerError codes map to their HTTP status", async () => {
    const { call } = setup({
      vmList: async () => {
        throw new BangerError("E_CONFLICT", "port taken");
      },
    });
    const res = await call("GET", "/v1/vms");
    expect(res.status).toBe(409);
    expect((await errorOf(res)).code).toBe("E_CONFLICT");
  });
});

describe("vm lifecycle over the handler", () => {
  test("create (+start) streams progress then a result; list/show/stop/delete", async () => {
    const { call, driver } = setup();
    const evs = await events(await call("POST", "/v1/vms", { name: "web", start: true, cpus: 2 }));
    expect(evs.some((e) => e.type === "progress" && e.message === "launching fake")).toBe(true);
    const result = evs.at(-1) as { type: "result"; data: { name: string; alive: boolean; pid: number; runtime: { state: string } } };
    expect(result.type).toBe("result");
    expect(result.data).toMatchObject({ name: "web", alive: true, runtime: { state: "running" } });
    expect(result.data.pid).toBeGreaterThan(0);

    const list = (await (await call("GET", "/v1/vms")).json()) as { vms: { name: string; alive: boolean }[] };
    expect(list.vms.map((v) => [v.name, v.alive])).toEqual([["web", true]]);

    const shown = (await (await call("GET", "/v1/vms/web")).json()) as { spec: { cpus: number } };
    expect(shown.spec.cpus).toBe(2);

    const stopped = await call("POST", "/v1/vms/web/stop", { force: true });
    expect(stopped.status).toBe(200);
    expect(await stopped.json()).toMatchObject({ alive: false, pid: 0, runtime: { state: "stopped" } });
    expect(driver.kills.length).toBe(1);

    const del = await call("DELETE", "/v1/vms/web");
    expect(await del.json()).toEqual({ deleted: "web", id: "id1" });
    expect((await call("GET", "/v1/vms/web")).status).toBe(404);
  });

  test("an empty body is accepted where every field is optional", async () => {
    const { call, engine } = setup();
    await engine.create({ name: "web" });
    const evs = await events(await call("POST", "/v1/vms/web/start"));
    expect(evs.at(-1)).toMatchObject({ type: "result", data: { alive: true } });
  });

  test("a running exec's stream names it first; a signal for it reaches the command (INT, TERM, HUP; SIG prefix taken); others, another VM's or an ended one are refused", async () => {
    const { call, host, ts } = setup();
    for (const [name, port] of [["web", 2222], ["db", 2223]] as const) {
      await events(await call("POST", "/v1/vms", { name, start: true }));
      const vm = ts.store.getVM(name)!;
      // a guest to talk to: no network plugin here gives it one
      ts.store.upsertVM({ ...vm, runtime: { ...vm.runtime, sshHost: "127.0.0.1", sshPort: port } });
      await host.fs.writeFile(vmPaths(vm.runtime.vmDir).clientKey, "key");
      await host.fs.writeFile(vmPaths(vm.runtime.vmDir).hostPubKey, "ssh-ed25519 AAAA");
    }
    let stop: (code: number) => void = () => {};
    host.ssh.respond = () => new Promise((resolve) => (stop = (code) => resolve({ exitCode: code })));
    host.ssh.onSignal = (name) => name === "TERM" && stop(143);
    const res = await call("POST", "/v1/vms/web/exec", { argv: ["sleep", "100"] });
    const reader = res.body!.getReader();
    const first = JSON.parse(new TextDecoder().decode((await reader.read()).value).split("\n")[0]!) as StreamEvent;
    expect(first.type).toBe("exec");
    const id = (first as { id: string }).id;
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    const signal = (vm: string, exec: string, sig: string) => call("POST", `/v1/vms/${vm}/exec/${exec}/signal`, { signal: sig });
    expect(await errorOf(await signal("web", id, "KILL"))).toEqual({ code: "E_BAD_REQUEST", message: 'signal "KILL": a running command takes INT, TERM or HUP' });
    expect((await errorOf(await signal("db", id, "INT"))).code).toBe("E_NOT_FOUND");
    expect(await (await signal("web", id, "INT")).json()).toEqual({ sent: "INT" });
    expect(await (await signal("web", id, "SIGHUP")).json()).toEqual({ sent: "HUP" });
    expect(await (await signal("web", id, "TERM")).json()).toEqual({ sent: "TERM" });
    let rest = "";
    for (let c = await reader.read(); !c.done; c = await reader.read()) rest += new TextDecoder().decode(c.value);
    expect(JSON.parse(rest.trim().split("\n").at(-1)!)).toEqual({ type: "exit", code: 143 });
    expect(host.ssh.conns.flatMap((c) => c.signals)).toEqual(["INT", "HUP", "TERM"]);
    // it ended: nothing to send to
    const gone = await errorOf(await signal("web", id, "INT"));
    expect(gone).toEqual({ code: "E_NOT_FOUND", message: `no command ${id} runs in vm web (it ended, or was never started)` });
  });

  test("a start failure arrives in-band in the envelope shape", async () => {
    const { call, engine, driver } = setup();
    await engine.create({ name: "web" });
    driver.failLaunch = new Error("qemu: no kernel");
    const evs = await events(await call("POST", "/v1/vms/web/start", {}));
    expect(evs.at(-1)).toEqual({ type: "error", error: { code: "E_INTERNAL", message: "qemu: no kernel" } });
  });

  test("images: bad name → 400, unknown → 404", async () => {
    const { call } = setup();
    expect((await call("GET", "/v1/images/Bad_Name")).status).toBe(400);
    const res = await call("GET", "/v1/images/missing");
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("E_IMAGE_NOT_FOUND");
    const list = (await (await call("GET", "/v1/images")).json()) as { images: { name: string }[] };
    expect(list.images.map((i) => i.name)).toEqual(["default"]);
  });
});

describe("undo failures in the error envelope", () => {
  test("errorResponse: undoFailures only when there are some", async () => {
    const plain = (await errorResponse(new BangerError("E_STATE", "boom")).json()) as { error: object };
    expect(plain).toEqual({ error: { code: "E_STATE", message: "boom" } });
    const res = errorResponse(new BangerError("E_TIMEOUT", "no ssh", { undoFailures: ["net-tap:vm:start:before: tap x: busy"] }));
    expect(res.status).toBe(504);
    expect(await res.json()).toEqual({ error: { code: "E_TIMEOUT", message: "no ssh", undoFailures: ["net-tap:vm:start:before: tap x: busy"] } });
  });

  test("a start whose undo fails: the in-band error event carries the first failure and every undo failure", async () => {
    const { call, hooks, ts } = setup();
    hooks.hook("scratch", "vm:start:before", ({ op }) => {
      op.defer("scratch disk", () => {
        throw new Error("device busy");
      });
      throw new BangerError("E_STATE", "refused");
    });
    await call("POST", "/v1/vms", { name: "u" }).then((r) => r.text());
    const evs = await events(await call("POST", "/v1/vms/u/start", {}));
    expect(evs.at(-1)).toEqual({ type: "error", error: { code: "E_STATE", message: "scratch:vm:start:before: refused", undoFailures: ["scratch:vm:start:before: scratch disk: device busy"] } });
    expect(ts.store.getVM("u")!.runtime.lastError).toBe("scratch:vm:start:before: refused (undo also failed: scratch:vm:start:before: scratch disk: device busy)");
  });
});

describe("image build is an operation", () => {
  test("a failing build hook: its own undo and the build dir are undone once, the failure is the error", async () => {
    const { hooks, host, ts } = setup();
    const log = { lines: [] as string[], info() {}, warn(m: string) { log.lines.push(m); }, error() {}, debug() {} };
    const images = new ImageService(ts.store, hooks, host, "/state/images", log);
    const undone: string[] = [];
    hooks.hook("img", "image:build", ({ dir, op }) => {
      op.defer("cache lock", () => {
        undone.push(`lock ${dir}`);
        throw new Error("lock file vanished");
      });
      throw new BangerError("E_INTERNAL", "mmdebstrap failed");
    });
    const err = await images.build("fresh", false, () => {}).catch((e) => e);
    expect(err.message).toBe("img:image:build: mmdebstrap failed");
    expect(err.undoFailures).toEqual(["img:image:build: cache lock: lock file vanished"]);
    expect(undone.length).toBe(1);
    expect(log.lines).toEqual(["image build fresh: undo img:image:build: cache lock: lock file vanished"]);
    const made = host.fs.ops.filter((o) => o.startsWith("mkdirp /state/images/.fresh.build-"));
    expect(made.length).toBe(1);
    expect(host.fs.ops.filter((o) => o === made[0]!.replace("mkdirp", "rmrf")).length).toBe(1);
  });
});
