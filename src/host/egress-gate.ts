// One VM's egress gate on the host (exported to plugins by src/plugin-api.ts): an HTTP proxy (CONNECT with an SNI
// check, plain HTTP by absolute URI or Host header) and a DNS-over-TCP
// resolver that answers only names the policy allows. Both listen on unix
// sockets in the VM's dir; the guest reaches them through QEMU guestfwd
// relays (net-user) — a socket per VM, so who is asking is never a guess.
// On a tap (net-tap) the guest's own TCP connections come in transparently
// (nftables redirect, serveTransparent) with the address they were going
// to, and get the same SNI / Host check against that address.
// The policy is swapped in place: the next connection or question obeys it.
import { connect, createServer, type Server, type Socket } from "node:net";
import { addressListed, addressVerdict, formatEgress, ipv4ToInt, nameAllowed, type EgressDenial, type EgressPolicy } from "../shared/egress.ts";
import { buildAnswer, formErr, parseQuery, RCODE_NXDOMAIN, RCODE_REFUSED, TYPE_A } from "../shared/dns-wire.ts";
import { readClientHello } from "../shared/tls-hello.ts";
import type { ResolveA } from "./dns.ts";
import { socketOriginalDst } from "./original-dst.ts";
import type { Clock, FS } from "./types.ts";

const MAX_HEAD = 16 << 10;
const HEAD_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** How long a tunnel waits for the guest's first bytes (a TLS hello) before it lets a server-speaks-first protocol through. */
const FIRST_BYTES_MS = 2_000;
/** Answers are cached at most this long (and at least MIN), whatever their TTL. */
const MAX_TTL_S = 300;
const MIN_TTL_S = 5;
/** Denied attempts written to a VM's log per gate (daemon run × VM start). */
const MAX_LOGGED = 10_000;

export interface GateOptions {
  vm: string;
  policy: EgressPolicy;
  resolve: ResolveA;
  /** The VM's denial log (EGRESS_LOG_FILE in its dir). */
  logPath: string;
  fs: FS;
  clock: Clock;
  /** Called with every answer handed out for an allowed name (net-tap fills its firewall sets from these). */
  onAnswer?: (name: string, addrs: string[], ttl: number) => Promise<void> | void;
  /** Debug lines (the daemon log). */
  debug?: (msg: string) => void;
  /** Opens the upstream connection (tests); default a TCP connect. */
  dial?: (ip: string, port: number) => Promise<Socket>;
}

/** Where a transparently redirected connection was going: the guest's own destination. */
export interface OriginalDst {
  ip: string;
  port: number;
}

/** How long an address handed to the guest for a name still counts as that name's, after the answer (ms): the tap sets' floor. */
const HANDED_MS = 300_000;

type Target = { ok: true; ip: string; name?: string } | { ok: false; reason: string };

export class EgressGate {
  private policy: EgressPolicy;
  private readonly servers: Server[] = [];
  private readonly answers = new Map<string, { addrs: string[]; until: number }>();
  /** name → address → until (ms): what the resolver told the guest, so a connection to an address an answer named passes after a re-lookup rotated it. */
  private readonly handed = new Map<string, Map<string, number>>();
  private readonly open = new Set<Socket>();
  denied = 0;

  constructor(private readonly o: GateOptions) {
    this.policy = o.policy;
  }

  get current(): EgressPolicy {
    return this.policy;
  }

  /** Takes effect for the next connection and the next question; open tunnels are not cut (nor are they on tap, where conntrack keeps them). */
  setPolicy(p: EgressPolicy): void {
    this.policy = p;
    this.answers.clear();
    this.handed.clear();
  }

