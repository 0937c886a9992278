// The E2B endpoint driven by the unmodified `e2b` SDK from npm against a real
// daemon (dist/banger): its sandboxes are fake-VMM VMs (real processes, real
// store, real listener), so create, list, info, timeouts, pause/connect, kill,
// snapshots, fork and the auth refusals all run for real. The control plane
// needs no guest; envd's services (their own tests) need the sshd guest.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Sandbox } from "e2b";
import { alive, FAKE_PLUGIN, killAndWait, tempHome, waitFor } from "../helpers/cli.ts";

const h = tempHome("banger-e2b-");
const run = (args: string[]) => h.run(args, { BANGER_PLUGINS: FAKE_PLUGIN });
let apiUrl = "";
let apiKey = "";
const made: string[] = [];
// every secret the test saw: none may appear in a log or a --json output
const secrets: string[] = [];

const opts = () => ({ apiUrl, sandboxUrl: apiUrl, apiKey });

beforeAll(async () => {
  writeFileSync(join(h.home, "k"), "k");
  writeFileSync(join(h.home, "r"), Buffer.alloc(4096));
  const imported = run(["image", "import", "--name", "tiny", "--kernel", join(h.home, "k"), "--rootfs", join(h.home, "r")]);
  if (imported.code !== 0) throw new Error(`image import: ${imported.stderr}`);
  const s = run(["e2b", "serve", "--listen", "127.0.0.1:0", "--vmm", "fake", "--json"]);
  if (s.code !== 0) throw new Error(`e2b serve: ${s.stderr}`);
  const env = run(["e2b", "env"]);
  if (env.code !== 0) throw new Error(`e2b env: ${env.stderr}`);
  const vars = Object.fromEntries([...env.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
  apiUrl = vars.E2B_API_URL!;
  apiKey = vars.E2B_API_KEY!;
  secrets.push(apiKey);
}, 60_000);

afterAll(async () => {
  const pids = (run(["vm", "list", "--json"]).json() as { pid: number }[]).map((v) => v.pid).filter(Boolean);
  for (const id of made) run(["vm", "delete", id, "--force"]);
  await h.cleanup(pids);
});

async function create(extra: Record<string, unknown> = {}): Promise<Sandbox> {
  const sb = await Sandbox.create("tiny", { ...opts(), timeoutMs: 600_000, ...extra });
  made.push(sb.sandboxId);
  secrets.push((sb as unknown as { envdAccessToken: string }).envdAccessToken);
  return sb;
}

const envd = (id: string, path: string, token: string | null, port = 49983, init: RequestInit = {}) =>
  fetch(`${apiUrl}${path}`, { ...init, headers: { "E2b-Sandbox-Id": id, "E2b-Sandbox-Port": String(port), ...(token === null ? {} : { "X-Access-Token": token }) } });

test("serve + env: the three variables; status and key list as JSON hold no key", () => {
  expect(apiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect(apiKey).toMatch(/^e2b_[0-9a-f]{40}$/);
  // the same key every time: banger's env key is kept
  expect(run(["e2b", "env"]).stdout).toContain(apiKey);
  const st = run(["e2b", "status", "--json"]).json();
  expect(st).toMatchObject({ listening: true, apiUrl, sandboxUrl: apiUrl, vmm: "fake", keys: 1 });
  // serving again (any port) keeps the port already bound, so exported URLs stay right
  expect(run(["e2b", "serve", "--listen", "127.0.0.1:0", "--json"]).json().apiUrl).toBe(apiUrl);
  // a VMM that is not loaded is refused at serve, and not remembered
  const bogus = run(["e2b", "serve", "--vmm", "bogus"]);
  expect([bogus.code, bogus.stderr]).toEqual([2, expect.stringContaining('unknown vmm "bogus"')]);
  expect(run(["e2b", "status", "--json"]).json().vmm).toBe("fake");
  const keys = run(["e2b", "key", "list", "--json"]);
  expect(keys.json()).toHaveLength(1);
  expect(keys.stdout).not.toContain(apiKey);
  expect(run(["e2b", "env", "--json"]).stdout).not.toContain(apiKey);
});

test("create: a banger VM named as the sandbox, with its metadata, template, TTL and a running envd", async () => {
  const before = Date.now();
  const sb = await create({ metadata: { team: "a", run: "1" }, envs: { GREETING: "hi" }, timeoutMs: 120_000 });
  expect(sb.sandboxId).toMatch(/^e2b-[a-z0-9]{16}$/);
  const vm = run(["vm", "show", sb.sandboxId, "--json"]).json();
  expect(vm).toMatchObject({ name: sb.sandboxId, alive: true, spec: { image: "tiny", driver: "fake" }, runtime: { state: "running" } });
  const ttlLeft = Date.parse(vm.lifetime.expiresAt) - before;
  expect(ttlLeft).toBeGreaterThan(110_000);
  expect(ttlLeft).toBeLessThan(140_000);
  const info = await sb.getInfo();
  expect(info).toMatchObject({ sandboxId: sb.sandboxId, templateId: "tiny", metadata: { team: "a", run: "1" }, state: "running", cpuCount: vm.spec.cpus, memoryMB: vm.spec.memoryMiB });
  expect(info.endAt.toISOString()).toBe(vm.lifetime.expiresAt);
  expect(await sb.isRunning()).toBe(true);
  // envd's services come from their own modules: whatever envd is asked reaches it with the sandbox's token only
  const token = (sb as unknown as { envdAccessToken: string }).envdAccessToken;
  expect((await envd(sb.sandboxId, "/health", token)).status).toBe(204);
  // anything else goes to envd (loaded on first use in the compiled daemon); a path none of its services has is its 404
  const nothing = await envd(sb.sandboxId, "/banger-test/nothing", token);
  expect([nothing.status, await nothing.json()]).toEqual([404, { code: 404, message: "envd has no GET /banger-test/nothing" }]);
  expect((await envd(sb.sandboxId, "/health", "wrong")).status).toBe(401);
  expect((await envd(sb.sandboxId, "/health", null)).status).toBe(401);
  expect((await envd("e2b-nosuchsandbox00", "/health", token)).status).toBe(502);
});

test("no template named: the SDK's default `base`, which is the image e2b-base (here a stand-in, so nothing is built)", async () => {
  expect(run(["image", "import", "--name", "e2b-base", "--kernel", join(h.home, "k"), "--rootfs", join(h.home, "r")]).code).toBe(0);
  const sb = await Sandbox.create({ ...opts(), timeoutMs: 60_000 });
  made.push(sb.sandboxId);
  expect(run(["vm", "show", sb.sandboxId, "--json"]).json().spec.image).toBe("e2b-base");
  expect((await sb.getInfo()).templateId).toBe("base");
});

test("list: metadata and state filters, pagination with X-Next-Token", async () => {
  const a = await create({ metadata: { group: "pg", n: "1" } });
  const b = await create({ metadata: { group: "pg", n: "2" } });
  const c = await create({ metadata: { group: "pg", n: "3" } });
  await create({ metadata: { group: "other" } });
  const pager = Sandbox.list({ ...opts(), query: { metadata: { group: "pg" } }, limit: 2 });
  const first = await pager.nextItems();
  expect(first.map((s) => s.sandboxId)).toEqual([a.sandboxId, b.sandboxId]);
  expect(pager.hasNext).toBe(true);
  const second = await pager.nextItems();
  expect(second.map((s) => s.sandboxId)).toEqual([c.sandboxId]);
  expect(pager.hasNext).toBe(false);
  const two = await Sandbox.list({ ...opts(), query: { metadata: { group: "pg", n: "2" } } }).nextItems();
  expect(two.map((s) => s.sandboxId)).toEqual([b.sandboxId]);
  // metadata keys and values that need encoding
  const odd = await create({ metadata: { "k&=y": "v =&%/é" } });
  expect((await Sandbox.list({ ...opts(), query: { metadata: { "k&=y": "v =&%/é" } } }).nextItems()).map((s) => s.sandboxId)).toEqual([odd.sandboxId]);
  await Sandbox.pause(a.sandboxId, opts());
  expect((await Sandbox.list({ ...opts(), query: { metadata: { group: "pg" }, state: ["paused"] } }).nextItems()).map((s) => s.sandboxId)).toEqual([a.sandboxId]);
  expect((await Sandbox.list({ ...opts(), query: { metadata: { group: "pg" }, state: ["running"] } }).nextItems()).map((s) => s.sandboxId)).toEqual([b.sandboxId, c.sandboxId]);
});

test("setTimeout moves the VM's TTL; pause → health 502, connect resumes", async () => {
  const sb = await create();
  await sb.setTimeout(30_000);
  const exp = Date.parse(run(["vm", "show", sb.sandboxId, "--json"]).json().lifetime.expiresAt);
  expect(exp - Date.now()).toBeGreaterThan(20_000);
  expect(exp - Date.now()).toBeLessThan(31_000);
  expect((await sb.getInfo()).endAt.getTime()).toBe(exp);
  expect(await sb.pause()).toBe(true);
  expect(await Sandbox.pause(sb.sandboxId, opts())).toBe(false); // already paused: 409
  // paused, it waits for its connect: no TTL runs meanwhile
  expect(run(["vm", "show", sb.sandboxId, "--json"]).json()).toMatchObject({ runtime: { state: "paused" }, lifetime: { expiresAt: "" } });
  expect((await sb.getInfo()).state).toBe("paused");
  expect(await sb.isRunning()).toBe(false);
  const again = await Sandbox.connect(sb.sandboxId, { ...opts(), timeoutMs: 300_000 });
  expect(again.sandboxId).toBe(sb.sandboxId);
  expect(await again.isRunning()).toBe(true);
  expect((await again.getInfo()).state).toBe("running");
  // connect lengthened the TTL (never shortens it)
  expect(Date.parse(run(["vm", "show", sb.sandboxId, "--json"]).json().lifetime.expiresAt) - Date.now()).toBeGreaterThan(250_000);
});

test("autoPause (lifecycle onTimeout: pause): the timeout stops the VM, it lists as paused, connect boots it again", async () => {
  const sb = await create({ timeoutMs: 1_000, lifecycle: { onTimeout: "pause" } });
  expect(run(["vm", "show", sb.sandboxId, "--json"]).json().lifetime.ttlAction).toBe("stop");
  let state = "";
  for (let i = 0; i < 100 && state !== "stopped"; i++) {
    await Bun.sleep(100);
    state = run(["vm", "show", sb.sandboxId, "--json"]).json().runtime.state;
  }
  expect(state).toBe("stopped");
  expect((await sb.getInfo()).state).toBe("paused");
  expect(await sb.isRunning()).toBe(false);
  const again = await Sandbox.connect(sb.sandboxId, { ...opts(), timeoutMs: 60_000 });
  expect(await again.isRunning()).toBe(true);
  expect(run(["vm", "show", sb.sandboxId, "--json"]).json()).toMatchObject({ alive: true, runtime: { state: "running" } });
});

test("kill: the VM goes; kill again is false; info is not found; health 502", async () => {
  const sb = await create();
  const token = (sb as unknown as { envdAccessToken: string }).envdAccessToken;
  expect(await Sandbox.kill(sb.sandboxId, opts())).toBe(true);
  expect(run(["vm", "show", sb.sandboxId]).code).toBe(1);
  expect(await Sandbox.kill(sb.sandboxId, opts())).toBe(false);
  await expect(Sandbox.getInfo(sb.sandboxId, opts())).rejects.toThrow(/not found/);
  expect((await envd(sb.sandboxId, "/health", token)).status).toBe(502);
  // a sandbox whose VM is deleted behind its back is gone too
  const other = await create();
  expect(run(["vm", "delete", other.sandboxId, "--force"]).code).toBe(0);
  await expect(Sandbox.getInfo(other.sandboxId, opts())).rejects.toThrow(/not found/);
});

test("refusals: a wrong or missing API key is the SDK's AuthenticationError; an unknown template its 404", async () => {
  const bad = `e2b_${"0".repeat(40)}`;
  await expect(Sandbox.create("tiny", { ...opts(), apiKey: bad })).rejects.toThrow(/Unauthorized/);
  const r = await fetch(`${apiUrl}/v2/sandboxes`);
  expect(r.status).toBe(401);
  expect(await r.json()).toMatchObject({ code: 401 });
  const e = await Sandbox.create("no-such-template", opts()).catch((x: unknown) => x as Error & { statusCode?: number });
  expect(e).toBeInstanceOf(Error);
  expect(String((e as Error).message)).toMatch(/404: template "no-such-template" not found/);
  // a removed key stops working at once
  const k = run(["e2b", "key", "create", "--name", "temp", "--json"]).json();
  secrets.push(k.key);
  expect((await Sandbox.list({ ...opts(), apiKey: k.key }).nextItems()).length).toBeGreaterThan(0);
  expect(run(["e2b", "key", "rm", "temp"]).code).toBe(0);
  await expect(Sandbox.list({ ...opts(), apiKey: k.key }).nextItems()).rejects.toThrow(/Unauthorized/);
  expect(run(["e2b", "key", "rm", "temp"])).toMatchObject({ code: 1, stderr: "banger: e2b key not found: temp\n" });
});

test("a guest port: the listener publishes it on loopback and forwards the request there", async () => {
  const sb = await create();
  const res = await envd(sb.sandboxId, "/x", null, 8080);
  // the fake VM's forward answers a line, not HTTP: what matters here is that the forward was made for that guest port
  expect(res.status).toBe(502);
  const ports = run(["vm", "port", "ls", sb.sandboxId, "--json"]).json();
  expect(ports.ports).toEqual([expect.objectContaining({ hostIP: "127.0.0.1", guestPort: 8080 })]);
  // getHost(port)'s name reaches the same listener (Bun resolves *.localhost to loopback) and is routed by it
  expect(sb.getHost(9090)).toBe(`9090-${sb.sandboxId}.localhost:${new URL(apiUrl).port}`);
  expect((await fetch(`http://${sb.getHost(9090)}/x`)).status).toBe(502);
  expect(run(["vm", "port", "ls", sb.sandboxId, "--json"]).json().ports.map((p: { guestPort: number }) => p.guestPort)).toEqual([8080, 9090]);
});

test("network.allowPublicTraffic false: guest ports want the sandbox's traffic token, never listed", async () => {
  const sb = await create({ network: { allowPublicTraffic: false } });
  const traffic = (sb as unknown as { trafficAccessToken?: string }).trafficAccessToken!;
  expect(traffic).toMatch(/^[0-9a-f]{48}$/);
  secrets.push(traffic);
  const url = `http://${sb.getHost(8081)}/x`;
  expect((await fetch(url)).status).toBe(403);
  expect((await fetch(url, { headers: { "e2b-traffic-access-token": "0".repeat(48) } })).status).toBe(403);
  expect(run(["vm", "port", "ls", sb.sandboxId, "--json"]).json().ports).toEqual([]);
  expect((await fetch(url, { headers: { "e2b-traffic-access-token": traffic } })).status).toBe(502); // through to the fake forward
  expect(run(["vm", "port", "ls", sb.sandboxId, "--json"]).json().ports.map((p: { guestPort: number }) => p.guestPort)).toEqual([8081]);
  expect(JSON.stringify(await sb.getInfo())).not.toContain(traffic);
});

test("snapshot, create from it, list and delete it; fork", async () => {
  const sb = await create();
  const snap = await sb.createSnapshot();
  expect(snap.snapshotId).toMatch(new RegExp(`^${sb.sandboxId}@`));
  const listed = await Sandbox.listSnapshots({ ...opts(), sandboxId: sb.sandboxId }).nextItems();
  expect(listed.map((s) => s.snapshotId)).toEqual([snap.snapshotId]);
  const clone = await Sandbox.create(snap.snapshotId, { ...opts(), timeoutMs: 60_000 });
  made.push(clone.sandboxId);
  expect((await clone.getInfo()).templateId).toBe(snap.snapshotId);
  expect(await clone.isRunning()).toBe(true);
  expect(await Sandbox.deleteSnapshot(snap.snapshotId, opts())).toBe(true);
  expect(await Sandbox.deleteSnapshot(snap.snapshotId, opts())).toBe(false);
  // the user's own snapshots (of a VM that is no sandbox) are not the endpoint's: an E2B key cannot remove them
  const image = run(["vm", "show", sb.sandboxId, "--json"]).json().spec.image;
  expect(run(["vm", "create", "mine", "--image", image]).code).toBe(0);
  expect(run(["vm", "snapshot", "mine", "--name", "keep"]).code).toBe(0);
  expect(await Sandbox.deleteSnapshot("mine@keep", opts())).toBe(false);
  expect(run(["snapshot", "show", "mine@keep"]).code).toBe(0);
  expect(run(["vm", "delete", "mine", "--with-snapshots"]).code).toBe(0);
  const forks = await sb.fork({ count: 2 });
  expect(forks).toHaveLength(2);
  for (const f of forks) {
    expect(f).toBeInstanceOf(Sandbox);
    const s = f as Sandbox;
    made.push(s.sandboxId);
    expect(await s.isRunning()).toBe(true);
    expect((await s.getInfo()).metadata).toEqual((await sb.getInfo()).metadata);
  }
});

test("daemon kill -9: the next daemon (auto-started by any command) listens again on the same address", async () => {
  const sb = await create();
  killAndWait(h.daemonPid());
  expect(run(["e2b", "status", "--json"]).json()).toMatchObject({ listening: true, apiUrl });
  expect((await Sandbox.getInfo(sb.sandboxId, opts())).state).toBe("running");
  expect(run(["e2b", "stop", "--json"]).json()).toMatchObject({ listening: false, listen: "" });
  await expect(fetch(`${apiUrl}/v2/sandboxes`)).rejects.toThrow();
  killAndWait(h.daemonPid());
  expect(run(["e2b", "status", "--json"]).json()).toMatchObject({ listening: false });
  expect(run(["e2b", "env"])).toMatchObject({ code: 1, stderr: "banger: the E2B endpoint is off: start it with `banger e2b serve`\n" });
  expect(run(["e2b", "serve", "--listen", apiUrl.replace("http://", "")]).code).toBe(0);
});

test("a daemon killed after a sandbox's VM is made, before the sandbox is recorded: the next daemon deletes that VM (no sandbox names it, nobody could reach or kill it)", async () => {
  const vmsDir = join(h.home, "vms");
  const before = new Set(readdirSync(vmsDir));
  killAndWait(h.daemonPid());
  // the next daemon starts with the fault armed
  expect(h.run(["e2b", "status"], { BANGER_PLUGINS: FAKE_PLUGIN, BANGER_FAULT: "e2b:after-vm" }).code).toBe(0);
  await expect(Sandbox.create("tiny", { ...opts(), timeoutMs: 600_000 })).rejects.toThrow();
  expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("SIGKILL at e2b:after-vm");
  // what the crash left: a running VM, recorded as a VM but as no sandbox
  const dirs = readdirSync(vmsDir).filter((d) => !before.has(d));
  expect(dirs.length).toBe(1);
  const pid = JSON.parse(readFileSync(join(vmsDir, dirs[0]!, "handles.json"), "utf8")).pid as number;
  expect(alive(pid)).toBe(true);
  // any command starts the next daemon, which deletes it
  expect(run(["e2b", "status"]).code).toBe(0);
  expect(await waitFor(() => !alive(pid) && !existsSync(join(vmsDir, dirs[0]!)), 10_000, 50)).toBe(true);
  // the sweep logs once the VM's delete has answered, a few awaits after its dir went (CI once read the log between)
  const sweptLine = () => /e2b: sandbox (e2b-[a-z0-9]+) was left half made \(pending since \S+\) by a daemon that stopped: its VM is deleted/.exec(readFileSync(join(h.home, "daemon.log"), "utf8"));
  expect(await waitFor(() => sweptLine() !== null, 10_000, 50)).toBe(true);
  const swept = sweptLine();
  expect(swept).not.toBeNull();
  expect(run(["vm", "show", swept![1]!]).code).toBe(1);
  expect((await Sandbox.list({ ...opts() }).nextItems()).map((x) => x.sandboxId)).not.toContain(swept![1]!);
});

test("a daemon killed between a sandbox's pause and its timeout's clear: the next daemon clears it (a paused sandbox waits for its connect)", async () => {
  const sb = await create();
  killAndWait(h.daemonPid());
  expect(h.run(["e2b", "status"], { BANGER_PLUGINS: FAKE_PLUGIN, BANGER_FAULT: "e2b:after-pause" }).code).toBe(0);
  await expect(Sandbox.pause(sb.sandboxId, opts())).rejects.toThrow();
  expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("SIGKILL at e2b:after-pause");
  // the next daemon: paused, and its timeout cleared once the start-up reconcile ran
  expect(run(["e2b", "status"]).code).toBe(0);
  const show = () => run(["vm", "show", sb.sandboxId, "--json"]).json() as { runtime: { state: string }; lifetime: { expiresAt: string } };
  expect(await waitFor(() => show().lifetime.expiresAt === "", 10_000, 100)).toBe(true);
  expect(show().runtime.state).toBe("paused");
  // logged once the clear has answered, just after the store has it
  expect(await waitFor(() => readFileSync(join(h.home, "daemon.log"), "utf8").includes(`e2b: sandbox ${sb.sandboxId} is paused with a timeout left by a daemon that stopped`), 10_000, 50)).toBe(true);
  expect((await Sandbox.connect(sb.sandboxId, opts())).sandboxId).toBe(sb.sandboxId);
  expect(show().lifetime.expiresAt).not.toBe("");
});

test("bad input: one line and exit 2", () => {
  expect(run(["e2b", "serve", "--listen", "nope"])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^banger: --listen must be HOST:PORT/) });
  expect(run(["e2b", "key", "create", "--name", "bad name"]).code).toBe(2);
  expect(run(["e2b", "env", "--key", "e2b_nope"]).code).toBe(2);
});

test("no key or access token in the daemon's log", () => {
  const logText = readFileSync(join(h.home, "daemon.log"), "utf8");
  expect(logText).toContain("e2b: sandbox");
  for (const s of secrets) expect(logText).not.toContain(s);
  // nor in what the CLI's --json shows of the sandboxes' VMs and the endpoint
  const shown = ["vm list", "e2b status", "e2b key list", "e2b env", "snapshot list"].map((c) => run([...c.split(" "), "--json"]).stdout).join("\n");
  expect(shown).toContain("e2b-");
  for (const s of secrets) expect(shown).not.toContain(s);
});
