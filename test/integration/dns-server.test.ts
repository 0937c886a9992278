// serveDns on loopback: UDP and TCP framing, the asker's address handed to the answerer, long UDP answers truncated (TC).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { serveDns, type DnsServer } from "../../src/host/dns-server.ts";
import { buildAnswer, buildQuery, parseQuery, readAnswer } from "../../src/shared/dns-wire.ts";

const PORT = 20_000 + (process.pid % 20_000);
const askers: string[] = [];
let server: DnsServer;

beforeAll(async () => {
  server = await serveDns("127.0.0.1", PORT, async (q, from) => {
    askers.push(from);
    const p = parseQuery(q)!;
    if (p.name === "boom.test") throw new Error("no answer");
    // many addresses: longer than a plain UDP answer may be
    const n = p.name === "big.test" ? 60 : 1;
    return buildAnswer(q, p, 0, Array.from({ length: n }, (_, i) => `192.0.2.${i + 1}`), 30);
  });
});
afterAll(() => server.close());

function udpAsk(name: string, timeoutMs = 2000): Promise<Uint8Array | null> {
  const s = createSocket("udp4");
  return new Promise((resolve) => {
    const t = setTimeout(() => (s.close(), resolve(null)), timeoutMs);
    s.on("message", (m) => {
      clearTimeout(t);
      s.close();
      resolve(new Uint8Array(m));
    });
    s.send(buildQuery(9, name), PORT, "127.0.0.1");
  });
}

function tcpAsk(names: string[]): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const s = connect(PORT, "127.0.0.1");
    let buf = Buffer.alloc(0);
    const out: Uint8Array[] = [];
    s.on("error", reject);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + out.at(-1)!.length);
      }
      if (out.length === names.length) (s.end(), resolve(out));
    });
    // both questions in one write, the second split across two: framing, not packets
    const qs = names.map((n) => {
      const q = buildQuery(names.indexOf(n) + 1, n);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(q.length);
      return Buffer.concat([len, Buffer.from(q)]);
    });
    const all = Buffer.concat(qs);
    s.write(all.subarray(0, all.length - 3));
    setTimeout(() => s.write(all.subarray(all.length - 3)), 50);
  });
}

test("UDP: answered, the asker's address given to the answerer", async () => {
  const a = await udpAsk("one.test");
  expect(readAnswer(a!)).toEqual({ id: 9, rcode: 0, addrs: ["192.0.2.1"] });
  expect(askers.at(-1)).toBe("127.0.0.1");
});

test("UDP: an answer over 512 bytes is cut to its header with TC set (the asker retries over TCP); a failed answer sends nothing", async () => {
  const a = (await udpAsk("big.test"))!;
  // header + question ("big.test": 10 bytes of name, type, class), no records
  expect(a.length).toBe(12 + 10 + 4);
  expect(a[2]! & 0x02).toBe(0x02);
  expect(readAnswer(a)).toEqual({ id: 9, rcode: 0, addrs: [] });
  expect(await udpAsk("boom.test", 500)).toBeNull();
});

test("TCP: length-prefixed questions answered in order, the big one whole", async () => {
  const [a, b] = await tcpAsk(["big.test", "one.test"]);
  expect(readAnswer(a!).addrs.length).toBe(60);
  expect(readAnswer(b!)).toEqual({ id: 2, rcode: 0, addrs: ["192.0.2.1"] });
  expect(askers.at(-1)).toBe("127.0.0.1");
});
