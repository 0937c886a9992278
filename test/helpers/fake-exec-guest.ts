// The exec agent's guest side as the host sees it, scripted: test/unit/exec-agent.test.ts, test/unit/guest-agent.test.ts.
import { expect } from "bun:test";
import type { FakeFS } from "./fakes.ts";

export interface Started {
  id: string;
  command: string;
  stdin: Uint8Array;
}

export type Reply = (type: string, id: string, payload?: Uint8Array | string) => void;

const enc = (t: string) => new TextEncoder().encode(t);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** An identity frame's fields as exec-agent.pl reads them (hex values decoded, the clock's as given). */
export type IdentityFields = Record<string, string | Uint8Array>;

/**
 * A guest exec agent on the fake FIFOs at `pipe`: it checks every frame of ours (header, length, trailer),
 * answers pings (a ping asking `v` with `version`: 2 unless said), and calls `onStart` once a command's stdin
 * has ended; `reply` writes frames. Version 2 also answers c with `clock()` and I with `identity(fields)`'s
 * reason to refuse, or x 0 when that says nothing. Writes to other FIFOs go to whoever handled them before.
 */
export function fakeExecGuest(fs: FakeFS, pipe: string, onStart: (s: Started, reply: Reply) => void, o: { answerPings?: boolean; version?: 1 | 2; clock?: () => string; identity?: (f: IdentityFields) => string | void } = {}) {
  fs.fifos.set(`${pipe}.in`, []);
  fs.fifos.set(`${pipe}.out`, []);
  const version = o.version ?? 2;
  const seen = { writes: [] as Uint8Array[], frames: [] as string[], kills: [] as string[], identities: [] as IdentityFields[] };
  const pending = new Map<string, { command: Uint8Array[]; stdin: Uint8Array[] }>();
  let buf = Buffer.alloc(0);
  const reply: Reply = (type, id, payload = new Uint8Array(0)) => {
    const p = typeof payload === "string" ? enc(payload) : payload;
    fs.fifos.get(`${pipe}.out`)!.push(new Uint8Array(Buffer.concat([Buffer.from(`${type} ${id} ${p.length}\n`), p])));
  };
  const before = fs.onFifoWrite;
  fs.onFifoWrite = (path, data) => {
    if (path !== `${pipe}.in`) {
      if (!before) throw new Error(`a write to ${path}`);
      return before(path, data);
    }
    seen.writes.push(data);
    buf = Buffer.concat([buf, data]);
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.subarray(0, nl).toString();
      if (line === "sync" || line === "") {
        buf = buf.subarray(nl + 1);
        continue;
      }
      const m = /^([saikpcI]) ([0-9a-z]{1,32}) (\d+)$/.exec(line);
      if (!m) throw new Error(`bad header ${JSON.stringify(line)}`);
      const [, type, id, len] = m as unknown as [string, string, string, string];
      // the real agent drops a longer one as garbled, and hears nothing more until `sync`
      if (Number(len) > 4000) throw new Error(`a payload of ${len} bytes: the guest takes at most 4000`);
      const trailer = `.${id}\n`;
      if (buf.length < nl + 1 + Number(len) + trailer.length) return;
      const payload = new Uint8Array(buf.subarray(nl + 1, nl + 1 + Number(len)));
      expect(buf.subarray(nl + 1 + Number(len), nl + 1 + Number(len) + trailer.length).toString()).toBe(trailer);
      buf = buf.subarray(nl + 1 + Number(len) + trailer.length);
      seen.frames.push(`${type} ${id} ${len}`);
      if (type === "p") {
        if (o.answerPings !== false) reply("p", id, dec(payload) === "v" && version >= 2 ? String(version) : "");
        continue;
      }
      if (type === "c" && version >= 2) {
        reply("c", id, o.clock?.() ?? "1000.000000000");
        continue;
      }
      if (type === "I" && version >= 2) {
        const p = pending.get(id);
        pending.delete(id);
        const text = dec(Buffer.concat([...(p?.command ?? []), payload]));
        const fields: IdentityFields = {};
        for (const l of text.split("\n")) {
          const [k, v] = l.split(" ") as [string, string];
          fields[k] = k === "clock_offset_ns" ? v : new Uint8Array(Buffer.from(v, "hex"));
        }
        seen.identities.push(fields);
        const why = o.identity?.(fields);
        reply(why ? "r" : "x", id, why || "0");
        continue;
      }
      if (type === "k") {
        seen.kills.push(`${id} ${dec(payload)}`);
        continue;
      }
      const p = pending.get(id) ?? { command: [], stdin: [] };
      pending.set(id, p);
      if (type === "a" || type === "s") p.command.push(payload);
      if (type === "i") {
        if (payload.length > 0) p.stdin.push(payload);
        else onStart({ id, command: dec(Buffer.concat(p.command)), stdin: new Uint8Array(Buffer.concat(p.stdin)) }, reply);
      }
    }
  };
  return seen;
}
