/**
 * A tap allowlist for real, inside network namespaces this test creates:
 *   <host ns>   test/fixtures/tap-egress-host.ts: bridge, NAT, the resolver on the bridge, the nft chains
 *   <guest ns>  a veth on the bridge with the guest's address; its resolv.conf names the bridge
 *   <out ns>    "the internet": test/fixtures/egress-outside.ts (DNS on 198.51.100.53, HTTP on .10/.20/.30)
 * Nothing is added to the machine's own namespace. Needs root, ip, iptables, nft, curl, openssl.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createExec } from "../../src/host/exec.ts";
import { EGRESS_LOG_FILE, type EgressDenial } from "../../src/shared/egress.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";

const ROOT = join(import.meta.dir, "../..");
const tag = String(process.pid % 100000);
const NS = { host: `bge-h${tag}`, guest: `bge-g${tag}`, out: `bge-o${tag}`, peer: `bge-p${tag}` };
const SUBNET = "10.213.9.0/24";
const GW = "10.213.9.1";
const GUEST = "10.213.9.2";
/** Another guest on the same bridge, under no policy (egress all): what the first may or may not reach directly. */
const PEER = "10.213.9.3";
const BRIDGE = "bgebr0";
const real = createExec();
const has = (cmd: string) => !!Bun.which(cmd, { PATH: "/usr/sbin:/sbin:/usr/bin:/bin" });
const missing = firstMissing(
  [IS_ROOT, "needs root (network namespaces, bridge, nftables)"],
  ...(["ip", "iptables", "nft", "curl", "openssl"].map((c) => [has(c), `needs ${c}`]) as [boolean, string][]),
);
const canRun = missing === "";

function inNs(ns: string, cmd: string, args: string[], opts: { check?: boolean; timeoutMs?: number } = {}) {
  return real.run("ip", ["netns", "exec", ns, cmd, ...args], { timeoutMs: 20_000, ...opts });
}

let dir = "";
let outside: ReturnType<typeof Bun.spawn> | undefined;
let daemon: ReturnType<typeof Bun.spawn<"pipe", "pipe", "inherit">> | undefined;
let lines: AsyncIterator<string>;
const servers: ReturnType<typeof Bun.spawn>[] = [];

