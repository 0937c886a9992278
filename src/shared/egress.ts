// A VM's egress policy: the vocabulary (parse, print, decide). Enforcement
// is the network provider's (src/host/egress-gate.ts, used by net-user); this module
// only says what a policy allows, so the CLI, the daemon and every enforcer
// agree on one reading.
import { BangerError } from "./errors.ts";

/** One allowlist entry: a domain (exact or `*.` wildcard) or an IPv4 network, each with an optional port. */
export type EgressRule =
  | { kind: "domain"; name: string; wildcard: boolean; port?: number }
  | { kind: "cidr"; addr: string; prefix: number; port?: number };

/** `none`: no egress at all; `all`: any public address (private, loopback and link-local still need listing); `list`: only the rules. */
export type EgressPolicy = { mode: "none" } | { mode: "all" } | { mode: "list"; rules: EgressRule[] };

/** What every VM gets when neither `--egress` nor config.json's `egress` says otherwise. */
export const DEFAULT_EGRESS = "none";

/** A denied attempt, as `vm egress VM --log` shows it (one JSON line each in the VM's egress log). */
export interface EgressDenial {
  time: string;
  /** The address or name the guest asked for. */
  dest: string;
  port: number;
  /** The name involved (CONNECT target, Host header, SNI, DNS question), when there was one. */
  name?: string;
  reason: string;
  /** Which path saw it: the proxy (connect/http/tls), the resolver (dns) or the firewall. */
  via: "connect" | "http" | "tls" | "dns" | "firewall";
}

/** What `banger vm egress VM` answers. */
export interface EgressView {
  vm: string;
  /** The VM's own policy, as stored (`none`, `all` or the list). */
  policy: string;
  /** What is enforced: the policy plus what `vm:egress` plugins added. */
  effective: string;
  /** Denied attempts logged so far. */
  denied: number;
  /** With `--log`: every denied attempt, oldest first. */
  log?: EgressDenial[];
  /** Set when the policy was changed on a running VM: ms from the request to the enforcer having it. */
  appliedMs?: number;
}

const MAX_ENTRIES = 1024;
const LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Parse `none`, `all` or a comma-separated list (`pkgs.example.org`, `*.example.com:443`, `198.51.100.0/24`, `203.0.113.9:22`). */
export function parseEgress(text: string): EgressPolicy {
  const t = text.trim().toLowerCase();
  if (t === "none") return { mode: "none" };
  if (t === "all") return { mode: "all" };
  if (t === "") throw _bad(text, "it is empty (use none, all or a list)");
  const parts = t.split(",").map((s) => s.trim());
  if (parts.length > MAX_ENTRIES) throw _bad(text, `more than ${MAX_ENTRIES} entries`);
  const rules: EgressRule[] = [];
  for (const p of parts) {
    if (p === "") throw _bad(text, "an empty entry (two commas?)");
    if (p === "none" || p === "all") throw _bad(text, `"${p}" cannot be part of a list`);
    const r = parseEgressEntry(p);
    if (!rules.some((x) => formatRule(x) === formatRule(r))) rules.push(r);
  }
  return { mode: "list", rules };
}

/** One list entry; throws E_BAD_REQUEST naming what is wrong with it. */
export function parseEgressEntry(entry: string): EgressRule {
  const e = entry.trim().toLowerCase();
  let host = e;
  let port: number | undefined;
  // a URL is not an entry: its scheme would read as a host and its // as a port
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(e)) throw _bad(entry, "a URL is not an entry: write the host name (NAME or NAME:PORT)");
  if (e.startsWith("[") || (e.match(/:/g)?.length ?? 0) > 1) {
    throw _bad(entry, "IPv6 is not supported (guests get no IPv6 egress); a port is written NAME:PORT");
  }
  const m = /^(.*):([0-9]{1,5})$/.exec(e);
  if (m) {
    host = m[1]!;
    port = Number(m[2]);
    if (port < 1 || port > 65535) throw _bad(entry, "port must be 1-65535");
  } else if (e.includes(":")) {
    throw _bad(entry, "the port after : must be a number 1-65535 (NAME:PORT)");
  }
  const cidr = /^([0-9.]+)(?:\/([0-9]{1,2}))?$/.exec(host);
  if (cidr && /^[0-9]+(\.[0-9]+){3}$/.test(cidr[1]!)) {
    const n = ipv4ToInt(cidr[1]!);
    if (n === null) throw _bad(entry, "not an IPv4 address");
    const prefix = cidr[2] === undefined ? 32 : Number(cidr[2]);
    if (prefix > 32) throw _bad(entry, "prefix must be 0-32");
    const base = prefix === 0 ? 0 : (n & (~0 << (32 - prefix))) >>> 0;
    return { kind: "cidr", addr: intToIpv4(base), prefix, port };
  }
  const wildcard = host.startsWith("*.");
  const name = (wildcard ? host.slice(2) : host).replace(/\.$/, "");
  const labels = name.split(".");
  if (name.length > 253 || labels.length < 1 || !labels.every((l) => LABEL_RE.test(l)) || /^[0-9]+$/.test(labels.at(-1)!)) {
    throw _bad(entry, "not a domain, *.domain, IPv4 address or CIDR");
  }
  if (wildcard && labels.length < 2) throw _bad(entry, "a wildcard needs at least two labels after *. (e.g. *.example.com)");
  return { kind: "domain", name, wildcard, port };
}

