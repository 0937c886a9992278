// A JSON-lines agent in a real VM: 1,000 sends in a row, every reply in order,
// none lost or duplicated, with a daemon kill -9 in the middle.
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";
import { killAndWait } from "../helpers/cli.ts";

const N = 1000;
const AGENT = `while IFS= read -r line; do printf '{"echo":%s}\\n' "$line"; done`;

e2e.describe("guest session in a real VM", () => {
  const h = e2eReady ? e2eHome("banger-e2e-ss-") : (null as never);
  const sock = () => join(h.home, "bangerd.sock");
  const api = (method: string, path: string, body?: string) =>
    fetch(`http://banger${path}`, { method, body, unix: sock() } as RequestInit);
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "agentbox", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });

  test("boot, start the agent with a FIFO stdin", () => {
    expect(h.run(["vm", "create", "agentbox", "--vmm", "qemu", "--start"]).code).toBe(0);
    const r = h.run(["session", "start", "agentbox", "--name", "agent", "--require", "bash", "--json", "--", "bash", "-c", AGENT]);
    expect(r.code).toBe(0);
    const s = r.json();
    expect(s.status).toBe("running");
    expect(s.stdinMode).toBe("pipe");
    expect(s.guestPid).toBeGreaterThan(0);
  }, 300_000);

  test(`${N} sends in a row with a daemon kill -9 in the middle: all answered, in order`, async () => {
    let restarts = 0;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      if (i === N / 2) {
        killAndWait(h.daemonPid());
        expect(h.run(["daemon", "status"]).code).toBe(1);
        expect(h.run(["vm", "list", "--json"]).code).toBe(0); // auto-starts a new daemon
        restarts++;
      }
      const res = await api("POST", "/v1/vms/agentbox/sessions/agent/send", JSON.stringify({ seq: i }) + "\n");
      const body = (await res.json()) as { bytesWritten: number };
      expect(res.status).toBe(200);
      expect(body.bytesWritten).toBe(JSON.stringify({ seq: i }).length + 1);
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(`${N} sends in ${secs.toFixed(1)} s (${((secs * 1000) / N).toFixed(1)} ms/send), ${restarts} daemon restart`);

    // read everything back by byte offsets, in pieces, as a reattaching client would
    let offset = 0;
    let text = "";
    for (let tries = 0; tries < 200; tries++) {
      const r = h.run(["session", "logs", "agentbox", "agent", "--offset", String(offset), "--json"]);
      expect(r.code).toBe(0);
      const chunk = r.json<{ data: string; offset: number; nextOffset: number }>();
      expect(chunk.offset).toBe(offset);
      text += chunk.data;
      offset = chunk.nextOffset;
      if (text.split("\n").length > N) break;
      await Bun.sleep(100);
    }
    const lines = text.split("\n").filter(Boolean);
    expect(lines.length).toBe(N);
    lines.forEach((l, i) => expect(JSON.parse(l)).toEqual({ echo: { seq: i } }));
    expect(offset).toBe(Buffer.byteLength(text));
  }, 900_000);

  test("send semantics: stop records the exit; an ended session says not running", () => {
    const stopped = h.run(["session", "stop", "agentbox", "agent", "--json"]);
    expect(stopped.code).toBe(0);
    expect(["stopped", "exited"]).toContain(stopped.json().status);
    const r = h.run(["session", "send", "agentbox", "agent"], {}, "late\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not running");
  }, 60_000);
});