async function* _lines(s: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of s) {
    buf += new TextDecoder().decode(chunk);
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

async function policy(text: string): Promise<number> {
  return command(`policy ${text}`);
}

async function command(text: string): Promise<number> {
  daemon!.stdin.write(`${text}\n`);
  await daemon!.stdin.flush();
  const { value } = await lines.next();
  const m = /^ok ([0-9.]+)$/.exec(String(value));
  if (!m) throw new Error(`${text}: ${value}`);
  return Number(m[1]);
}

/** curl from the guest: the body, or "failed (exit)". */
async function fetchFromGuest(url: string): Promise<string> {
  const r = await inNs(NS.guest, "curl", ["-sS", "-m", "2", url], { check: false });
  return r.exitCode === 0 ? r.stdout.trim() : `failed (${r.exitCode})`;
}

const denials = () => {
  try {
    return readFileSync(join(dir, EGRESS_LOG_FILE), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as EgressDenial);
  } catch {
    return [];
  }
};

beforeAll(async () => {
  if (!canRun) return;
  for (const ns of Object.values(NS)) {
    await real.run("ip", ["netns", "del", ns], { check: false });
    await real.run("ip", ["netns", "add", ns]);
    await inNs(ns, "ip", ["link", "set", "lo", "up"]);
  }
  // host ns <-> out ns over TEST-NET-2, which exists only between these two namespaces
  await inNs(NS.host, "ip", ["link", "add", "bge-out", "type", "veth", "peer", "name", "eth0", "netns", NS.out]);
  await inNs(NS.host, "ip", ["addr", "add", "198.51.100.1/24", "dev", "bge-out"]);
  await inNs(NS.host, "ip", ["link", "set", "bge-out", "up"]);
  await inNs(NS.out, "ip", ["link", "set", "eth0", "up"]);
  for (const a of ["198.51.100.2", "198.51.100.53", "198.51.100.10", "198.51.100.20", "198.51.100.30"]) await inNs(NS.out, "ip", ["addr", "add", `${a}/24`, "dev", "eth0"]);
  await inNs(NS.out, "ip", ["route", "add", "default", "via", "198.51.100.1"]);

  dir = mkdtempSync(join(tmpdir(), "banger-tapegress-"));
  const names = "DNS:pkgs.example.test,DNS:other.example.test";
  Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=pkgs.example.test", "-addext", `subjectAltName=${names}`, "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stderr: "pipe" });
  outside = Bun.spawn(["ip", "netns", "exec", NS.out, process.execPath, join(ROOT, "test/fixtures/egress-outside.ts"), dir], { stdout: "pipe", stderr: "inherit" });
  const o = await _lines(outside.stdout as ReadableStream<Uint8Array>).next();
  if (o.value !== "ready") throw new Error(`outside did not start: ${o.value}`);

  daemon = Bun.spawn(["ip", "netns", "exec", NS.host, process.execPath, join(ROOT, "test/fixtures/tap-egress-host.ts"), BRIDGE, SUBNET, GUEST, "198.51.100.53", dir], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  lines = _lines(daemon.stdout);
  const d = await lines.next();
  if (d.value !== "ready") throw new Error(`resolver side did not start: ${d.value}`);

  // the guest: a veth on the bridge (named as the fixture's guarded "tap"), its resolver the bridge
  await inNs(NS.host, "ip", ["link", "add", "bt-tgv", "type", "veth", "peer", "name", "eth0", "netns", NS.guest]);
  await inNs(NS.host, "ip", ["link", "set", "bt-tgv", "master", BRIDGE, "up"]);
  await inNs(NS.guest, "ip", ["addr", "add", `${GUEST}/24`, "dev", "eth0"]);
  await inNs(NS.guest, "ip", ["link", "set", "eth0", "up"]);
  await inNs(NS.guest, "ip", ["route", "add", "default", "via", GW]);
  // `ip netns exec` bind-mounts these over /etc/resolv.conf and /etc/hosts for the guest's commands
  mkdirSync(`/etc/netns/${NS.guest}`, { recursive: true });
  writeFileSync(`/etc/netns/${NS.guest}/resolv.conf`, `nameserver ${GW}\noptions timeout:1 attempts:1\n`);
  writeFileSync(`/etc/netns/${NS.guest}/hosts`, "127.0.0.1\tlocalhost\n");

  // the other guest: a veth on the same bridge, not guarded, with a TCP service; the first guest serves one too
  await inNs(NS.host, "ip", ["link", "add", "bt-tgw", "type", "veth", "peer", "name", "eth0", "netns", NS.peer]);
  await inNs(NS.host, "ip", ["link", "set", "bt-tgw", "master", BRIDGE, "up"]);
  await inNs(NS.peer, "ip", ["addr", "add", `${PEER}/24`, "dev", "eth0"]);
  await inNs(NS.peer, "ip", ["link", "set", "eth0", "up"]);
  for (const [ns, ip] of [[NS.peer, PEER], [NS.guest, GUEST]] as const) {
    servers.push(Bun.spawn(["ip", "netns", "exec", ns, "socat", `TCP-LISTEN:8080,bind=${ip},fork,reuseaddr`, `SYSTEM:echo service at ${ip}`], { stdout: "ignore", stderr: "ignore" }));
  }
}, 60_000);

