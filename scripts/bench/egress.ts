/**
 * `egress`: what the egress gate adds to an HTTPS request. Proxied: a TCP
 * connection to a socat relay (forked per connection, as QEMU's guestfwd
 * spawns one per guest connection) into the gate's unix socket, CONNECT to
 * an allowed name, the gate's SNI check, the TLS handshake and a GET.
 * Direct: the same TLS handshake and GET straight to the server. All on
 * loopback: the gate's resolver and dialer map the name's made-up public
 * address (198.51.100.10) onto the local server.
 * Tap (E1t): the transparent path net-tap redirects the guest's TCP into —
 * a plain TCP connection to the gate's listener, SO_ORIGINAL_DST (or the
 * conntrack read) that recovers its destination, the SNI check against that
 * address, then the same handshake and GET. The kernel's nat redirect itself
 * is not in it.
 */
import { connect, type Socket } from "node:net";
import { createServer as createTlsServer, connect as tlsConnect, type TLSSocket } from "node:tls";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EgressGate, serveTransparent } from "../../src/host/egress-gate.ts";
import { originalDst } from "../../plugins/net-tap/conntrack.ts";
import { createFS } from "../../src/host/fs.ts";
import { createClock } from "../../src/host/clock.ts";
import { parseEgress } from "../../src/shared/egress.ts";
import { freePort, type Bench } from "./run.ts";
import { formatTable, summarize, summaryRow } from "./stats.ts";

const NAME = "bench.example.test";

/** One GET over TLS on `sock` (already connected, or connected by tls itself), resolved when the answer is read. */
function httpsGet(opts: { socket?: Socket; port?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const t: TLSSocket = tlsConnect({ ...(opts.socket ? { socket: opts.socket } : { host: "127.0.0.1", port: opts.port, noDelay: true }), servername: NAME, rejectUnauthorized: false }, () => {
      t.write(`GET / HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n`);
    });
    let got = "";
    t.on("data", (d: Buffer) => (got += d.toString()));
    t.once("end", () => (got.startsWith("HTTP/1.1 200") ? resolve() : reject(new Error(`bad answer: ${got.slice(0, 80)}`))));
    t.once("error", reject);
  });
}

/** CONNECT through the relay; the socket once the gate said 200. */
function connectVia(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, noDelay: true }, () => s.write(`CONNECT ${NAME}:443 HTTP/1.1\r\nHost: ${NAME}:443\r\n\r\n`));
    let head = "";
    const onData = (d: Buffer) => {
      head += d.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      s.off("data", onData);
      if (head.startsWith("HTTP/1.1 200")) resolve(s);
      else reject(new Error(head.split("\r\n")[0]));
    };
    s.on("data", onData);
    s.once("error", reject);
  });
}

