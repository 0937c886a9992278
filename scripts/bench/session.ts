/**
 * `session`: send→reply round trip to a JSON-lines echo agent in a running
 * VM, through the daemon's HTTP API (send + one follow stream kept open),
 * against one OpenSSH command per message, fresh and through a ControlMaster.
 */
import { join } from "node:path";
import type { Bench } from "./run.ts";
import { formatTable, ratio, summarize, summaryRow } from "./stats.ts";
import { sshFor } from "./exec.ts";
import { VM_NAME, type BenchVMs } from "./vm.ts";

const SESSION = "bench-echo";
const ECHO_AGENT = 'while IFS= read -r l; do printf "%s\\n" "$l"; done';
const REPLY_TIMEOUT_MS = 60_000;

/** The daemon's API over its unix socket. */
function api(sock: string) {
  return async (method: string, path: string, body?: string | Uint8Array, signal?: AbortSignal): Promise<Response> => {
    const t0 = performance.now();
    let res: Response;
    try {
      res = await fetch(`http://banger${path}`, {
        unix: sock,
        method,
        body,
        signal,
        // the follow stream stays open for the whole section: no client-side timeout
        timeout: false,
        headers: typeof body === "string" ? { "content-type": "application/json" } : undefined,
      } as RequestInit);
    } catch (e) {
      throw new Error(`${method} ${path} after ${((performance.now() - t0) / 1000).toFixed(1)} s: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`);
    return res;
  };
}

/**
 * Reads the session's stdout follow stream (NDJSON of base64 chunks) and
 * resolves the waiter for each reply line by its sequence number.
 */
class ReplyReader {
  private readonly _waiters = new Map<number, { resolve: (t: number) => void; reject: (e: Error) => void }>();
  private readonly _early = new Map<number, number>();
  private _text = "";
  private _failed: Error | null = null;
  readonly order: number[] = [];

  /** Takes the response promise: the daemon sends headers with the first chunk, which comes only after a send. */
  constructor(res: Promise<Response>) {
    void res.then((r) => this._pump(r)).catch((e) => this._fail(e instanceof Error ? e : new Error(String(e))));
  }

  /** Time (performance.now) at which reply `seq` was seen. */
  wait(seq: number): Promise<number> {
    const early = this._early.get(seq);
    if (early !== undefined) return Promise.resolve(early);
    if (this._failed) return Promise.reject(this._failed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiters.delete(seq);
        reject(new Error(`no reply for seq ${seq} within ${REPLY_TIMEOUT_MS / 1000} s`));
      }, REPLY_TIMEOUT_MS);
      this._waiters.set(seq, {
        resolve: (t) => (clearTimeout(timer), resolve(t)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  private _fail(e: Error): void {
    if (e.name === "AbortError") return;
    this._failed = e;
    for (const w of this._waiters.values()) w.reject(e);
    this._waiters.clear();
  }

  private _line(line: string, at: number): void {
    let seq: number;
    try {
      seq = Number((JSON.parse(line) as { seq?: number }).seq);
    } catch {
      return;
    }
    if (!Number.isInteger(seq)) return;
    this.order.push(seq);
    const w = this._waiters.get(seq);
    if (w) {
      this._waiters.delete(seq);
      w.resolve(at);
    } else this._early.set(seq, at);
  }

  private async _pump(res: Response): Promise<void> {
    const dec = new TextDecoder();
    const out = new TextDecoder();
    let nd = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      const at = performance.now();
      nd += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = nd.indexOf("\n")) >= 0) {
        const ev = JSON.parse(nd.slice(0, nl)) as { type: string; data?: string; error?: { message: string } };
        nd = nd.slice(nl + 1);
        if (ev.type === "stdout" && ev.data) {
          this._text += out.decode(Buffer.from(ev.data, "base64"), { stream: true });
          let l: number;
          while ((l = this._text.indexOf("\n")) >= 0) {
            this._line(this._text.slice(0, l), at);
            this._text = this._text.slice(l + 1);
          }
        } else if (ev.type === "error") throw new Error(`follow stream: ${ev.error?.message}`);
        else if (ev.type === "result") throw new Error("follow stream ended: the session exited");
      }
    }
    throw new Error("follow stream closed");
  }
}

export interface SessionCounts {
  session: number;
  fresh: number;
  cm: number;
}

export async function sessionSection(b: Bench, vms: BenchVMs, counts: SessionCounts = { session: 200, fresh: 30, cm: 50 }): Promise<void> {
  const ssh = await sshFor(b, vms);
  const call = api(join(b.home, "bangerd.sock"));
  const base = `/v1/vms/${VM_NAME}/sessions`;
  await call("POST", base, JSON.stringify({ name: SESSION, command: "bash", args: ["-c", ECHO_AGENT] }));
  b.defer(`kill session ${SESSION}`, () => call("POST", `${base}/${SESSION}/kill`, "{}").catch(() => {}));
  const follow = new AbortController();
  const reader = new ReplyReader(call("GET", `${base}/${SESSION}/logs?offset=0&follow=1`, undefined, follow.signal));
  b.defer("close follow stream", () => follow.abort());

  let seq = 0;
  const roundTrip = async (): Promise<number> => {
    const n = seq++;
    const t0 = performance.now();
    const reply = reader.wait(n);
    await call("POST", `${base}/${SESSION}/send`, new TextEncoder().encode(`{"seq":${n},"type":"ping"}\n`));
    return (await reply) - t0;
  };
  // warm-up: the first sends open the daemon's channels and the follow tail
  for (let i = 0; i < 3; i++) await roundTrip();

  const msg = (i: number) => `echo '{"seq":${i},"type":"ping"}'`;
  let k = 0;
  const r = await b.interleaved(
    {
      session: roundTrip,
      fresh: () => b.time(ssh.cmd(msg(k++))),
      cm: () => b.time(ssh.cm(msg(k++))),
    },
    counts,
    "session round trips",
  );
  // every reply arrived, in the order sent
  const inOrder = reader.order.every((v, i) => v === i);
  const s = { session: summarize(r.session), fresh: summarize(r.fresh), cm: summarize(r.cm) };
  const rows = [
    ["banger session send → reply (follow stream)", s.session],
    ["ssh 'echo msg' (fresh connection)", s.fresh],
    ["ssh 'echo msg' (ControlMaster)", s.cm],
  ] as const;
  console.log(formatTable(["variant", "n", "min", "p50", "max", "p99", "p50 vs fresh", "p50 vs CM"], rows.map(([name, x]) => [
    ...summaryRow(name, x, { p99: true }), ratio(x.p50, s.fresh.p50), ratio(x.p50, s.cm.p50),
  ])));
  console.log(`  ${reader.order.length} replies seen for ${seq} sends (incl. 3 warm-up), ${inOrder ? "all in order" : "OUT OF ORDER"}; p99 of n=${counts.fresh} is close to its max.`);
  console.log(`  p99 ratios: session/fresh ${ratio(s.session.p99, s.fresh.p99)}, session/CM ${ratio(s.session.p99, s.cm.p99)}`);
  b.note("session", "send→reply p50 / fresh ssh echo p50", ratio(s.session.p50, s.fresh.p50));
  b.note("session", "send→reply p50 / ControlMaster ssh echo p50", ratio(s.session.p50, s.cm.p50));
  b.note("session", "send→reply p99 / ControlMaster ssh echo p99", ratio(s.session.p99, s.cm.p99));
  b.row({ id: "P6", section: "session", measure: "session send→reply round trip vs ControlMaster", stats: s.session, baseline: { name: "ssh echo per message, ControlMaster", stats: s.cm }, goal: { on: "ratio", max: 1.5, text: "p50 ≤ 1.5× ControlMaster" }, note: inOrder ? undefined : "replies arrived OUT OF ORDER" });
  b.row({ id: "P6", section: "session", measure: "session send→reply round trip vs fresh ssh", stats: s.session, baseline: { name: "ssh echo per message, fresh connection", stats: s.fresh } });
}
