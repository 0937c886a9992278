// Published ports and stats on one real QEMU guest (user networking, TCG),
// shared by every test here to keep the file to about two boots. The guest's
// TCP servers are perl (the test image has no nc/socat/python); every
// connection is to 127.0.0.1 only.
import { afterAll, expect, test } from "bun:test";
import { connect } from "node:net";
import { BANGER, killAndWait } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

/** A guest server: answers each connection on PORT with "hello-PORT" and closes it. */
const SERVER = 'my $p = shift; my $s = IO::Socket::INET->new(LocalPort => $p, Listen => 5, ReuseAddr => 1) or die "listen $p: $!"; while (my $c = $s->accept) { print $c "hello-$p\\n"; close $c }';
/** Holds 64 MiB of touched memory until killed. */
const HOG = '$x = "a" x (64 << 20); print "held\\n"; sleep 600';

interface Port {
  hostPort: number;
  guestPort: number;
  boundPort: number;
  reach: string[];
}
interface Stats {
  vm: string;
  cpuPercent: number;
  memUsedBytes: number;
  memTotalBytes: number;
  diskUsedBytes: number;
  diskSizeBytes: number;
  uptimeSeconds: number;
  vmmRssBytes: number;
}

/** What 127.0.0.1:port answers (first line), or null when the connection fails or says nothing. */
function reach(port: number, timeoutMs = 5000): Promise<string | null> {
  return new Promise((resolve) => {
    const c = connect({ host: "127.0.0.1", port });
    let got = "";
    const t = setTimeout(() => {
      c.destroy();
      resolve(got.trim() || null);
    }, timeoutMs);
    c.on("data", (d) => (got += d.toString()));
    c.on("close", () => {
      clearTimeout(t);
      resolve(got.trim() || null);
    });
    c.on("error", () => {});
  });
}

/** slirp accepts first and connects to the guest after; a server just started may need a moment. */
async function reachSoon(port: number, want: string, tries = 20): Promise<string | null> {
  let got: string | null = null;
  for (let i = 0; i < tries; i++) {
    got = await reach(port);
    if (got === want) return got;
    await Bun.sleep(300);
  }
  return got;
}

