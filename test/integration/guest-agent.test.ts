import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import INIT_SH from "../../plugins/image/init.sh" with { type: "text" };
import { agentRun } from "../../plugins/guest/agent.ts";
import { createHost } from "../../src/host/index.ts";
import { renderScript } from "../../src/shared/quote.ts";
import { IS_ROOT, needs } from "../helpers/skip.ts";

// The guest agent as the guest runs it: init.sh's own _agent function in a
// real bash, its stdin and stdout two FIFOs (the port), held open both ways
// by this process as QEMU's pipe chardev holds them; the host side is
// agentRun over the real FS. bash runs in a private mount namespace with its
// own /run (the agent writes /run/banger-agent.err).
const it = needs(IS_ROOT && !!Bun.which("unshare"), "needs root and unshare: the agent runs with a private /run");

/** init.sh's `_agent() { … }`, as written there. */
function agentFunction(): string {
  const start = INIT_SH.indexOf("_agent() {");
  const end = INIT_SH.indexOf("\n}\n", start);
  if (start < 0 || end < 0) throw new Error("no _agent function in init.sh");
  return INIT_SH.slice(start, end + 2);
}

it.describe("init.sh's guest agent with agentRun", () => {
  let dir: string;
  let pipe: string;
  let held: number[] = [];
  let agent: Bun.Subprocess;
  const host = createHost({ dial: async () => Promise.reject(new Error("no ssh here")) });
  const run = (script: string, o: { stdin?: AsyncIterable<Uint8Array> } = {}) => {
    const out: string[] = [];
    const err: string[] = [];
    return agentRun(host, pipe, script, { ...o, deadline: Date.now() + 20_000, onStdout: (c) => void out.push(new TextDecoder().decode(c)), onStderr: (c) => void err.push(new TextDecoder().decode(c)) }).then((code) => ({ code, out: out.join(""), err: err.join("") }));
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "banger-agent-"));
    pipe = join(dir, "agent");
    Bun.spawnSync(["mkfifo", "-m", "600", `${pipe}.in`, `${pipe}.out`]);
    held = [openSync(`${pipe}.in`, constants.O_RDWR), openSync(`${pipe}.out`, constants.O_RDWR)];
    const body = `${agentFunction()}\nmount -t tmpfs tmpfs /run || exit 1\n_agent <"$1" >"$2"\n`;
    agent = Bun.spawn(["unshare", "-m", "--propagation", "private", "bash", "-c", body, "agent", `${pipe}.in`, `${pipe}.out`], { stdout: "ignore", stderr: "pipe" });
  });
  afterAll(async () => {
    agent.kill("SIGKILL");
    await agent.exited;
    for (const fd of held) closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });

  it.test("a script with hostile values runs as sent; its stdout lines, exit code and last stderr line come back", async () => {
    const value = "it's; $(touch /tmp/pwned) `id`\nline two";
    const r = await run(renderScript('printf "%s\\n" "$V"\necho first-err >&2\necho "last err" >&2\nexit 3\n', { V: value }));
    expect(r).toEqual({ code: 3, out: `${value}\n`, err: "last err\n" });
  });

  it.test("stdin reaches the script as it is written (the clock pings' round trips); the agent lives on after a script that exits, and after one set -e ends", async () => {
    const lines = ["ping 1\n", "ping 2\n"];
    const stdin = (async function* () {
      for (const l of lines) yield new TextEncoder().encode(l);
    })();
    const r = await run('read -r a; echo "got $a"; read -r b; echo "got $b"; exit 0\n', { stdin });
    expect(r).toEqual({ code: 0, out: "got ping 1\ngot ping 2\n", err: "" });
    expect((await run("set -e\nfalse\necho never\n")).code).toBe(1);
    expect(await run("echo $((6 * 7))\n")).toEqual({ code: 0, out: "42\n", err: "" });
  });

  it.test("what an earlier exchange left unread in the FIFO is not taken for this one's output", async () => {
    const w = openSync(`${pipe}.out`, constants.O_WRONLY | constants.O_NONBLOCK);
    writeSync(w, "left over\nbanger-agent 0123456789abcdef exit 9 old\n");
    closeSync(w);
    expect(await run("echo fresh\n")).toEqual({ code: 0, out: "fresh\n", err: "" });
  });
});