export async function egressSection(b: Bench, n = 30): Promise<void> {
  const key = join(b.tmp, "egress-key.pem");
  const cert = join(b.tmp, "egress-cert.pem");
  await b.must(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", `/CN=${NAME}`, "-keyout", key, "-out", cert]);
  const server = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (s) => {
    s.once("data", () => s.end("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"));
    s.on("error", () => {});
  });
  const serverPort = await new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as { port: number }).port)));
  b.defer("close the bench TLS server", () => new Promise<void>((r) => server.close(() => r())));

  const sock = join(b.tmp, "egress-proxy.sock");
  const gate = new EgressGate({
    vm: "bench",
    policy: parseEgress(NAME),
    resolve: async () => ({ addrs: ["198.51.100.10"], ttl: 60 }),
    logPath: join(b.tmp, "egress-denied.jsonl"),
    fs: createFS(),
    clock: createClock(),
    dial: (_ip, _port) =>
      new Promise((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: serverPort, allowHalfOpen: true, noDelay: true }, () => resolve(s));
        s.once("error", reject);
      }),
  });
  await gate.listen(sock, join(b.tmp, "egress-dns.sock"));
  b.defer("close the egress gate", () => gate.close());
  const relayPort = await freePort();
  const relay = Bun.spawn(["socat", `TCP-LISTEN:${relayPort},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${sock}`], { stderr: "ignore" });
  b.defer("stop the socat relay", async () => {
    relay.kill();
    await relay.exited;
  });
  await _listening(relayPort);

  const timed = async (f: () => Promise<void>) => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  const proxied = () => timed(async () => httpsGet({ socket: await connectVia(relayPort) }));
  const direct = () => timed(() => httpsGet({ port: serverPort }));
  await proxied(); // warm both paths (the gate's first lookup, TLS code paths)
  await direct();
  const r = await b.interleaved({ proxied, direct }, { proxied: n, direct: n }, "egress");
  const s = { proxied: summarize(r.proxied), direct: summarize(r.direct) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs direct"], [
    summaryRow("HTTPS GET through relay + gate (CONNECT, SNI check)", s.proxied, { baseline: s.direct }),
    summaryRow("HTTPS GET direct", s.direct, { baseline: s.direct }),
  ]));
  const added = s.proxied.median - s.direct.median;
  b.note("egress", "HTTPS GET through the egress gate − direct, medians", `+${added.toFixed(1)} ms`);
  b.row({ id: "E1", section: "egress", measure: "HTTPS GET through the egress gate (socat relay, CONNECT, SNI check) vs direct", stats: s.proxied, baseline: { name: "HTTPS GET direct", stats: s.direct }, note: `adds ${added.toFixed(1)} ms (medians); in a TCG guest the relay QEMU spawns per connection adds ~45 ms more (shared/guest/EGRESS.md)` });
  await _tapRow(b, gate, serverPort, n);
}

/** E1t: the tap gate's transparent path (what net-tap's nat redirect leads to) vs direct. */
async function _tapRow(b: Bench, gate: EgressGate, serverPort: number, n: number): Promise<void> {
  const fs = createFS();
  let lookups = 0;
  const srv = await serveTransparent("127.0.0.1", 0, async (from, fromPort, sockDst) => {
    // what the tap resolver does: SO_ORIGINAL_DST, else the conntrack table (a loopback connection has no redirect to find: the address is the bench's)
    if (!sockDst) await originalDst(fs, from, fromPort, srv.port);
    lookups++;
    return { gate, dst: { ip: "198.51.100.10", port: 443 } };
  });
  b.defer("close the tap gate listener", () => srv.close());
  const timed = async (f: () => Promise<void>) => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  const gated = () => timed(() => httpsGet({ port: srv.port }));
  const direct = () => timed(() => httpsGet({ port: serverPort }));
  await gated();
  await direct();
  const r = await b.interleaved({ gated, direct }, { gated: n, direct: n }, "egress tap");
  if (lookups < n) throw new Error(`the tap gate placed ${lookups} of ${n} connections`);
  const s = { gated: summarize(r.gated), direct: summarize(r.direct) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs direct"], [
    summaryRow("HTTPS GET through the tap gate (original dst, SNI check)", s.gated, { baseline: s.direct }),
    summaryRow("HTTPS GET direct", s.direct, { baseline: s.direct }),
  ]));
  const added = s.gated.median - s.direct.median;
  b.note("egress", "HTTPS GET through the tap gate − direct, medians", `+${added.toFixed(1)} ms`);
  b.row({ id: "E1t", section: "egress", measure: "HTTPS GET through the tap gate (transparent: original destination, SNI check against it) vs direct", stats: s.gated, baseline: { name: "HTTPS GET direct", stats: s.direct }, note: `adds ${added.toFixed(1)} ms (medians), loopback, without the nat redirect; in network namespaces (test/integration/tap-egress-netns.test.ts) curl's HTTPS median was within noise of direct` });
}

/** Wait until something accepts on 127.0.0.1:port (the relay just started). */
async function _listening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = connect({ host: "127.0.0.1", port }, () => (s.destroy(), r(true)));
      s.once("error", () => r(false));
    });
    if (up) return;
    await Bun.sleep(20);
  }
  throw new Error(`socat relay on 127.0.0.1:${port} never listened`);
}
