import { describe, expect, test } from "bun:test";
import { buildAnswer, buildQuery, formErr, parseQuery, readAnswer, TYPE_AAAA } from "../../src/shared/dns-wire.ts";
import { readClientHello } from "../../src/shared/tls-hello.ts";

/** A TLS 1.2-style ClientHello record with the given server_name extensions (each a list of names). */
function hello(sniExts: string[][], opts: { cut?: number } = {}): Uint8Array {
  const exts: number[] = [];
  for (const names of sniExts) {
    const list: number[] = [];
    for (const n of names) {
      const b = [...new TextEncoder().encode(n)];
      list.push(0, b.length >> 8, b.length & 255, ...b);
    }
    const body = [list.length >> 8, list.length & 255, ...list];
    exts.push(0, 0, body.length >> 8, body.length & 255, ...body);
  }
  const hs = [3, 3, ...new Array(32).fill(7), 0, 0, 2, 0x13, 0x01, 1, 0, exts.length >> 8, exts.length & 255, ...exts];
  const msg = [1, hs.length >> 16, (hs.length >> 8) & 255, hs.length & 255, ...hs];
  const rec = [0x16, 3, 1, msg.length >> 8, msg.length & 255, ...msg];
  return new Uint8Array(opts.cut ? rec.slice(0, opts.cut) : rec);
}

describe("tls hello", () => {
  test("reads one SNI, lower-cased; none; not TLS; incomplete", () => {
    expect(readClientHello(hello([["Pkgs.Example.org."]]))).toEqual({ kind: "tls", sni: "pkgs.example.org" });
    expect(readClientHello(hello([]))).toEqual({ kind: "tls", sni: null });
    expect(readClientHello(new TextEncoder().encode("SSH-2.0-OpenSSH\r\n"))).toEqual({ kind: "other" });
    expect(readClientHello(hello([["a.org"]], { cut: 20 }))).toEqual({ kind: "more" });
  });

  test("two server_name extensions, or two names in one, are refused (which would the server read?)", () => {
    expect(readClientHello(hello([["a.org"], ["b.org"]]))).toEqual({ kind: "bad" });
    expect(readClientHello(hello([["a.org", "b.org"]]))).toEqual({ kind: "bad" });
  });

  test("random and truncated bytes never throw", () => {
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(Math.floor(Math.random() * 300)).map(() => Math.floor(Math.random() * 256));
      if (b.length) b[0] = 0x16;
      expect(() => readClientHello(b)).not.toThrow();
      const h = hello([["x.example.org"]]);
      expect(() => readClientHello(h.slice(0, Math.floor(Math.random() * h.length)))).not.toThrow();
    }
  });
});

describe("dns wire", () => {
  test("a query round-trips into an answer, NXDOMAIN and an empty AAAA answer", () => {
    const q = buildQuery(42, "Pkgs.Example.org");
    const p = parseQuery(q)!;
    expect([p.id, p.name, p.type, p.cls, p.rd]).toEqual([42, "pkgs.example.org", 1, 1, true]);
    expect(readAnswer(buildAnswer(q, p, 0, ["198.51.100.1", "198.51.100.2"], 30))).toEqual({ id: 42, rcode: 0, addrs: ["198.51.100.1", "198.51.100.2"] });
    expect(readAnswer(buildAnswer(q, p, 3))).toEqual({ id: 42, rcode: 3, addrs: [] });
    const q6 = buildQuery(43, "a.org", TYPE_AAAA);
    expect(parseQuery(q6)!.type).toBe(TYPE_AAAA);
  });

  test("garbage, responses and compressed questions are not parsed; random bytes never throw", () => {
    expect(parseQuery(new Uint8Array([1, 2, 3]))).toBeNull();
    const resp = buildQuery(1, "a.org");
    resp[2]! |= 0x80;
    expect(parseQuery(resp)).toBeNull();
    const ptr = buildQuery(1, "a.org");
    ptr[12] = 0xc0;
    expect(parseQuery(ptr)).toBeNull();
    expect(formErr(new Uint8Array([0xab, 0xcd])).slice(0, 4)).toEqual(new Uint8Array([0xab, 0xcd, 0x80, 0x01]));
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(Math.floor(Math.random() * 80)).map(() => Math.floor(Math.random() * 256));
      expect(() => parseQuery(b)).not.toThrow();
    }
  });
});
