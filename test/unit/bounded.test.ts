import { expect, test } from "bun:test";
import { mapBounded } from "../../src/shared/bounded.ts";

test("mapBounded: never more than `limit` in flight, results in order, a failure settles without stopping the rest", async () => {
  let inFlight = 0;
  let peak = 0;
  const started: number[] = [];
  const res = await mapBounded([30, 5, 20, 1, 10, 2], 3, async (ms, i) => {
    started.push(i);
    inFlight++;
    peak = Math.max(peak, inFlight);
    await Bun.sleep(ms);
    inFlight--;
    if (i === 2) throw new Error("third failed");
    return ms * 2;
  });
  expect(peak).toBe(3);
  expect(started.sort()).toEqual([0, 1, 2, 3, 4, 5]);
  expect(res.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([60, 10, "third failed", 2, 20, 4]);
});

test("mapBounded: limit 1 runs one at a time; no items, no calls", async () => {
  const order: string[] = [];
  await mapBounded(["a", "b"], 1, async (x) => {
    order.push(`start ${x}`);
    await Bun.sleep(5);
    order.push(`end ${x}`);
  });
  expect(order).toEqual(["start a", "end a", "start b", "end b"]);
  let calls = 0;
  expect(await mapBounded([], 4, async () => ++calls)).toEqual([]);
  expect(calls).toBe(0);
});
