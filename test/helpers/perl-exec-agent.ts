// The exec agent as the guest runs it, for the integration tests: the text build.ts installs, in a real perl,
// its stdin and stdout two pipes (the port's two directions). A small framing client here speaks the protocol
// the host's exec client (plugins/guest/exec-agent.ts) speaks.
import EXEC_AGENT_PL from "../../plugins/image/exec-agent.pl" with { type: "text" };

export interface Frame {
  t: string;
  id: string;
  data: Buffer;
}
export interface Result {
  out: Buffer;
  err: Buffer;
  code: number | null;
  reason: string | null;
  chunks: Frame[];
}

/** One running agent and the frames it sent, by ID. */
export class PerlExecAgent {
  readonly proc: Bun.Subprocess<"pipe", "pipe", "inherit">;
  private buf = Buffer.alloc(0);
  readonly frames: Frame[] = [];
  private wake: (() => void)[] = [];
  private ended = false;

  /**
   * `passwd`: a file bound over /etc/passwd in a private mount namespace, for this agent alone. `ns`: more of
   * unshare's flags (a private mount namespace comes with them); `prelude`: bash run in it before perl starts;
   * `dropCaps`: capabilities perl starts without (setpriv's names, e.g. sys_time).
   */
  constructor(env: Record<string, string>, passwd?: string, o: { ns?: string[]; prelude?: string; dropCaps?: string[] } = {}) {
    // fd 7 left open and INT/QUIT/HUP/TERM ignored: the agent must hand neither to a command
    const drop = o.dropCaps?.length ? `setpriv --bounding-set ${o.dropCaps.map((c) => `-${c}`).join(",")} --inh-caps ${o.dropCaps.map((c) => `-${c}`).join(",")} ` : "";
    const wrapper = `trap "" INT QUIT HUP TERM; exec 7</dev/null; if [ -n "$2" ]; then mount --bind "$2" /etc/passwd || exit 1; fi; ${o.prelude ?? ""}
exec ${drop}perl -Mstrict -Mwarnings=FATAL,all -e "$1"`;
    const ns = passwd || o.ns || o.prelude ? ["unshare", "-m", "--propagation", "private", ...(o.ns ?? [])] : [];
    this.proc = Bun.spawn([...ns, "bash", "--norc", "-c", wrapper, "bash", EXEC_AGENT_PL, passwd ?? ""], { stdin: "pipe", stdout: "pipe", stderr: "inherit", env });
    void this.pump();
  }

  private async pump(): Promise<void> {
    for await (const chunk of this.proc.stdout) {
      this.buf = Buffer.concat([this.buf, Buffer.from(chunk)]);
      for (;;) {
        const nl = this.buf.indexOf(10);
        if (nl < 0) break;
        const m = /^([A-Za-z]) ([0-9a-z]{1,32}) ([0-9]+)$/.exec(this.buf.subarray(0, nl).toString("latin1"));
        if (!m) throw new Error(`bad frame header from the agent: ${JSON.stringify(this.buf.subarray(0, nl).toString("latin1"))}`);
        const n = Number(m[3]);
        if (this.buf.length < nl + 1 + n) break;
        this.frames.push({ t: m[1]!, id: m[2]!, data: Buffer.from(this.buf.subarray(nl + 1, nl + 1 + n)) });
        this.buf = this.buf.subarray(nl + 1 + n);
      }
      for (const w of this.wake.splice(0)) w();
    }
    this.ended = true;
    for (const w of this.wake.splice(0)) w();
  }

  raw(bytes: string | Uint8Array): void {
    this.proc.stdin.write(bytes);
    void this.proc.stdin.flush();
  }

  /** A host -> guest frame with its trailer. */
  send(t: string, id: string, payload: string | Uint8Array = ""): void {
    const p = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload);
    if (p.length > 4000) throw new Error("payload over 4000 bytes");
    this.raw(Buffer.concat([Buffer.from(`${t} ${id} ${p.length}\n`), p, Buffer.from(`.${id}\n`)]));
  }

  /** stdin in frames of at most 4000 bytes, then EOF. */
  stdin(id: string, data: Uint8Array): void {
    for (let i = 0; i < data.length; i += 4000) this.send("i", id, data.subarray(i, i + 4000));
    this.send("i", id, "");
  }

  /** Resolves once `pred` holds over the frames so far. */
  async until(pred: (frames: Frame[]) => boolean, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this.frames)) {
      if (this.ended) throw new Error("the agent's stdout closed");
      if (Date.now() > deadline) throw new Error("timed out waiting for the agent");
      await new Promise<void>((r) => {
        this.wake.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** ID's frames once its x or r came. */
  async result(id: string): Promise<Result> {
    await this.until((fs) => fs.some((f) => f.id === id && (f.t === "x" || f.t === "r")));
    const mine = this.frames.filter((f) => f.id === id);
    const cat = (t: string) => Buffer.concat(mine.filter((f) => f.t === t).map((f) => f.data));
    const end = mine.find((f) => f.t === "x" || f.t === "r")!;
    return { out: cat("o"), err: cat("e"), code: end.t === "x" ? Number(end.data.toString()) : null, reason: end.t === "r" ? end.data.toString() : null, chunks: mine };
  }

  async run(id: string, cmd: string, stdin?: Uint8Array): Promise<Result> {
    this.send("s", id, cmd);
    if (stdin) this.stdin(id, stdin);
    return this.result(id);
  }

  async ping(id: string): Promise<void> {
    this.send("p", id);
    await this.until((fs) => fs.some((f) => f.t === "p" && f.id === id));
  }
}

