// The E2B endpoint with a real QEMU (TCG) guest, driven by the unmodified
// `e2b` SDK: a `base` sandbox (banger's e2b-base image: user `user` with
// sudo, git, python3, inotify-tools, attr), its envd /health, a guest HTTP
// server reached through the listener (getHost), commands (streams, exit
// code, user, a background one followed again by pid), pause/connect keeping that
// server, a snapshot and a fork. One sandbox for the whole file.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { Sandbox } from "e2b";
import { e2e, e2eHome, e2eReady, IMAGE_DIR, qemuPidsUnder } from "../helpers/e2e.ts";
import { waitFor } from "../helpers/cli.ts";

e2e.describe("E2B SDK against banger with real QEMU guests", () => {
  const h = e2eReady ? e2eHome("banger-e2b-e2e-") : (null as never);
  const run = (args: string[]) => h.run(args);
  let opts = { apiUrl: "", sandboxUrl: "", apiKey: "" };
  let sb: Sandbox;
  const timings: Record<string, number> = {};
  const timed = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings[label] = Math.round(performance.now() - t0);
    }
  };
  /** A request to the sandbox's port as the SDK's getHost(port) URL would reach it: through the one listener. */
  const guestGet = (port: number, path: string) => fetch(`${opts.apiUrl}${path}`, { headers: { "E2b-Sandbox-Id": sb.sandboxId, "E2b-Sandbox-Port": String(port) } });

  beforeAll(async () => {
    // the base template's image: cached next to the test image (scripts/test-image.sh builds it), else built here (~20 s)
    const cached = join(dirname(IMAGE_DIR), "e2b-base");
    if (existsSync(join(cached, "rootfs.ext4"))) {
      const r = run(["image", "import", "--name", "e2b-base", "--kernel", join(cached, "vmlinuz"), "--rootfs", join(cached, "rootfs.ext4"), "--initrd", join(cached, "initrd.img")]);
      if (r.code !== 0) throw new Error(`import e2b-base: ${r.stderr}`);
    } else {
      const t0 = performance.now();
      const r = run(["e2b", "template", "build"]);
      if (r.code !== 0) throw new Error(`e2b template build: ${r.stderr}`);
      timings["template build"] = Math.round(performance.now() - t0);
    }
    expect(run(["e2b", "serve", "--listen", "127.0.0.1:0", "--vmm", "qemu"]).code).toBe(0);
    const env = run(["e2b", "env"]);
    const vars = Object.fromEntries([...env.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    opts = { apiUrl: vars.E2B_API_URL!, sandboxUrl: vars.E2B_SANDBOX_URL!, apiKey: vars.E2B_API_KEY! };
    sb = await timed("Sandbox.create(base), cold", () => Sandbox.create("base", { ...opts, timeoutMs: 900_000, metadata: { suite: "e2e" } }));
  }, 600_000);

  afterAll(async () => {
    console.log(`e2b e2e timings (ms): ${JSON.stringify(timings)}`);
    for (const v of (run(["vm", "list", "--json"]).json() as { name: string }[]) ?? []) run(["vm", "delete", v.name, "--force"]);
    const left = qemuPidsUnder(h.home);
    await h.cleanup(left);
    expect(left).toEqual([]);
  });

  test("a base sandbox is a running banger VM of e2b-base with envd healthy and user `user` with sudo and the tools", async () => {
    expect(await sb.isRunning()).toBe(true);
    const vm = run(["vm", "show", sb.sandboxId, "--json"]).json();
    expect(vm).toMatchObject({ name: sb.sandboxId, alive: true, spec: { image: "e2b-base", driver: "qemu" } });
    const r = run(["vm", "exec", sb.sandboxId, "-u", "user", "--", "bash", "-c", "echo $HOME; sudo -n id -u; command -v git python3 inotifywait getfattr | wc -l"]);
    expect([r.code, r.stdout]).toEqual([0, "/home/user\n0\n4\n"]);
    const info = await sb.getInfo();
    expect([info.templateId, info.state, info.metadata]).toEqual(["base", "running", { suite: "e2e" }]);
    // metrics are `vm stats`: the guest's own memory and disk, the VMM's CPU
    const [m] = await sb.getMetrics();
    expect(m!.cpuCount).toBe(vm.spec.cpus);
    expect(m!.memTotal).toBeGreaterThan(100 << 20);
    expect(m!.memUsed).toBeGreaterThan(0);
    expect(m!.diskTotal).toBeGreaterThan(m!.diskUsed);
    expect(m!.diskUsed).toBeGreaterThan(0);
  }, 120_000);

  test("commands on the guest: output on its stream, exit code, user and home; a background one runs on after its follower left and is followed again by pid", async () => {
    const r = await timed("commands.run (first)", () => sb.commands.run(`printf '%s|' "$(whoami)" "$PWD" "$X"; echo oops >&2`, { envs: { X: "a'b; $(c)" } }));
    expect([r.stdout, r.stderr, r.exitCode]).toEqual(["user|/home/user|a'b; $(c)|", "oops\n", 0]);
    await timed("commands.run('true')", () => sb.commands.run("true"));
    const failed = await sb.commands.run("exit 3").catch((e: unknown) => e as { exitCode: number });
    expect(failed.exitCode).toBe(3);
    const h = await sb.commands.run("sleep 1.5; echo done", { background: true });
    await h.disconnect();
    let out = "";
    const again = await sb.commands.connect(h.pid, { onStdout: (d) => void (out += d) });
    expect((await again.wait()).exitCode).toBe(0);
    expect(out).toBe("done\n");
  }, 120_000);

  test("a guest HTTP server on port 8000 answers through the listener; pause → not running; connect → the same server answers", async () => {
    const start = run(["vm", "exec", sb.sandboxId, "--", "bash", "-c", "mkdir -p /srv/www && echo hello-from-guest > /srv/www/index.html && cd /srv/www && (setsid python3 -m http.server 8000 >/dev/null 2>&1 < /dev/null &)"]);
    expect(start.code).toBe(0);
    expect(sb.getHost(8000)).toBe(`8000-${sb.sandboxId}.localhost:${new URL(opts.apiUrl).port}`);
    let body = "";
    expect(await waitFor(async () => {
      const res = await guestGet(8000, "/index.html").catch(() => null);
      body = res && res.status === 200 ? await res.text() : "";
      return body === "hello-from-guest\n";
    }, 60_000, 500)).toBe(true);
    expect((await guestGet(8001, "/")).status).toBe(502); // nothing listens there
    expect(await timed("pause", () => sb.pause())).toBe(true);
    expect(await sb.isRunning()).toBe(false);
    expect((await guestGet(8000, "/index.html")).status).toBe(502);
    const again = await timed("connect (resume)", () => Sandbox.connect(sb.sandboxId, opts));
    expect(await again.isRunning()).toBe(true);
    // the URL E2B's docs build from getHost(port): `PORT-ID.localhost:PORT`, routed by the same listener
    const res = await fetch(`http://${again.getHost(8000)}/index.html`);
    expect([res.status, await res.text()]).toEqual([200, "hello-from-guest\n"]);
  }, 180_000);

  test("snapshot, then fork: the fork runs on from that instant, with the file and its own envd", async () => {
    expect(run(["vm", "exec", sb.sandboxId, "--", "bash", "-c", "echo before-snap > /root/mark"]).code).toBe(0);
    const snap = await timed("createSnapshot", () => sb.createSnapshot());
    expect(snap.snapshotId).toStartWith(`${sb.sandboxId}@`);
    expect((await Sandbox.listSnapshots({ ...opts, sandboxId: sb.sandboxId }).nextItems()).map((s) => s.snapshotId)).toEqual([snap.snapshotId]);
    const [fork] = await timed("fork (1)", () => sb.fork({ count: 1 }));
    expect(fork).toBeInstanceOf(Sandbox);
    const f = fork as Sandbox;
    expect(f.sandboxId).not.toBe(sb.sandboxId);
    expect(await f.isRunning()).toBe(true);
    expect(run(["vm", "exec", f.sandboxId, "--", "cat", "/root/mark"]).stdout).toBe("before-snap\n");
    expect(await Sandbox.kill(f.sandboxId, opts)).toBe(true);
    expect(await Sandbox.deleteSnapshot(snap.snapshotId, opts)).toBe(true);
    expect(await Sandbox.kill(sb.sandboxId, opts)).toBe(true);
    expect(await sb.isRunning()).toBe(false);
  }, 300_000);
});
