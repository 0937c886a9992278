// holdInUse (an interactive `vm ssh`'s hold on its VM): one lifetimeHold stream open until release(), taken again
// when a daemon restart cut it, and none left running after release. The client is a fake that records its calls.
import { expect, test } from "bun:test";
import { holdInUse } from "../../src/cli/ssh-interactive.ts";

function fakeClient(failFirst: number) {
  const calls: { name: string; vm: string; signal: AbortSignal }[] = [];
  const stream = (name: string, req: { params: { vm: string } }, _on: unknown, signal?: AbortSignal) => {
    calls.push({ name, vm: req.params.vm, signal: signal! });
    // the first ones fail as a daemon that went away would; then one stays open until aborted
    if (calls.length <= failFirst) return Promise.reject(new Error("daemon not running"));
    return new Promise((_, reject) => signal!.addEventListener("abort", () => reject(new Error("aborted")), { once: true }));
  };
  return { calls, client: { stream } as unknown as Parameters<typeof holdInUse>[0] };
}

test("holds the VM with one open stream until release(), then none", async () => {
  const { calls, client } = fakeClient(0);
  const hold = holdInUse(client, "my vm; $(x)", 5);
  await Bun.sleep(30);
  expect(calls.map((c) => [c.name, c.vm])).toEqual([["lifetimeHold", "my vm; $(x)"]]);
  expect(calls[0]!.signal.aborted).toBe(false);
  await hold.release();
  expect(calls[0]!.signal.aborted).toBe(true);
  await Bun.sleep(30);
  expect(calls).toHaveLength(1);
});

test("a hold cut (the daemon restarted) is taken again", async () => {
  const { calls, client } = fakeClient(2);
  const hold = holdInUse(client, "box", 5);
  await Bun.sleep(60);
  expect(calls).toHaveLength(3);
  expect(calls[2]!.signal.aborted).toBe(false);
  await hold.release();
  expect(calls.every((c) => c.signal.aborted)).toBe(true);
});
