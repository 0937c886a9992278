// Egress on --net user with a real QEMU guest. The CLI, the daemon (and so
// its egress gate and QEMU) run inside a network namespace this test makes;
// "the outside" (test/fixtures/egress-outside.ts: DNS on 198.51.100.53,
// HTTP/HTTPS on .10 .20 .30) lives on that namespace's loopback. The guest
// tries the allowed path and every bypass on the list; the outside's own log
// says what reached it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAndWait, ROOT, tempHome } from "../helpers/cli.ts";
import { e2e, e2eReady, IMAGE_DIR, qemuPidsUnder } from "../helpers/e2e.ts";
import { buildQuery } from "../../src/shared/dns-wire.ts";

const NS = `bgx-${process.pid % 100000}`;
const VM = "eg";

// Guest-side probes: values come in as arguments, never spliced into the script.
const PROBES = readFileSync(join(ROOT, "test/fixtures/egress-probes.sh"), "utf8");

function hexEscaped(b: Uint8Array): string {
  return [...b].map((x) => `\\x${x.toString(16).padStart(2, "0")}`).join("");
}

e2e.describe("egress on --net user, real QEMU guest, outside in a test namespace", () => {
  const h = e2eReady ? tempHome("bgx-", { wrap: ["ip", "netns", "exec", NS] }) : (null as never);
  const outDir = e2eReady ? mkdtempSync(join(tmpdir(), "bgx-out-")) : "";
  let outside: ReturnType<typeof Bun.spawn> | null = null;
  let sshPort = 0;
  const env = { BANGER_EGRESS_DNS: "198.51.100.53" };
  const banger = (args: string[]) => h.run(args, env);
  const seen = () =>
    existsSync(join(outDir, "seen.jsonl"))
      ? readFileSync(join(outDir, "seen.jsonl"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, string>)
      : [];
  /** Run probes in the guest: [name, fn, ...args]; returns name → output. */
  const probe = (...ps: string[][]): Record<string, string> => {
    const args = ps.flatMap(([name, fn, ...a]) => [name!, fn!, String(a.length), ...a]);
    const r = banger(["vm", "exec", VM, "--", "bash", "-c", PROBES, "probes", ...args]);
    expect(r.stderr).toBe("");
    return Object.fromEntries(r.stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf("|")), l.slice(l.indexOf("|") + 1)]));
  };

  beforeAll(async () => {
    Bun.spawnSync(["ip", "netns", "del", NS]);
    expect(Bun.spawnSync(["ip", "netns", "add", NS]).exitCode).toBe(0);
    const inNs = (cmd: string[]) => expect(Bun.spawnSync(["ip", "netns", "exec", NS, ...cmd]).exitCode).toBe(0);
    inNs(["ip", "link", "set", "lo", "up"]);
    for (const ip of ["10", "20", "30", "53"]) inNs(["ip", "addr", "add", `198.51.100.${ip}/32`, "dev", "lo"]);
    const names = "DNS:pkgs.example.test,DNS:other.example.test,DNS:evil.example.net,DNS:doh.example.net";
    const cert = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=pkgs.example.test", "-addext", `subjectAltName=${names}`, "-keyout", join(outDir, "key.pem"), "-out", join(outDir, "cert.pem")], { stderr: "pipe" });
    expect(cert.exitCode).toBe(0);
    outside = Bun.spawn(["ip", "netns", "exec", NS, process.execPath, join(ROOT, "test/fixtures/egress-outside.ts"), outDir], { stdout: "pipe", stderr: "inherit" });
    const reader = (outside.stdout as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("ready");
    reader.releaseLock();
    const imp = banger(["image", "import", "--name", "default", "--kernel", join(IMAGE_DIR, "vmlinuz"), "--rootfs", join(IMAGE_DIR, "rootfs.ext4"), "--initrd", join(IMAGE_DIR, "initrd.img"), "--json"]);
    expect(imp.code).toBe(0);
    const t0 = performance.now();
    const c = banger(["vm", "create", VM, "--vmm", "qemu", "--egress", "pkgs.example.test,other.example.test,meta.example.test", "--start", "--json"]);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    console.log(`e2e egress-user: create --start ${Math.round(performance.now() - t0)} ms`);
    const v = c.json<{ spec: { egress: string; net: string }; runtime: { sshPort: number } }>();
    expect(v.spec).toMatchObject({ net: "user", egress: "pkgs.example.test,other.example.test,meta.example.test" });
    sshPort = v.runtime.sshPort;
  }, 240_000);

  afterAll(async () => {
    if (!h) return;
    banger(["vm", "delete", VM, "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
    if (outside) {
      outside.kill("SIGKILL");
      await outside.exited;
    }
    Bun.spawnSync(["ip", "netns", "del", NS]);
    rmSync(outDir, { recursive: true, force: true });
  });

  test("an allowed name resolves in the guest and is reachable over HTTP and HTTPS (its own SNI); every bypass is refused and never reaches the outside", () => {
    const udpQ = hexEscaped(buildQuery(7, "bypass-udp.example.net"));
    const tcpQ = hexEscaped(new Uint8Array([0, buildQuery(8, "bypass-tcp.example.net").length, ...buildQuery(8, "bypass-tcp.example.net")]));
    const r = probe(
      ["resolve-allowed", "res", "pkgs.example.test"],
      ["resolve-other", "res", "evil.example.net"],
      ["http-allowed", "get", "pkgs.example.test"],
      ["https-allowed", "tls", "pkgs.example.test", "pkgs.example.test"],
      ["sni-lie", "tls", "pkgs.example.test", "other.example.test"],
      ["sni-lie-ip", "tls", "198.51.100.30", "pkgs.example.test"],
      ["connect-other", "px", "CONNECT evil.example.net:443 HTTP/1.1"],
      ["connect-ip", "px", "CONNECT 198.51.100.30:443 HTTP/1.1"],
      ["doh-name", "px", "CONNECT doh.example.net:443 HTTP/1.1"],
      ["doh-ip-http", "px", "POST http://198.51.100.30/dns-query HTTP/1.1\r\nHost: 198.51.100.30\r\nContent-Length: 0"],
      ["ipv6", "px", "CONNECT [2001:db8::1]:443 HTTP/1.1"],
      ["host-loopback", "px", `CONNECT 127.0.0.1:${sshPort} HTTP/1.1`],
      ["host-slirp", "px", `CONNECT 10.0.2.2:${sshPort} HTTP/1.1`],
      ["metadata", "px", "CONNECT 169.254.169.254:80 HTTP/1.1"],
      ["metadata-by-name", "px", "CONNECT meta.example.test:80 HTTP/1.1"],
      ["direct-web", "direct", "198.51.100.10", "80", "GET / HTTP/1.0\\r\\n\\r\\n"],
      ["direct-dns-tcp", "direct", "198.51.100.53", "53", tcpQ],
      ["direct-host", "direct", "10.0.2.2", String(sshPort), ""],
      ["direct-metadata", "direct", "169.254.169.254", "80", ""],
      ["direct-udp-dns", "bash", "-c", `printf '${udpQ}' >/dev/udp/198.51.100.53/53 && sleep 1 && echo sent`],
      ["ipv6-addr", "bash", "-c", "ip -6 -o addr show scope global | wc -l"],
    );
    expect(r).toEqual({
      "resolve-allowed": "198.51.100.10",
      "resolve-other": "",
      "http-allowed": "hello from 198.51.100.10 host=pkgs.example.test",
      "https-allowed": "hello from 198.51.100.10 sni=pkgs.example.test host=pkgs.example.test",
      "sni-lie": "",
      "sni-lie-ip": "",
      "connect-other": "HTTP/1.1 403 Forbidden",
      "connect-ip": "HTTP/1.1 403 Forbidden",
      "doh-name": "HTTP/1.1 403 Forbidden",
      "doh-ip-http": "HTTP/1.1 403 Forbidden",
      ipv6: "HTTP/1.1 403 Forbidden",
      "host-loopback": "HTTP/1.1 403 Forbidden",
      "host-slirp": "HTTP/1.1 403 Forbidden",
      metadata: "HTTP/1.1 403 Forbidden",
      "metadata-by-name": "HTTP/1.1 403 Forbidden",
      "direct-web": "closed",
      "direct-dns-tcp": "closed",
      "direct-host": "closed",
      "direct-metadata": "closed",
      "direct-udp-dns": "sent",
      "ipv6-addr": "0",
    });
    const s = seen();
    // what reached the outside: the gate's DNS questions for allowed names and the two allowed requests, nothing else
    expect(s.filter((x) => x.what !== "dns").map((x) => `${x.what} ${x.ip} ${x.sni ?? ""}`.trim())).toEqual(["http 198.51.100.10", "https 198.51.100.10 pkgs.example.test"]);
    expect(s.filter((x) => x.what === "dns" && !["pkgs.example.test", "other.example.test", "meta.example.test"].includes(x.name!))).toEqual([]);

    const log = banger(["vm", "egress", VM, "--log", "--json"]);
    expect(log.code).toBe(0);
    const v = log.json<{ denied: number; log: { via: string; dest: string; port: number; name?: string; reason: string; time: string }[] }>();
    const lines = v.log.map((d) => `${d.via} ${d.dest}:${d.port} ${d.reason}`);
    for (const want of [
      "dns evil.example.net:53 name not allowed",
      "tls 198.51.100.10:443 SNI other.example.test does not resolve to 198.51.100.10",
      "connect evil.example.net:443 name not allowed",
      "connect 198.51.100.30:443 address not listed",
      "connect doh.example.net:443 name not allowed",
      "http 198.51.100.30:80 address not listed",
      "connect 2001:db8::1:443 IPv6 is not allowed",
      `connect 127.0.0.1:${sshPort} private, loopback or link-local address not listed`,
      `connect 10.0.2.2:${sshPort} private, loopback or link-local address not listed`,
      "connect 169.254.169.254:80 private, loopback or link-local address not listed",
      "connect meta.example.test:80 resolves only to addresses not allowed (169.254.169.254)",
    ]) expect(lines).toContain(want);
    expect(v.denied).toBe(v.log.length);
    expect(v.log.every((d) => !Number.isNaN(Date.parse(d.time)))).toBe(true);
    const human = banger(["vm", "egress", VM]);
    expect(human.stdout).toContain("policy:    pkgs.example.test,other.example.test,meta.example.test");
  }, 120_000);

  test("a live change applies to the next connection within 100 ms; none and all behave as named", () => {
    const set = banger(["vm", "egress", VM, "evil.example.net", "--json"]);
    expect(set.code).toBe(0);
    const v = set.json<{ policy: string; appliedMs: number }>();
    expect(v.policy).toBe("evil.example.net");
    expect(v.appliedMs).toBeLessThan(100);
    console.log(`e2e egress-user: policy change applied in ${v.appliedMs} ms`);
    let r = probe(["evil", "px", "CONNECT evil.example.net:443 HTTP/1.1"], ["pkgs", "px", "CONNECT pkgs.example.test:443 HTTP/1.1"], ["resolve", "res", "evil.example.net"]);
    expect(r).toEqual({ evil: "HTTP/1.1 200 Connection established", pkgs: "HTTP/1.1 403 Forbidden", resolve: "198.51.100.30" });

    expect(banger(["vm", "egress", VM, "none"]).code).toBe(0);
    r = probe(["evil", "px", "CONNECT evil.example.net:443 HTTP/1.1"], ["resolve", "res", "pkgs.example.test"], ["http", "get", "pkgs.example.test"]);
    expect(r).toEqual({ evil: "HTTP/1.1 403 Forbidden", resolve: "", http: "banger egress: egress is none" });

    expect(banger(["vm", "egress", VM, "all"]).code).toBe(0);
    r = probe(
      ["https", "tls", "evil.example.net", "evil.example.net"],
      ["ip", "px", "CONNECT 198.51.100.20:443 HTTP/1.1"],
      ["metadata", "px", "CONNECT 169.254.169.254:80 HTTP/1.1"],
      ["host", "px", `CONNECT 127.0.0.1:${sshPort} HTTP/1.1`],
      ["direct", "direct", "198.51.100.10", "80", ""],
    );
    expect(r).toEqual({
      https: "hello from 198.51.100.30 sni=evil.example.net host=evil.example.net",
      ip: "HTTP/1.1 200 Connection established",
      metadata: "HTTP/1.1 403 Forbidden",
      host: "HTTP/1.1 403 Forbidden",
      direct: "closed",
    });
    expect(banger(["vm", "show", VM]).stdout).toContain("egress:    all");
    // kill -9 of the daemon: the next one re-adopts the VM and re-opens its gate with the stored policy
    killAndWait(h.daemonPid());
    r = probe(["evil", "px", "CONNECT evil.example.net:443 HTTP/1.1"], ["metadata", "px", "CONNECT 169.254.169.254:80 HTTP/1.1"]);
    expect(r).toEqual({ evil: "HTTP/1.1 200 Connection established", metadata: "HTTP/1.1 403 Forbidden" });
    // bad input: one line, exit 2, nothing changed
    const bad = banger(["vm", "egress", VM, "a.com;id"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(banger(["vm", "egress", VM, "--json"]).json<{ policy: string }>().policy).toBe("all");
  }, 120_000);
});