function _bad(what: string, why: string): BangerError {
  return new BangerError("E_BAD_REQUEST", `invalid egress ${JSON.stringify(what.slice(0, 200))}: ${why}`);
}

export function formatRule(r: EgressRule): string {
  const host = r.kind === "domain" ? `${r.wildcard ? "*." : ""}${r.name}` : r.prefix === 32 ? r.addr : `${r.addr}/${r.prefix}`;
  return r.port === undefined ? host : `${host}:${r.port}`;
}

/** The canonical text of a policy (what the VM record stores and `vm show` prints). */
export function formatEgress(p: EgressPolicy): string {
  return p.mode === "list" ? (p.rules.length ? p.rules.map(formatRule).join(",") : "none") : p.mode;
}

/** A policy with `entries` added (a plugin's policy source): `none` plus entries becomes a list; `all` stays all. */
export function withEntries(p: EgressPolicy, entries: EgressRule[]): EgressPolicy {
  if (p.mode === "all" || entries.length === 0) return p;
  const rules = p.mode === "list" ? [...p.rules] : [];
  for (const r of entries) if (!rules.some((x) => formatRule(x) === formatRule(r))) rules.push(r);
  return { mode: "list", rules };
}

export function ipv4ToInt(ip: string): number | null {
  const parts = ip.split(".");
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > 255 || (p.length > 1 && p.startsWith("0"))) return null;
    n = n * 256 + Number(p);
  }
  return n >>> 0;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function _inCidr(ip: number, addr: string, prefix: number): boolean {
  if (prefix === 0) return true;
  const mask = (~0 << (32 - prefix)) >>> 0;
  return ((ip & mask) >>> 0) === ((ipv4ToInt(addr)! & mask) >>> 0);
}

/**
 * Addresses no policy reaches unless a CIDR entry lists them: the host
 * itself, private networks, link-local (cloud metadata at 169.254.169.254),
 * CGNAT, multicast and reserved. `all` means the public internet.
 */
export const SPECIAL_RANGES: readonly [string, number][] = [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16],
  ["172.16.0.0", 12], ["192.0.0.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["224.0.0.0", 4], ["240.0.0.0", 4],
];

/** The host's own and private ranges a policy's CIDR entries open (0.0.0.0/0 opens them all, which `all` does not): said to the user. */
export function openedHostRanges(p: EgressPolicy): string[] {
  if (p.mode !== "list") return [];
  const named: [string, number, string][] = [["127.0.0.0", 8, "the host's loopback"], ["169.254.0.0", 16, "link-local, cloud metadata"], ["10.0.0.0", 8, "private"], ["172.16.0.0", 12, "private"], ["192.168.0.0", 16, "private"]];
  const out: string[] = [];
  for (const [addr, prefix, what] of named) {
    const n = ipv4ToInt(addr)!;
    if (p.rules.some((r) => r.kind === "cidr" && r.prefix <= prefix && _inCidr(n, r.addr, r.prefix))) out.push(`${addr}/${prefix} (${what})`);
  }
  return out;
}

export function isSpecialAddress(ip: string): boolean {
  const n = ipv4ToInt(ip);
  return n === null || SPECIAL_RANGES.some(([a, p]) => _inCidr(n, a, p));
}

/**
 * Does the name match a domain rule on this port (any port when none is given: what a resolver asks)?
 * Exact names match themselves; `*.d` matches every name under d (not d itself).
 */
export function nameAllowed(p: EgressPolicy, name: string, port?: number): boolean {
  if (p.mode === "all") return true;
  if (p.mode === "none") return false;
  const n = name.toLowerCase().replace(/\.$/, "");
  return p.rules.some((r) => r.kind === "domain" && (port === undefined || r.port === undefined || r.port === port) && (r.wildcard ? n.endsWith(`.${r.name}`) : n === r.name));
}

/** Is an address listed explicitly (a CIDR entry covering it on this port)? */
export function addressListed(p: EgressPolicy, ip: string, port: number): boolean {
  if (p.mode !== "list") return false;
  const n = ipv4ToInt(ip);
  if (n === null) return false;
  return p.rules.some((r) => r.kind === "cidr" && (r.port === undefined || r.port === port) && _inCidr(n, r.addr, r.prefix));
}

/**
 * May a connection go to `ip:port`? `viaName`: it is the answer for a name the
 * policy allows (then any public address will do). A special address needs a
 * CIDR entry either way, so an allowed name resolving to 127.0.0.1 or
 * 169.254.169.254 (DNS rebinding) is still refused. Returns null when allowed,
 * else why not.
 */
export function addressVerdict(p: EgressPolicy, ip: string, port: number, viaName: boolean): string | null {
  if (ipv4ToInt(ip) === null) return ip.includes(":") ? "IPv6 is not allowed" : "not an IPv4 address";
  if (p.mode === "none") return "egress is none";
  if (addressListed(p, ip, port)) return null;
  if (isSpecialAddress(ip)) return "private, loopback or link-local address not listed";
  if (p.mode === "all" || viaName) return null;
  return "address not listed";
}

/** The VM's log of denied attempts, one EgressDenial JSON line each, in its VMDir. */
export const EGRESS_LOG_FILE = "egress-denied.jsonl";