e2e.describe("published ports and stats on a real QEMU guest", () => {
  const h = e2eReady ? e2eHome("banger-e2e-ports-") : (null as never);
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "pub", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });
  const ports = () => h.run(["vm", "port", "ls", "pub", "--json"]).json<{ ports: Port[] }>().ports;
  const serve = (name: string, port: number) => {
    const r = h.run(["session", "start", "pub", "--name", name, "--", "perl", "-MIO::Socket::INET", "-e", SERVER, String(port)]);
    expect(r.code).toBe(0);
  };
  let bound = 0;

  test("--publish 127.0.0.1:0:8080: a guest server reached from the host on the port chosen", async () => {
    const r = h.run(["vm", "create", "pub", "--vmm", "qemu", "--publish", "127.0.0.1:0:8080", "--start", "--json"]);
    expect(r.stderr.split("\n").filter((l) => l.startsWith("banger:"))).toEqual([]);
    expect(r.code).toBe(0);
    const p = r.json<{ spec: { ports: Port[] } }>().spec.ports[0]!;
    expect(p.boundPort).toBeGreaterThan(0);
    expect(p.reach).toEqual([`127.0.0.1:${p.boundPort}`]);
    bound = p.boundPort;
    serve("srv8080", 8080);
    expect(await reachSoon(bound, "hello-8080")).toBe("hello-8080");
  }, 300_000);

  test("port add at run time reaches a second server; port rm closes the host side", async () => {
    serve("srv8081", 8081);
    const a = h.run(["vm", "port", "add", "pub", "0:8081", "--json"]);
    expect(a.code).toBe(0);
    const added = a.json<{ added: Port }>().added;
    expect(await reachSoon(added.boundPort, "hello-8081")).toBe("hello-8081");
    expect(h.run(["vm", "port", "rm", "pub", "8081"]).code).toBe(0);
    expect(await reach(added.boundPort, 2000)).toBeNull();
    expect(ports().map((p) => p.guestPort)).toEqual([8080]);
    // the first forward is untouched
    expect(await reach(bound)).toBe("hello-8080");
  }, 120_000);

  test("stats: sane figures, and guest memory in use rises by ~64 MiB while a process holds it", async () => {
    const one = () => {
      const r = h.run(["vm", "stats", "pub", "--json"]);
      expect(r.code).toBe(0);
      return r.json<Stats>();
    };
    const s = one();
    expect(s.memTotalBytes).toBeGreaterThan(200 << 20);
    expect(s.memUsedBytes).toBeGreaterThan(0);
    expect(s.memUsedBytes).toBeLessThan(s.memTotalBytes);
    expect(s.diskSizeBytes).toBeGreaterThan(500 << 20);
    expect(s.diskUsedBytes).toBeGreaterThan(0);
    expect(s.uptimeSeconds).toBeGreaterThan(0);
    expect(s.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(s.vmmRssBytes).toBeGreaterThan(50 << 20);
    const before = Math.min(s.memUsedBytes, one().memUsedBytes);
    expect(h.run(["session", "start", "pub", "--name", "hog", "--", "perl", "-e", HOG]).code).toBe(0);
    let after = 0;
    for (let i = 0; i < 30 && after - before < 56 << 20; i++) {
      await Bun.sleep(500);
      after = one().memUsedBytes;
    }
    expect(after - before).toBeGreaterThan(56 << 20);
    console.log(`stats: guest memory used ${(before / 2 ** 20).toFixed(1)} MiB -> ${(after / 2 ** 20).toFixed(1)} MiB with a 64 MiB perl buffer`);
    expect(h.run(["session", "kill", "pub", "hog"]).code).toBe(0);
    // every running VM; and --watch --json: one line a second
    expect(h.run(["vm", "stats", "--json"]).json<{ vms: Stats[] }>().vms.map((v) => v.vm)).toEqual(["pub"]);
    const w = Bun.spawn([BANGER, "vm", "stats", "pub", "--watch", "--json"], { env: h.env, stdout: "pipe", stderr: "pipe" });
    await Bun.sleep(3500);
    w.kill("SIGINT");
    const lines = (await new Response(w.stdout).text()).trim().split("\n");
    expect(await w.exited).toBe(0);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(JSON.parse(l).vm).toBe("pub");
    // a tick's CPU % is over the second since the last one, not since boot
    expect(JSON.parse(lines.at(-1)!).cpuPercent).toBeLessThan(250);
  }, 120_000);

  test("stop/start: the forward comes back on the same host port", async () => {
    expect(h.run(["vm", "stop", "pub"]).code).toBe(0);
    expect(await reach(bound, 2000)).toBeNull();
    const r = h.run(["vm", "start", "pub", "--json"]);
    expect(r.code).toBe(0);
    expect(r.json<{ spec: { ports: Port[] } }>().spec.ports[0]!.boundPort).toBe(bound);
    serve("again8080", 8080);
    expect(await reachSoon(bound, "hello-8080")).toBe("hello-8080");
  }, 300_000);

  test("daemon kill -9: the forward lives on in QEMU, the next daemon keeps it and still adds and removes at run time", async () => {
    killAndWait(h.daemonPid());
    const v = h.run(["vm", "show", "pub", "--json"]).json<{ alive: boolean; runtime: { lastError: string }; spec: { ports: Port[] } }>();
    expect([v.alive, v.runtime.lastError, v.spec.ports[0]!.boundPort]).toEqual([true, "", bound]);
    expect(await reach(bound)).toBe("hello-8080");
    serve("late8082", 8082);
    const a = h.run(["vm", "port", "add", "pub", "0:8082", "--json"]).json<{ added: Port }>().added;
    expect(await reachSoon(a.boundPort, "hello-8082")).toBe("hello-8082");
    expect(h.run(["vm", "port", "rm", "pub", `127.0.0.1:${a.boundPort}:8082`]).code).toBe(0);
    expect(await reach(a.boundPort, 2000)).toBeNull();
  }, 120_000);
});
