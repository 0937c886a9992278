// The egress gate (src/host/egress-gate.ts) with real sockets: the guest side
// is a unix socket client as socat would be, upstream servers listen on
// 127.0.0.1, and the gate's resolver and dialer map the test's made-up
// public addresses (198.51.100.0/24) onto them — nothing leaves loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EgressGate, serveTransparent, type OriginalDst } from "../../src/host/egress-gate.ts";
import { buildQuery, readAnswer, TYPE_AAAA } from "../../src/shared/dns-wire.ts";
import { parseEgress, type EgressDenial } from "../../src/shared/egress.ts";
import { createFS } from "../../src/host/fs.ts";
import { createClock } from "../../src/host/clock.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-gate-"));
const proxySock = join(dir, "p.sock");
const dnsSock = join(dir, "d.sock");
const logPath = join(dir, "denied.jsonl");

// the made-up outside: name → address, address → a loopback server that records what it got
const DNS: Record<string, string[]> = {
  "pkgs.example.test": ["198.51.100.10"],
  "other.example.test": ["198.51.100.20"],
  "evil.example.net": ["198.51.100.30"],
  "rebind.example.test": ["127.0.0.1", "169.254.169.254"],
  "git.example.com": ["198.51.100.40"],
};
const received = new Map<string, Buffer>();
const servers: Server[] = [];
const portOf = new Map<string, number>();
const answers: string[] = [];

