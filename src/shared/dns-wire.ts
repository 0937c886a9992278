// Just enough of the DNS wire format (RFC 1035) for a resolver that answers
// A questions for allowed names and nothing else: read one question, write
// an answer, NXDOMAIN, an empty answer or REFUSED. Names in answers are
// compression pointers to the question, which is echoed as it came.

export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const RCODE_NXDOMAIN = 3;
export const RCODE_REFUSED = 5;
export const RCODE_FORMERR = 1;

export interface DnsQuestion {
  id: number;
  /** Lower-cased, no trailing dot. */
  name: string;
  type: number;
  cls: number;
  /** Bytes of the header + question, for the answer to echo. */
  questionEnd: number;
  /** The recursion-desired bit, echoed. */
  rd: boolean;
}

/** The first question of a query, or null when the message is not one we can answer (then FORMERR if an id was readable). */
export function parseQuery(msg: Uint8Array): DnsQuestion | null {
  if (msg.length < 12) return null;
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const id = v.getUint16(0);
  const flags = v.getUint16(2);
  if (flags & 0x8000) return null; // a response, not a query
  if (v.getUint16(4) < 1) return null;
  const labels: string[] = [];
  let i = 12;
  for (;;) {
    if (i >= msg.length) return null;
    const len = msg[i]!;
    if (len === 0) {
      i++;
      break;
    }
    if (len > 63 || i + 1 + len > msg.length) return null; // no compression in a question we accept
    labels.push(new TextDecoder().decode(msg.subarray(i + 1, i + 1 + len)));
    i += 1 + len;
  }
  if (i + 4 > msg.length) return null;
  const name = labels.join(".").toLowerCase();
  return { id, name, type: v.getUint16(i), cls: v.getUint16(i + 2), questionEnd: i + 4, rd: (flags & 0x0100) !== 0 };
}

/** An answer to `q` (header + its question + A records, each with `ttl`), or an error rcode with no records. */
export function buildAnswer(query: Uint8Array, q: DnsQuestion, rcode: number, addrs: string[] = [], ttl = 60): Uint8Array {
  const head = query.subarray(0, q.questionEnd);
  const out = new Uint8Array(head.length + addrs.length * 16);
  out.set(head, 0);
  const v = new DataView(out.buffer);
  // QR, opcode 0, RA, RD echoed; one question; answers; no authority/additional
  v.setUint16(2, 0x8000 | 0x0080 | (q.rd ? 0x0100 : 0) | (rcode & 0xf));
  v.setUint16(4, 1);
  v.setUint16(6, addrs.length);
  v.setUint16(8, 0);
  v.setUint16(10, 0);
  let i = head.length;
  for (const a of addrs) {
    v.setUint16(i, 0xc00c); // pointer to the question's name
    v.setUint16(i + 2, TYPE_A);
    v.setUint16(i + 4, 1);
    v.setUint32(i + 6, ttl);
    v.setUint16(i + 10, 4);
    a.split(".").forEach((o, k) => (out[i + 12 + k] = Number(o)));
    i += 16;
  }
  return out;
}

/** A FORMERR answer for a message whose question could not be read (id echoed when there is one). */
export function formErr(query: Uint8Array): Uint8Array {
  const out = new Uint8Array(12);
  if (query.length >= 2) out.set(query.subarray(0, 2), 0);
  new DataView(out.buffer).setUint16(2, 0x8000 | RCODE_FORMERR);
  return out;
}

/** A query for `name` (tests, and anything that needs to ask a resolver by hand). */
export function buildQuery(id: number, name: string, type = TYPE_A): Uint8Array {
  const parts = name.split(".").filter(Boolean);
  const len = 12 + parts.reduce((n, p) => n + 1 + p.length, 0) + 1 + 4;
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  v.setUint16(0, id);
  v.setUint16(2, 0x0100);
  v.setUint16(4, 1);
  let i = 12;
  for (const p of parts) {
    out[i] = p.length;
    out.set(new TextEncoder().encode(p), i + 1);
    i += 1 + p.length;
  }
  out[i++] = 0;
  v.setUint16(i, type);
  v.setUint16(i + 2, 1);
  return out;
}

/** The rcode and A addresses of an answer (tests). */
export function readAnswer(msg: Uint8Array): { id: number; rcode: number; addrs: string[] } {
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const rcode = v.getUint16(2) & 0xf;
  const an = v.getUint16(6);
  let i = 12;
  while (msg[i] !== 0) i += 1 + msg[i]!;
  i += 5;
  const addrs: string[] = [];
  for (let k = 0; k < an; k++) {
    const type = v.getUint16(i + 2);
    const rdlen = v.getUint16(i + 10);
    if (type === TYPE_A && rdlen === 4) addrs.push([...msg.subarray(i + 12, i + 16)].join("."));
    i += 12 + rdlen;
  }
  return { id: v.getUint16(0), rcode, addrs };
}