  /** Serve the proxy and the resolver on these unix socket paths (a stale file at either is replaced). */
  async listen(proxyPath: string, dnsPath: string): Promise<void> {
    const serve = (path: string): ((s: Socket) => Promise<void>) => (path === proxyPath ? (s) => this.proxy(s) : (s) => this.dns(s));
    for (const path of [proxyPath, dnsPath]) {
      const handler = serve(path);
      await this.o.fs.rmrf(path);
      // half-open allowed: a guest that shuts its sending side still gets the whole answer
      const srv = createServer({ allowHalfOpen: true }, (s) => {
        this.open.add(s);
        s.on("close", () => this.open.delete(s));
        s.on("error", () => {});
        handler(s).catch(() => s.destroy());
      });
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(path, () => resolve());
      });
      await this.o.fs.chmod(path, 0o600);
      this.servers.push(srv);
    }
  }

  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    await Promise.all(this.servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /** Log and count a denied attempt. */
  async deny(d: Omit<EgressDenial, "time">): Promise<void> {
    this.denied++;
    const entry: EgressDenial = { time: this.o.clock.now().toISOString(), ...d };
    this.o.debug?.(`egress ${this.o.vm}: denied ${d.via} ${d.dest}:${d.port}${d.name ? ` (${d.name})` : ""}: ${d.reason}`);
    // a guest that only knocks must not fill the host's disk: the first MAX_LOGGED per gate are kept
    if (this.denied > MAX_LOGGED) return;
    const line = this.denied === MAX_LOGGED ? { ...entry, reason: `${entry.reason} (log full: later denials are not written)` } : entry;
    await this.o.fs.appendFile(this.o.logPath, JSON.stringify(line) + "\n").catch(() => {});
  }

  /** The addresses an allowed name has now (cached within its TTL). */
  private async lookup(name: string): Promise<string[]> {
    const now = this.o.clock.now().getTime();
    const hit = this.answers.get(name);
    if (hit && hit.until > now) return hit.addrs;
    const r = await this.o.resolve(name);
    const ttl = Math.max(MIN_TTL_S, Math.min(MAX_TTL_S, r.ttl));
    this.answers.set(name, { addrs: r.addrs, until: now + ttl * 1000 });
    return r.addrs;
  }

  /** Where a connection to host:port may go, or why it may not. */
  private async target(host: string, port: number): Promise<Target> {
    const p = this.policy;
    if (host.includes(":") || host.startsWith("[")) return { ok: false, reason: "IPv6 is not allowed" };
    if (ipv4ToInt(host) !== null) {
      const why = addressVerdict(p, host, port, false);
      return why ? { ok: false, reason: why } : { ok: true, ip: host };
    }
    if (!/^[a-z0-9.-]{1,253}$/i.test(host)) return { ok: false, reason: "not a host name" };
    const name = host.toLowerCase().replace(/\.$/, "");
    if (!nameAllowed(p, name, port)) return { ok: false, reason: p.mode === "none" ? "egress is none" : "name not allowed" };
    let addrs: string[];
    try {
      addrs = await this.lookup(name);
    } catch (e) {
      return { ok: false, reason: `cannot resolve: ${(e as Error).message}` };
    }
    if (addrs.length === 0) return { ok: false, reason: "name does not resolve" };
    const good = addrs.filter((a) => addressVerdict(p, a, port, true) === null);
    if (good.length === 0) return { ok: false, reason: `resolves only to addresses not allowed (${addrs.join(" ")})` };
    return { ok: true, ip: good[0]!, name };
  }

  private dial(ip: string, port: number): Promise<Socket> {
    if (this.o.dial) return this.o.dial(ip, port);
    return new Promise((resolve, reject) => {
      const s = connect({ host: ip, port, allowHalfOpen: true });
      const t = setTimeout(() => s.destroy(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
      s.once("connect", () => {
        clearTimeout(t);
        // small request heads and TLS records: Nagle would hold them for the peer's delayed ACK
        s.setNoDelay(true);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  // ------------------------------------------------------------------ proxy

  private async proxy(client: Socket): Promise<void> {
    const head = await _readHead(client);
    if (!head) return void client.destroy();
    const [line, ...headerLines] = head.text.split("\r\n");
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line ?? "");
    if (!m) return _refuse(client, 400, "not an HTTP proxy request");
    const [, method, target] = m as unknown as [string, string, string];
    if (method === "CONNECT") return this.tunnel(client, target, head.rest);
    return this.forward(client, method, target, headerLines, head.rest);
  }

  private async tunnel(client: Socket, target: string, rest: Buffer): Promise<void> {
    const hp = _hostPort(target, NaN);
    if (!hp || !Number.isInteger(hp.port)) return _refuse(client, 400, "CONNECT needs host:port");
    const t = await this.target(hp.host, hp.port);
    if (!t.ok) {
      await this.deny({ dest: hp.host, port: hp.port, name: ipv4ToInt(hp.host) === null ? hp.host : undefined, reason: t.reason, via: "connect" });
      return _refuse(client, 403, t.reason);
    }
    let up: Socket;
    try {
      up = await this.dial(t.ip, hp.port);
    } catch (e) {
      return _refuse(client, 502, `cannot connect to ${t.ip}:${hp.port}: ${(e as Error).message}`);
    }
    this.open.add(up);
    up.on("close", () => this.open.delete(up));
    client.write("HTTP/1.1 200 Connection established\r\n\r\n");
    // the first bytes decide: a TLS hello must name an allowed name that resolved to this very address
    // a protocol whose server speaks first (smtp) sends nothing: after FIRST_BYTES_MS it goes through as "other"
    const first = await _readUntil(client, rest, (b) => readClientHello(b).kind !== "more", FIRST_BYTES_MS, true);
    if (first === null) return void (up.destroy(), client.destroy());
    const hello = first.length === 0 ? ({ kind: "other" } as const) : readClientHello(first);
    const why = await this.helloVerdict(hello, t, hp.port);
    if (why) {
      await this.deny({ dest: t.ip, port: hp.port, name: hello.kind === "tls" ? (hello.sni ?? t.name) : t.name, reason: why, via: "tls" });
      up.destroy();
      return void client.destroy();
    }
    up.write(first);
    _splice(client, up);
  }

  /** null when the stream may go on; else why not. */
  private async helloVerdict(hello: ReturnType<typeof readClientHello>, t: Extract<Target, { ok: true }>, port: number): Promise<string | null> {
    if (hello.kind === "other") return null; // not TLS (ssh to a git host…): the name or address was allowed already
    if (hello.kind === "more") return "incomplete TLS ClientHello";
    if (hello.kind !== "tls") return "unreadable TLS ClientHello";
    if (addressListed(this.policy, t.ip, port)) return null; // the address itself is listed: any name may be spoken there
    if (this.policy.mode === "all" && !t.name) return null;
    if (!hello.sni) return "TLS without a server name";
    if (t.name && hello.sni === t.name) return null;
    if (!nameAllowed(this.policy, hello.sni, port)) return `SNI ${hello.sni} is not allowed`;
    const addrs = await this.lookup(hello.sni).catch(() => [] as string[]);
    return addrs.includes(t.ip) ? null : `SNI ${hello.sni} does not resolve to ${t.ip}`;
  }

  private async forward(client: Socket, method: string, target: string, headerLines: string[], rest: Buffer): Promise<void> {
    const hostHeader = headerLines.find((h) => /^host:/i.test(h))?.slice(5).trim();
    let host: string;
    let port: number;
    let path: string;
    const abs = /^http:\/\/([^/?#]+)([^#]*)$/i.exec(target);
    if (abs) {
      const hp = _hostPort(abs[1]!, 80);
      if (!hp) return _refuse(client, 400, "bad URL");
      ({ host, port } = hp);
      path = abs[2] || "/";
      const hh = hostHeader === undefined ? null : _hostPort(hostHeader, 80);
      if (hh && (hh.host.toLowerCase() !== host.toLowerCase() || hh.port !== port)) {
        await this.deny({ dest: host, port, name: hostHeader, reason: "Host header names another host than the URL", via: "http" });
        return _refuse(client, 403, "Host header names another host than the URL");
      }
    } else if (target.startsWith("/") && hostHeader) {
      const hp = _hostPort(hostHeader, 80);
      if (!hp) return _refuse(client, 400, "bad Host header");
      ({ host, port } = hp);
      path = target;
    } else {
      return _refuse(client, 400, /^https:/i.test(target) ? "use CONNECT for https" : "no absolute URL or Host header");
    }
    const t = await this.target(host, port);
    if (!t.ok) {
      await this.deny({ dest: host, port, name: ipv4ToInt(host) === null ? host : undefined, reason: t.reason, via: "http" });
      return _refuse(client, 403, t.reason);
    }
    let up: Socket;
    try {
      up = await this.dial(t.ip, port);
    } catch (e) {
      return _refuse(client, 502, `cannot connect to ${t.ip}:${port}: ${(e as Error).message}`);
    }
    this.open.add(up);
    up.on("close", () => this.open.delete(up));
    // one request per connection: a second one on it could name another host
    const kept = headerLines.filter((h) => h !== "" && !/^(proxy-connection|proxy-authorization|connection|keep-alive):/i.test(h));
    up.write(`${method} ${path} HTTP/1.1\r\n${kept.join("\r\n")}\r\nConnection: close\r\n\r\n`);
    if (rest.length) up.write(rest);
    _splice(client, up);
  }

  // ------------------------------------------------------------------ dns

  private async dns(s: Socket): Promise<void> {
    let buf = Buffer.alloc(0);
    let busy = Promise.resolve();
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        // answers go out in question order
        busy = busy.then(async () => {
          const a = await this.answer(new Uint8Array(msg)).catch(() => formErr(msg));
          const len = Buffer.alloc(2);
          len.writeUInt16BE(a.length);
          if (!s.destroyed) s.write(Buffer.concat([len, Buffer.from(a)]));
        });
      }
    });
  }

  /** The answer to one DNS query: A records for an allowed name (only addresses the policy lets it reach), NXDOMAIN for the rest. */
  async answer(msg: Uint8Array): Promise<Uint8Array> {
    const q = parseQuery(msg);
    if (!q) return formErr(msg);
    if (q.cls !== 1) return buildAnswer(msg, q, RCODE_REFUSED);
    const p = this.policy;
    if (!nameAllowed(p, q.name)) {
      await this.deny({ dest: q.name, port: 53, name: q.name, reason: p.mode === "none" ? "egress is none" : "name not allowed", via: "dns" });
      return buildAnswer(msg, q, RCODE_NXDOMAIN);
    }
    if (q.type !== TYPE_A) return buildAnswer(msg, q, 0); // no IPv6 (AAAA), nothing else: an empty answer
    const addrs = (await this.lookup(q.name)).filter((a) => addressVerdict(p, a, 0, true) === null || _listedOnSomePort(p, a));
    const ttl = Math.max(MIN_TTL_S, Math.min(MAX_TTL_S, 60));
    if (addrs.length) await this.o.onAnswer?.(q.name, addrs, ttl);
    this._hand(q.name, addrs);
    return buildAnswer(msg, q, 0, addrs, ttl);
  }

  private _hand(name: string, addrs: string[]): void {
    const until = this.o.clock.now().getTime() + HANDED_MS;
    const m = this.handed.get(name) ?? new Map<string, number>();
    for (const a of addrs) m.set(a, until);
    this.handed.set(name, m);
  }

  /** Did `name` resolve to `ip` (an answer the guest got lately, or a lookup now)? */
  private async resolvedTo(name: string, ip: string): Promise<boolean> {
    const until = this.handed.get(name)?.get(ip);
    if (until !== undefined && until > this.o.clock.now().getTime()) return true;
    return (await this.lookup(name).catch(() => [] as string[])).includes(ip);
  }

  /** A name the guest was lately answered with that resolved to `ip`, if any. */
  nameFor(ip: string): string | undefined {
    const now = this.o.clock.now().getTime();
    for (const [name, m] of this.handed) if ((m.get(ip) ?? 0) > now) return name;
    return undefined;
  }

  /** Some name the guest was answered with resolved to `ip` and is allowed on `port`. */
  private handedFor(ip: string, port: number): boolean {
    const now = this.o.clock.now().getTime();
    for (const [name, m] of this.handed) if ((m.get(ip) ?? 0) > now && nameAllowed(this.policy, name, port)) return true;
    return false;
  }

  // ------------------------------------------------------------ transparent

  /**
   * A guest's own TCP connection to `dst`, redirected here (net-tap): it goes
   * on to `dst` only when a listed CIDR covers it, or its TLS SNI / HTTP Host
   * names an allowed name that resolved to `dst`. A stream that is neither
   * TLS nor HTTP needs `dst` to be an address an allowed name was answered
   * with. Everything else is closed and logged.
   */
  async transparent(client: Socket, dst: OriginalDst): Promise<void> {
    const first = await _readUntil(client, Buffer.alloc(0), _firstBytesDone, FIRST_BYTES_MS, true);
    if (first === null) return void client.destroy();
    const v = await this.transparentVerdict(first, dst);
    if (v.why) {
      await this.deny({ dest: dst.ip, port: dst.port, name: v.name, reason: v.why, via: v.via });
      return void client.destroy();
    }
    let up: Socket;
    try {
      up = await this.dial(dst.ip, dst.port);
    } catch {
      return void client.destroy();
    }
    this.open.add(up);
    up.on("close", () => this.open.delete(up));
    // one request per connection, as the proxy does: a second one on it could name another host
    if (first.length) up.write(v.via === "http" && v.name ? _oneRequest(first) : first);
    _splice(client, up);
  }

  private async transparentVerdict(first: Buffer, dst: OriginalDst): Promise<{ why: string | null; name?: string; via: EgressDenial["via"] }> {
    const p = this.policy;
    if (p.mode === "none") return { why: "egress is none", via: "connect" };
    if (addressListed(p, dst.ip, dst.port)) return { why: null, via: "connect" }; // the address itself is listed: any name may be spoken there
    // the host, private ranges, metadata: whatever name is spoken
    const special = addressVerdict(p, dst.ip, dst.port, true);
    if (special) return { why: special, via: "connect" };
    const hello = readClientHello(first);
    let name: string;
    let via: "tls" | "http";
    if (hello.kind === "tls") {
      if (!hello.sni) return { why: "TLS without a server name", via: "tls" };
      [name, via] = [hello.sni.toLowerCase(), "tls"];
    } else if (hello.kind === "more" || hello.kind === "bad") {
      return { why: hello.kind === "more" ? "incomplete TLS ClientHello" : "unreadable TLS ClientHello", via: "tls" };
    } else if (_HTTP_LINE.test(first.toString("latin1", 0, Math.min(first.length, 2048)))) {
      const host = _hostHeader(first);
      if (host === null) return { why: "HTTP without a Host header", via: "http" };
      [name, via] = [host, "http"];
    } else {
      if (p.mode === "all" || this.handedFor(dst.ip, dst.port)) return { why: null, via: "connect" };
      return { why: "neither TLS nor HTTP, to an address no allowed name resolved to", via: "connect" };
    }
    const label = via === "tls" ? "SNI" : "Host";
    if (ipv4ToInt(name) !== null) return { why: name === dst.ip ? "address not listed" : `${label} ${name} is not the address connected to`, name, via };
    if (p.mode === "all") return { why: null, name, via };
    if (!nameAllowed(p, name, dst.port)) return { why: `${label} ${name} is not allowed`, name, via };
    if (!(await this.resolvedTo(name, dst.ip))) return { why: `${label} ${name} does not resolve to ${dst.ip}`, name, via };
    return { why: null, name, via };
  }

  toString(): string {
    return `gate ${this.o.vm} ${formatEgress(this.policy)}`;
  }
}

const _HTTP_LINE = /^[A-Z]{3,10} \S+ HTTP\/1\.[01]\r\n/;

/** Enough of a stream's start to judge it: a whole TLS ClientHello, a whole HTTP request head, or plainly neither. */
function _firstBytesDone(b: Buffer): boolean {
  if (b.length === 0) return false;
  if (b[0] === 0x16) return readClientHello(b).kind !== "more";
  if (/^[A-Z]{1,10}( |$)/.test(b.toString("latin1", 0, Math.min(b.length, 11)))) return b.includes("\r\n\r\n") || b.length > MAX_HEAD;
  return true;
}

/** The request head with `Connection: close` in place of the client's connection headers, then whatever came after it. */
function _oneRequest(first: Buffer): Buffer {
  const end = first.indexOf("\r\n\r\n");
  if (end < 0) return first;
  const lines = first.toString("latin1", 0, end).split("\r\n");
  const kept = lines.filter((h, i) => i === 0 || !/^(connection|keep-alive|proxy-connection):/i.test(h));
  return Buffer.concat([Buffer.from(`${kept.join("\r\n")}\r\nConnection: close\r\n\r\n`, "latin1"), first.subarray(end + 4)]);
}

/** The Host header's host (no port, lower case), or null when there is none or more than one. */
function _hostHeader(head: Buffer): string | null {
  const end = head.indexOf("\r\n\r\n");
  const lines = head.toString("latin1", 0, end < 0 ? head.length : end).split("\r\n").slice(1);
  const hosts = lines.filter((l) => /^host:/i.test(l)).map((l) => l.slice(5).trim());
  if (hosts.length !== 1) return null;
  const hp = _hostPort(hosts[0]!, 80);
  return hp && /^[a-z0-9.-]{1,253}$/i.test(hp.host) ? hp.host.toLowerCase().replace(/\.$/, "") : null;
}

/**
 * Serve redirected connections on addr:port (net-tap's gate on the bridge):
 * `route` says, from the peer's address and port and the socket's
 * SO_ORIGINAL_DST (null when unavailable), which gate judges it and where it
 * was going; a connection it cannot place is closed.
 */
export async function serveTransparent(addr: string, port: number, route: (from: string, fromPort: number, sockDst: OriginalDst | null) => Promise<{ gate: EgressGate; dst: OriginalDst } | null>): Promise<{ port: number; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on("close", () => open.delete(s));
    s.on("error", () => {});
    s.setNoDelay(true);
    s.pause();
    const from = (s.remoteAddress ?? "").replace(/^::ffff:/, "");
    route(from, s.remotePort ?? 0, socketOriginalDst(s))
      .then((r) => (r ? r.gate.transparent(s, r.dst) : void s.destroy()))
      .catch(() => s.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(port, addr, () => {
      srv.off("error", reject);
      resolve();
    });
  });
  return {
    port: (srv.address() as { port: number }).port,
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

function _listedOnSomePort(p: EgressPolicy, ip: string): boolean {
  return p.mode === "list" && p.rules.some((r) => r.kind === "cidr" && addressListed({ mode: "list", rules: [{ ...r, port: undefined }] }, ip, 0));
}

/** host and port of "host:port" / "[v6]:port" / "host" (then `dflt`). */
function _hostPort(s: string, dflt: number): { host: string; port: number } | null {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : dflt };
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return s.includes(":") ? { host: s, port: dflt } : null;
  const port = m[2] ? Number(m[2]) : dflt;
  if (m[2] && (port < 1 || port > 65535)) return null;
  return { host: m[1]!, port };
}

/** The request head (up to the blank line) and what came after it, or null on EOF, timeout or an oversize head. */
async function _readHead(s: Socket): Promise<{ text: string; rest: Buffer } | null> {
  const buf = await _readUntil(s, Buffer.alloc(0), (b) => b.includes("\r\n\r\n") || b.length > MAX_HEAD, HEAD_TIMEOUT_MS, false);
  if (!buf) return null;
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  return { text: buf.subarray(0, end).toString("latin1"), rest: buf.subarray(end + 4) };
}

/** Read from `s` (after `start`) until `done(bytes)`; null on EOF, and on timeout unless `partialOnTimeout` (then what came). Pauses the socket again after. */
function _readUntil(s: Socket, start: Buffer, done: (b: Buffer) => boolean, timeoutMs: number, partialOnTimeout: boolean): Promise<Buffer | null> {
  if (start.length && done(start)) return Promise.resolve(start);
  return new Promise((resolve) => {
    let buf = start;
    const finish = (v: Buffer | null) => {
      clearTimeout(timer);
      s.off("data", onData);
      s.off("end", onEnd);
      s.off("close", onEnd);
      s.pause();
      resolve(v);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (done(buf)) finish(buf);
    };
    const onEnd = () => finish(null);
    const timer = setTimeout(() => finish(partialOnTimeout ? buf : null), timeoutMs);
    s.on("data", onData);
    s.once("end", onEnd);
    s.once("close", onEnd);
    s.resume();
  });
}

function _splice(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.resume();
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.once("close", end);
  b.once("close", end);
  a.on("error", end);
  b.on("error", end);
}

function _refuse(s: Socket, status: number, why: string): void {
  const text = { 400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway" }[status] ?? "Error";
  const body = `banger egress: ${why}\n`;
  s.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