async function listenRecorder(ip: string): Promise<void> {
  const srv = createServer((s) => {
    s.on("data", (d: Buffer) => {
      received.set(ip, Buffer.concat([received.get(ip) ?? Buffer.alloc(0), d]));
      const text = d.toString("latin1");
      if (text.startsWith("GET ")) s.end(`HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n${ip.split(".")[3]}\n`);
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  portOf.set(ip, (srv.address() as { port: number }).port);
  servers.push(srv);
}

let gate: EgressGate;
beforeAll(async () => {
  for (const ip of ["198.51.100.10", "198.51.100.20", "198.51.100.30", "198.51.100.40", "203.0.113.9"]) await listenRecorder(ip);
  gate = new EgressGate({
    vm: "t",
    policy: parseEgress("pkgs.example.test,other.example.test,*.example.com:443,203.0.113.0/24:443"),
    resolve: async (name) => ({ addrs: DNS[name] ?? [], ttl: 30 }),
    logPath,
    fs: createFS(),
    clock: createClock(),
    onAnswer: (name, addrs) => void answers.push(`${name}=${addrs.join(" ")}`),
    dial: (ip, port) =>
      new Promise((resolve, reject) => {
        // only the made-up outside on the ports the recorders serve (443 and 80 both land on the recorder)
        const p = portOf.get(ip);
        if (!p) return reject(new Error(`test outside has no ${ip}:${port}`));
        const s = connect({ host: "127.0.0.1", port: p, allowHalfOpen: true });
        s.once("connect", () => resolve(s));
        s.once("error", reject);
      }),
  });
  await gate.listen(proxySock, dnsSock);
});
afterAll(async () => {
  await gate.close();
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

const denials = (): EgressDenial[] => (existsSync(logPath) ? readFileSync(logPath, "utf8") : "").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as EgressDenial);

/** Send `head` to the proxy; resolves with the socket and the first reply bytes. */
function proxyRequest(head: string): Promise<{ sock: Socket; reply: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(proxySock);
    let got = "";
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (got.includes("\r\n\r\n")) {
        s.removeAllListeners("data");
        resolve({ sock: s, reply: got });
      }
    });
    s.once("error", reject);
    s.once("close", () => resolve({ sock: s, reply: got }));
    s.write(head);
  });
}

/** CONNECT then a real TLS ClientHello naming `sni`; resolves with whether the tunnel stayed open. */
async function tlsThrough(target: string, sni: string): Promise<{ status: string; open: boolean }> {
  const { sock, reply } = await proxyRequest(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const status = reply.split("\r\n")[0]!;
  if (!status.includes(" 200 ")) return { status, open: false };
  const ip = target.startsWith("198") || target.startsWith("203") ? target.split(":")[0]! : DNS[target.split(":")[0]!]![0]!;
  const before = received.get(ip)?.length ?? 0;
  const t = tlsConnect({ socket: sock, servername: sni, rejectUnauthorized: false });
  t.on("error", () => {});
  const closed = await new Promise<boolean>((r) => {
    sock.once("close", () => r(true));
    setTimeout(() => r(false), 600);
  });
  t.destroy();
  const got = (received.get(ip)?.length ?? 0) > before;
  return { status, open: !closed && got };
}

describe("proxy", () => {
  test("CONNECT to an allowed name with its own SNI goes through to the address it resolved to", async () => {
    expect(await tlsThrough("pkgs.example.test:443", "pkgs.example.test")).toEqual({ status: "HTTP/1.1 200 Connection established", open: true });
    expect(await tlsThrough("git.example.com:443", "git.example.com")).toEqual({ status: "HTTP/1.1 200 Connection established", open: true });
  });

  test("an SNI that names an allowed domain which does not resolve to that address is cut, unsent, and logged", async () => {
    const n = denials().length;
    expect(await tlsThrough("pkgs.example.test:443", "other.example.test")).toEqual({ status: "HTTP/1.1 200 Connection established", open: false });
    expect(await tlsThrough("pkgs.example.test:443", "evil.example.net")).toEqual({ status: "HTTP/1.1 200 Connection established", open: false });
    const d = denials().slice(n);
    expect(d.map((x) => [x.via, x.dest, x.name, x.reason])).toEqual([
      ["tls", "198.51.100.10", "other.example.test", "SNI other.example.test does not resolve to 198.51.100.10"],
      ["tls", "198.51.100.10", "evil.example.net", "SNI evil.example.net is not allowed"],
    ]);
  });

  test("a listed address takes any SNI; an unlisted one is refused at CONNECT whatever the SNI", async () => {
    expect((await tlsThrough("203.0.113.9:443", "anything.example.org")).open).toBe(true);
    expect((await tlsThrough("198.51.100.10:443", "pkgs.example.test")).status).toBe("HTTP/1.1 403 Forbidden");
  });

  test.each([
    ["evil.example.net:443", "name not allowed"],
    ["git.example.com:22", "name not allowed"],
    ["198.51.100.30:443", "address not listed"],
    ["127.0.0.1:22", "private, loopback or link-local address not listed"],
    ["10.0.2.2:22", "private, loopback or link-local address not listed"],
    ["169.254.169.254:80", "private, loopback or link-local address not listed"],
    ["[2001:db8::1]:443", "IPv6 is not allowed"],
    ["rebind.example.test:443", "name not allowed"],
  ])("CONNECT %s → 403 (%s), logged", async (target, why) => {
    const n = denials().length;
    const { reply } = await proxyRequest(`CONNECT ${target} HTTP/1.1\r\n\r\n`);
    expect(reply).toStartWith("HTTP/1.1 403 Forbidden");
    expect(reply).toContain(why);
    const d = denials().slice(n);
    expect(d.length).toBe(1);
    expect([d[0]!.via, d[0]!.reason]).toEqual(["connect", why]);
    expect(typeof d[0]!.port).toBe("number");
  });

  test("plain HTTP: absolute URL of an allowed name is forwarded in origin form with Connection: close; a lying Host header is refused", async () => {
    const before = received.get("198.51.100.20")?.length ?? 0;
    const { reply } = await proxyRequest("GET http://other.example.test/simple/x?y=1 HTTP/1.1\r\nHost: other.example.test\r\nProxy-Connection: keep-alive\r\nUser-Agent: t\r\n\r\n");
    expect(reply).toStartWith("HTTP/1.1 200 OK");
    const sent = received.get("198.51.100.20")!.subarray(before).toString("latin1");
    expect(sent).toBe("GET /simple/x?y=1 HTTP/1.1\r\nHost: other.example.test\r\nUser-Agent: t\r\nConnection: close\r\n\r\n");
    const lie = await proxyRequest("GET http://other.example.test/ HTTP/1.1\r\nHost: evil.example.net\r\n\r\n");
    expect(lie.reply).toStartWith("HTTP/1.1 403");
    expect(denials().at(-1)!.reason).toBe("Host header names another host than the URL");
    const ip = await proxyRequest("GET http://198.51.100.30/ HTTP/1.1\r\nHost: 198.51.100.30\r\n\r\n");
    expect(ip.reply).toStartWith("HTTP/1.1 403");
  });

  test("a policy change applies to the very next connection; none refuses everything", async () => {
    gate.setPolicy(parseEgress("evil.example.net"));
    expect((await proxyRequest("CONNECT evil.example.net:443 HTTP/1.1\r\n\r\n")).reply).toStartWith("HTTP/1.1 200");
    expect((await proxyRequest("CONNECT pkgs.example.test:443 HTTP/1.1\r\n\r\n")).reply).toStartWith("HTTP/1.1 403");
    gate.setPolicy(parseEgress("none"));
    expect((await proxyRequest("CONNECT evil.example.net:443 HTTP/1.1\r\n\r\n")).reply).toContain("egress is none");
    gate.setPolicy(parseEgress("all"));
    expect((await proxyRequest("CONNECT evil.example.net:443 HTTP/1.1\r\n\r\n")).reply).toStartWith("HTTP/1.1 200");
    expect((await proxyRequest("CONNECT 198.51.100.30:443 HTTP/1.1\r\n\r\n")).reply).toStartWith("HTTP/1.1 200");
    expect((await proxyRequest("CONNECT rebind.example.test:443 HTTP/1.1\r\n\r\n")).reply).toContain("resolves only to addresses not allowed");
    expect((await proxyRequest("CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n")).reply).toStartWith("HTTP/1.1 403");
    gate.setPolicy(parseEgress("pkgs.example.test,other.example.test,*.example.com:443,203.0.113.0/24:443"));
  });
});

/** One DNS-over-TCP exchange with the gate's resolver. */
function ask(name: string, type?: number): Promise<ReturnType<typeof readAnswer>> {
  return new Promise((resolve, reject) => {
    const s = connect(dnsSock);
    const q = buildQuery(0x1234, name, type);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        s.end();
        resolve(readAnswer(new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0)))));
      }
    });
    s.once("error", reject);
    s.write(Buffer.concat([len, Buffer.from(q)]));
  });
}

