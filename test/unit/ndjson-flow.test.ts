import { expect, test } from "bun:test";
import { ndjson, STREAM_QUEUE_BYTES } from "../../src/daemon/http.ts";

// A producer faster than its client: the stream pauses it once STREAM_QUEUE_BYTES wait, and resumes it only
// when the client has taken most of them (not at every chunk read), so memory stays bounded and a client a
// little slower than the guest does not pause and resume it at every chunk.
test("ndjson: a producer is paused while the client is behind by STREAM_QUEUE_BYTES, resumed once it caught up, every byte delivered in order", async () => {
  const events: string[] = [];
  let queuedAtPause = -1;
  let sent = 0;
  const chunk = new Uint8Array(48 << 10).fill(7);
  const total = 120;
  let paused = false;
  let wake: (() => void) | null = null;
  const res = ndjson(new Request("http://x/"), async (emit) => {
    emit.flow({
      pause: () => {
        paused = true;
        queuedAtPause = sent;
        events.push(`pause@${sent}`);
      },
      resume: () => {
        paused = false;
        events.push(`resume@${sent}`);
        wake?.();
      },
    });
    for (let i = 0; i < total; i++) {
      while (paused) await new Promise<void>((r) => (wake = r));
      emit.stdout(chunk, i);
      sent++;
    }
    return { type: "exit", code: 0 };
  });
  const reader = res.body!.getReader();
  // the client reads nothing for a while: the producer stops at the mark
  await Bun.sleep(50);
  expect(paused).toBe(true);
  // each event is ~65 KiB of base64 in JSON: the queue holds STREAM_QUEUE_BYTES of them, not all 120
  expect(queuedAtPause).toBeGreaterThan(0);
  expect(queuedAtPause * 65_600).toBeLessThan(STREAM_QUEUE_BYTES + 66_000);
  // one chunk read: not yet resumed (most of the queue still waits)
  const first = await reader.read();
  expect(first.done).toBe(false);
  expect(paused).toBe(true);
  let text = new TextDecoder().decode(first.value);
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    text += new TextDecoder().decode(r.value);
  }
  const lines = text.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.filter((l) => l.type === "stdout").map((l) => l.offset)).toEqual([...Array(total).keys()]);
  expect(lines.at(-1)).toEqual({ type: "exit", code: 0 });
  expect(events.filter((e) => e.startsWith("resume")).length).toBeGreaterThan(0);
  expect(events.filter((e) => e.startsWith("pause")).length).toBe(events.filter((e) => e.startsWith("resume")).length);
});

test("ndjson: caughtUp resolves at once while the client keeps up, waits while it is behind, and goes on once it caught up or went away", async () => {
  const marks: string[] = [];
  const chunk = new Uint8Array(48 << 10).fill(1);
  const res = ndjson(new Request("http://x/"), async (emit) => {
    await emit.caughtUp();
    marks.push("first");
    // a pulling producer: one chunk per caughtUp
    for (let i = 0; i < 120; i++) {
      await emit.caughtUp();
      emit.stdout(chunk, i);
      marks.push(`sent ${i}`);
    }
    return { type: "exit", code: 0 };
  });
  await Bun.sleep(50);
  const sentBefore = marks.filter((m) => m.startsWith("sent")).length;
  // nobody read: it stopped at the queue's mark, well before the 120th
  expect(sentBefore).toBeGreaterThan(10);
  expect(sentBefore).toBeLessThan(120);
  const text = await new Response(res.body).text();
  expect(text.trim().split("\n").filter((l) => JSON.parse(l).type === "stdout")).toHaveLength(120);
});

test("streamFile (vm logs): a big log is read on only as the client takes it", async () => {
  const { streamFile } = await import("../../src/daemon/app.ts");
  const size = 64 << 20;
  const reads: number[] = [];
  const fs = {
    stat: async () => ({ size }) as never,
    readRange: async (_p: string, at: number, len: number) => {
      reads.push(at);
      return new Uint8Array(len);
    },
  };
  const res = streamFile(new Request("http://x/"), "/serial.log", 0, false, async () => false, fs as never);
  await Bun.sleep(100);
  // 1 MiB reads, base64 in the queue: a handful before the 4 MiB mark, not all 64
  expect(reads.length).toBeGreaterThan(0);
  expect(reads.length).toBeLessThan(8);
  let got = 0;
  for await (const c of res.body!) got += c.length;
  expect(reads.length).toBe(64);
  expect(got).toBeGreaterThan(size);
});