afterAll(async () => {
  if (!canRun) return;
  if (daemon) {
    daemon.stdin.write("quit\n");
    await daemon.stdin.end();
    await Promise.race([daemon.exited, Bun.sleep(3000)]);
    daemon.kill();
  }
  outside?.kill();
  for (const p of servers) p.kill();
  for (const ns of Object.values(NS)) await real.run("ip", ["netns", "del", ns], { check: false });
  rmSync(`/etc/netns/${NS.guest}`, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

needs(canRun, missing).describe("tap allowlist in network namespaces", () => {
  test("an allowed name is reachable; a raw IP, another resolver (UDP and TCP 53), a non-listed name and the host are not; refusals logged", async () => {
    const ms = await policy("pkgs.example.test");
    console.log(`tap egress: allowlist applied in ${ms} ms`);
    const t0 = performance.now();
    const r = await inNs(NS.guest, "getent", ["ahostsv4", "pkgs.example.test"]);
    console.log(`tap egress: first lookup (upstream + nft fill) ${Math.round(performance.now() - t0)} ms`);
    expect(r.stdout).toContain("198.51.100.10");
    expect(await fetchFromGuest("http://pkgs.example.test/")).toBe("hello from 198.51.100.10 host=pkgs.example.test");

    // a raw, non-listed address (the outside's other web server)
    expect(await fetchFromGuest("http://198.51.100.20/")).toStartWith("failed");
    // another resolver: UDP (resolv.conf swapped for one command) and TCP 53
    const udp = await inNs(NS.guest, "sh", ["-c", "echo 'nameserver 198.51.100.53' > /etc/resolv.conf; getent ahostsv4 other.example.test"], { check: false });
    writeFileSync(`/etc/netns/${NS.guest}/resolv.conf`, `nameserver ${GW}\noptions timeout:1 attempts:1\n`);
    expect(udp.exitCode).not.toBe(0);
    const tcp = await inNs(NS.guest, "bash", ["-c", "timeout 3 bash -c 'exec 3<>/dev/tcp/198.51.100.53/53'"], { check: false });
    expect(tcp.exitCode).not.toBe(0);
    // the outside never saw a question from either
    const seen = readFileSync(join(dir, "seen.jsonl"), "utf8");
    expect(seen).not.toContain("other.example.test");
    // the host itself: only its resolver port (here an SSH-ish port nobody may reach)
    const host = await inNs(NS.guest, "bash", ["-c", `timeout 3 bash -c 'exec 3<>/dev/tcp/${GW}/22'`], { check: false });
    expect(host.exitCode).not.toBe(0);

    const other = await inNs(NS.guest, "getent", ["ahostsv4", "other.example.test"], { check: false });
    expect(other.exitCode).not.toBe(0);
    expect(denials()).toContainEqual(expect.objectContaining({ dest: "other.example.test", via: "dns" }));
    // a bad guest that knows the address still cannot go there
    expect(await fetchFromGuest("http://198.51.100.20/")).toStartWith("failed");
  }, 60_000);

  test("a live change applies to the next connection; a listed CIDR:port goes in directly; none cuts everything", async () => {
    const ms = await policy("other.example.test,198.51.100.30:80");
    console.log(`tap egress: live change applied in ${ms} ms`);
    expect(await fetchFromGuest("http://other.example.test/")).toBe("hello from 198.51.100.20 host=other.example.test");
    // the old name: refused by the resolver, and its address was flushed from the set
    expect(await fetchFromGuest("http://pkgs.example.test/")).toStartWith("failed");
    expect(await fetchFromGuest("http://198.51.100.10/")).toStartWith("failed");
    expect(await fetchFromGuest("http://198.51.100.30/")).toBe("hello from 198.51.100.30 host=198.51.100.30");
    expect(await fetchFromGuest("https://198.51.100.30/")).toStartWith("failed");

    await policy("none");
    expect(await fetchFromGuest("http://198.51.100.30/")).toStartWith("failed");
    expect(await fetchFromGuest("http://other.example.test/")).toStartWith("failed");
  }, 60_000);

  /** curl from the guest with extra arguments: the body, or "failed (exit)". */
  async function curlFromGuest(args: string[]): Promise<string> {
    const r = await inNs(NS.guest, "curl", ["-sS", "-m", "3", ...args], { check: false });
    return r.exitCode === 0 ? r.stdout.trim() : `failed (${r.exitCode})`;
  }
  const sent = () => readFileSync(join(dir, "seen.jsonl"), "utf8");

  test.each(["socket", "proc"])("the gate (destination from %s): an allowed name over HTTPS passes; a lying SNI to its address, its SNI to another address and a lying Host are refused, never reach the server, and are logged", async (from) => {
    const placed = await command(`dst ${from}`);
    await policy("pkgs.example.test");
    expect((await inNs(NS.guest, "getent", ["ahostsv4", "pkgs.example.test"])).stdout).toContain("198.51.100.10");
    const ca = ["--cacert", join(dir, "cert.pem")];
    expect(await curlFromGuest([...ca, "https://pkgs.example.test/"])).toBe("hello from 198.51.100.10 sni=pkgs.example.test host=pkgs.example.test");
    expect(await curlFromGuest(["http://pkgs.example.test/"])).toBe("hello from 198.51.100.10 host=pkgs.example.test");

    const n = denials().length;
    const before = sent();
    // an allowed address (in the VM's set since the lookup) with a name that is not allowed
    expect(await curlFromGuest(["-k", "--resolve", "evil.example.net:443:198.51.100.10", "https://evil.example.net/"])).toStartWith("failed");
    // the allowed name, sent to an address it does not resolve to (the guest made that address up)
    expect(await curlFromGuest(["-k", "--resolve", "pkgs.example.test:443:198.51.100.30", "https://pkgs.example.test/"])).toStartWith("failed");
    // plain HTTP: a Host header lying about where it goes
    expect(await curlFromGuest(["-H", "Host: evil.example.net", "http://198.51.100.10/"])).toStartWith("failed");
    expect(await curlFromGuest(["-H", "Host: pkgs.example.test", "http://198.51.100.30/"])).toStartWith("failed");
    // none of them got to the outside
    expect(sent().slice(before.length)).toBe("");
    expect(denials().slice(n).map((d) => [d.via, d.dest, d.name, d.reason])).toEqual([
      ["tls", "198.51.100.10", "evil.example.net", "SNI evil.example.net is not allowed"],
      ["tls", "198.51.100.30", "pkgs.example.test", "SNI pkgs.example.test does not resolve to 198.51.100.30"],
      ["http", "198.51.100.10", "evil.example.net", "Host evil.example.net is not allowed"],
      ["http", "198.51.100.30", "pkgs.example.test", "Host pkgs.example.test does not resolve to 198.51.100.30"],
    ]);
    // every one of those 6 connections was placed the way this run asked for
    expect((await command(`dst ${from}`)) - placed).toBe(6);
    await command("dst socket");
  }, 60_000);

  test("added latency of the gate: HTTPS to the allowed name through the gate vs direct (egress all)", async () => {
    const ca = ["--cacert", join(dir, "cert.pem"), "--resolve", "pkgs.example.test:443:198.51.100.10", "-o", "/dev/null", "-w", "%{time_total}\n"];
    const median = async (): Promise<number> => {
      const t: number[] = [];
      for (let i = 0; i < 9; i++) t.push(Number(await curlFromGuest([...ca, "https://pkgs.example.test/"])) * 1000);
      expect(t.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
      return t.sort((a, b) => a - b)[4]!;
    };
    await policy("all");
    const direct = await median();
    await policy("pkgs.example.test");
    await inNs(NS.guest, "getent", ["ahostsv4", "pkgs.example.test"]);
    const gated = await median();
    console.log(`tap egress: HTTPS request median direct ${direct.toFixed(1)} ms, through the gate ${gated.toFixed(1)} ms (+${(gated - direct).toFixed(1)} ms)`);
  }, 120_000);

  test("firewall drops appear in the egress log: destination, port, why", async () => {
    await policy("pkgs.example.test");
    const n = denials().length;
    await inNs(NS.guest, "bash", ["-c", "timeout 2 bash -c 'exec 3<>/dev/tcp/198.51.100.20/22'"], { check: false });
    await inNs(NS.guest, "bash", ["-c", "echo x > /dev/udp/198.51.100.53/53"], { check: false });
    await inNs(NS.guest, "bash", ["-c", `timeout 2 bash -c 'exec 3<>/dev/tcp/${GW}/22'`], { check: false });
    const ms = await command("drops");
    console.log(`tap egress: drop set poll ${ms} ms`);
    const d = denials().slice(n).filter((x) => x.via === "firewall");
    expect(d.map((x) => [x.dest, x.port])).toEqual(expect.arrayContaining([["198.51.100.20", 22], ["198.51.100.53", 53], [GW, 22]]));
    expect(d.find((x) => x.port === 53)!.reason).toStartWith("DNS to another server than the bridge resolver (udp, ");
    expect(d.find((x) => x.dest === GW)!.reason).toStartWith("the host itself (tcp, ");
    // a second poll with nothing new adds nothing
    const m = denials().length;
    await command("drops");
    expect(denials().length).toBe(m);

    // cut off: its new connections are in the log too (the shared set, by source)
    await policy("none");
    await inNs(NS.guest, "bash", ["-c", "timeout 2 bash -c 'exec 3<>/dev/tcp/198.51.100.30/8443'"], { check: false });
    await command("drops");
    expect(denials().slice(m)).toEqual([expect.objectContaining({ via: "firewall", dest: "198.51.100.30", port: 8443, reason: expect.stringMatching(/^address not allowed \(tcp, /) })]);
  }, 60_000);

  test("guest to guest on the bridge: refused unless the other's address is listed; the other guest still reaches it", async () => {
    const reach = async (from: string, ip: string) => (await inNs(from, "bash", ["-c", `timeout 3 bash -c 'exec 3<>/dev/tcp/${ip}/8080; cat <&3'`], { check: false })).stdout.trim();
    await policy("pkgs.example.test");
    expect(await reach(NS.guest, PEER)).toBe("");
    // the unguarded peer opens a connection to the guarded guest: its answers go back
    expect(await reach(NS.peer, GUEST)).toBe(`service at ${GUEST}`);
    await policy(`pkgs.example.test,${PEER}`);
    expect(await reach(NS.guest, PEER)).toBe(`service at ${PEER}`);
    await policy("none");
    expect(await reach(NS.guest, PEER)).toBe("");
  }, 60_000);
});