describe("resolver", () => {
  test("allowed names get their public A records (and feed onAnswer); others NXDOMAIN, logged; AAAA is empty", async () => {
    expect(await ask("pkgs.example.test")).toEqual({ id: 0x1234, rcode: 0, addrs: ["198.51.100.10"] });
    expect(await ask("GIT.example.com")).toEqual({ id: 0x1234, rcode: 0, addrs: ["198.51.100.40"] });
    expect(answers).toContain("pkgs.example.test=198.51.100.10");
    const n = denials().length;
    expect((await ask("evil.example.net")).rcode).toBe(3);
    expect(denials().slice(n).map((d) => [d.via, d.name, d.reason])).toEqual([["dns", "evil.example.net", "name not allowed"]]);
    expect(await ask("pkgs.example.test", TYPE_AAAA)).toEqual({ id: 0x1234, rcode: 0, addrs: [] });
  });

  test("an allowed name's answers pointing at loopback or metadata are dropped (DNS rebinding)", async () => {
    gate.setPolicy(parseEgress("rebind.example.test"));
    expect(await ask("rebind.example.test")).toEqual({ id: 0x1234, rcode: 0, addrs: [] });
    gate.setPolicy(parseEgress("rebind.example.test,127.0.0.1"));
    expect((await ask("rebind.example.test")).addrs).toEqual(["127.0.0.1"]);
    gate.setPolicy(parseEgress("pkgs.example.test,other.example.test,*.example.com:443,203.0.113.0/24:443"));
  });

  test("garbage gets FORMERR, the connection stays usable", async () => {
    const r = await new Promise<Buffer>((resolve) => {
      const s = connect(dnsSock);
      s.on("data", (d: Buffer) => {
        s.end();
        resolve(d);
      });
      s.write(Buffer.from([0, 3, 1, 2, 3]));
    });
    expect(r.readUInt16BE(0)).toBe(12);
    expect(r.readUInt16BE(4) & 0xf).toBe(1);
  });
});

// net-tap's path: the guest's own connection, redirected by nftables, comes in
// without a proxy request; where it was going comes from conntrack (here: the
// test says, by the client's source port)
describe("transparent (tap redirect)", () => {
  const dstByPort = new Map<number, OriginalDst>();
  let srv: Awaited<ReturnType<typeof serveTransparent>>;
  beforeAll(async () => {
    gate.setPolicy(parseEgress("pkgs.example.test,other.example.test,*.example.com:443,203.0.113.0/24:443"));
    srv = await serveTransparent("127.0.0.1", 0, async (_from, fromPort) => {
      // the client names its destination once its connect completed: the accept may come first
      for (let i = 0; i < 50 && !dstByPort.has(fromPort); i++) await Bun.sleep(10);
      const dst = dstByPort.get(fromPort);
      return dst ? { gate, dst } : null;
    });
  });
  afterAll(async () => {
    await srv.close();
  });

  /** Connect "to" dst through the gate and send `first` (or a TLS hello naming `sni`); whether dst's server got it, and the reply. */
  async function through(dst: OriginalDst, first: { sni: string } | { raw: string }): Promise<{ got: boolean; reply: string }> {
    const before = received.get(dst.ip)?.length ?? 0;
    const sock = connect({ host: "127.0.0.1", port: srv.port });
    await new Promise<void>((r, j) => sock.once("connect", () => r()).once("error", j));
    dstByPort.set(sock.localPort!, dst);
    let reply = "";
    sock.on("data", (d: Buffer) => (reply += d.toString("latin1")));
    sock.on("error", () => {});
    let t: ReturnType<typeof tlsConnect> | undefined;
    if ("sni" in first) {
      t = tlsConnect({ socket: sock, servername: first.sni, rejectUnauthorized: false });
      t.on("error", () => {});
    } else sock.write(first.raw);
    await new Promise<void>((r) => {
      sock.once("close", () => r());
      setTimeout(r, 600);
    });
    t?.destroy();
    sock.destroy();
    return { got: (received.get(dst.ip)?.length ?? 0) > before, reply };
  }

  test("TLS whose SNI is an allowed name that resolved to the address connected to goes through", async () => {
    expect((await through({ ip: "198.51.100.10", port: 443 }, { sni: "pkgs.example.test" })).got).toBe(true);
    expect((await through({ ip: "198.51.100.40", port: 443 }, { sni: "git.example.com" })).got).toBe(true);
  });

  test("a lying SNI to an allowed address, and an allowed SNI to another address, are cut before a byte goes on, and logged", async () => {
    const n = denials().length;
    expect((await through({ ip: "198.51.100.10", port: 443 }, { sni: "evil.example.net" })).got).toBe(false);
    expect((await through({ ip: "198.51.100.30", port: 443 }, { sni: "pkgs.example.test" })).got).toBe(false);
    expect((await through({ ip: "198.51.100.10", port: 443 }, { sni: "other.example.test" })).got).toBe(false);
    expect((await through({ ip: "198.51.100.40", port: 8443 }, { sni: "git.example.com" })).got).toBe(false);
    expect(denials().slice(n).map((x) => [x.via, x.dest, x.port, x.name, x.reason])).toEqual([
      ["tls", "198.51.100.10", 443, "evil.example.net", "SNI evil.example.net is not allowed"],
      ["tls", "198.51.100.30", 443, "pkgs.example.test", "SNI pkgs.example.test does not resolve to 198.51.100.30"],
      ["tls", "198.51.100.10", 443, "other.example.test", "SNI other.example.test does not resolve to 198.51.100.10"],
      ["tls", "198.51.100.40", 8443, "git.example.com", "SNI git.example.com is not allowed"],
    ]);
  });

  test("plain HTTP by its Host header: the allowed name's own address passes, a lying Host or a raw address is refused and logged", async () => {
    const before = received.get("198.51.100.20")?.length ?? 0;
    const ok = await through({ ip: "198.51.100.20", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: other.example.test\r\nConnection: keep-alive\r\n\r\n" });
    expect(ok).toEqual({ got: true, reply: expect.stringContaining("200 OK") });
    // one request per connection: a second one on it could name another host at the same address
    expect(received.get("198.51.100.20")!.subarray(before).toString("latin1")).toBe("GET / HTTP/1.1\r\nHost: other.example.test\r\nConnection: close\r\n\r\n");
    const n = denials().length;
    expect((await through({ ip: "198.51.100.10", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: evil.example.net\r\n\r\n" })).got).toBe(false);
    expect((await through({ ip: "198.51.100.30", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: pkgs.example.test:80\r\n\r\n" })).got).toBe(false);
    expect((await through({ ip: "198.51.100.30", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: 198.51.100.30\r\n\r\n" })).got).toBe(false);
    // two Host headers: which one a server reads is its business, so neither is trusted
    expect((await through({ ip: "198.51.100.10", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: pkgs.example.test\r\nHost: evil.example.net\r\n\r\n" })).got).toBe(false);
    expect(denials().slice(n).map((x) => [x.via, x.dest, x.reason])).toEqual([
      ["http", "198.51.100.10", "Host evil.example.net is not allowed"],
      ["http", "198.51.100.30", "Host pkgs.example.test does not resolve to 198.51.100.30"],
      ["http", "198.51.100.30", "address not listed"],
      ["http", "198.51.100.10", "HTTP without a Host header"],
    ]);
  });

  test("the host, private and metadata addresses are refused whatever name is spoken; a listed address takes any", async () => {
    const n = denials().length;
    expect((await through({ ip: "127.0.0.1", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: pkgs.example.test\r\n\r\n" })).got).toBe(false);
    expect((await through({ ip: "169.254.169.254", port: 80 }, { raw: "GET / HTTP/1.1\r\nHost: pkgs.example.test\r\n\r\n" })).got).toBe(false);
    expect(denials().slice(n).map((x) => [x.via, x.dest, x.reason])).toEqual([
      ["connect", "127.0.0.1", "private, loopback or link-local address not listed"],
      ["connect", "169.254.169.254", "private, loopback or link-local address not listed"],
    ]);
    expect((await through({ ip: "203.0.113.9", port: 443 }, { sni: "anything.example.org" })).got).toBe(true);
  });

  test("neither TLS nor HTTP: only to an address the guest was answered with for an allowed name", async () => {
    gate.setPolicy(parseEgress("pkgs.example.test,other.example.test,*.example.com:443,203.0.113.0/24:443"));
    expect((await through({ ip: "198.51.100.20", port: 443 }, { raw: "SSH-2.0-x\r\n" })).got).toBe(false);
    expect(denials().at(-1)).toMatchObject({ via: "connect", dest: "198.51.100.20", reason: "neither TLS nor HTTP, to an address no allowed name resolved to" });
    await gate.answer(buildQuery(9, "other.example.test"));
    expect((await through({ ip: "198.51.100.20", port: 443 }, { raw: "SSH-2.0-x\r\n" })).got).toBe(true);
    // and a stranger the route cannot place is closed
    const s = connect({ host: "127.0.0.1", port: srv.port });
    s.on("error", () => {});
    expect(await new Promise<boolean>((r) => (s.once("close", () => r(true)), setTimeout(() => r(false), 2000)))).toBe(true);
  });
});
