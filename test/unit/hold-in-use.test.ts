// holdInUse (an interactive `vm ssh`'s hold on its VM): one lifetimeHold stream open until release(), taken again
// when a daemon restart cut it, and none left running after release. The client is a fake that records its calls.
import { expect, test } from "bun:test";
import { holdInUse } from "../../src/cli/ssh-interactive.ts";
import { BangerError } from "../../src/shared/errors.ts";

function fakeClient(failFirst: number, failWith: () => Error = () => new BangerError("E_DAEMON", "daemon not running")) {
  const calls: { name: string; vm: string; signal: AbortSignal }[] = [];
  const stream = (name: string, req: { params: { vm: string } }, _on: unknown, signal?: AbortSignal) => {
    calls.push({ name, vm: req.params.vm, signal: signal! });
    // the first ones fail as a daemon that went away would; then one stays open until aborted
    if (calls.length <= failFirst) return Promise.reject(failWith());
    return new Promise((_, reject) => signal!.addEventListener("abort", () => reject(new Error("aborted")), { once: true }));
  };
  return { calls, client: { stream } as unknown as Parameters<typeof holdInUse>[0] };
}

test("holds the VM with one open stream until release(), then none", async () => {
  const { calls, client } = fakeClient(0);
  const hold = holdInUse(client, "my vm; $(x)", { retryMs: 5 });
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
  const hold = holdInUse(client, "box", { retryMs: 5 });
  await Bun.sleep(60);
  expect(calls).toHaveLength(3);
  expect(calls[2]!.signal.aborted).toBe(false);
  await hold.release();
  expect(calls.every((c) => c.signal.aborted)).toBe(true);
});

test("the daemon's refusal (its VMM halted the VM) ends the hold and is handed to onRefused, once; no retry", async () => {
  const { calls, client } = fakeClient(1, () => new BangerError("E_STATE", "vm box is halted: …"));
  const refused: string[] = [];
  const hold = holdInUse(client, "box", { retryMs: 5, onRefused: (e) => refused.push(e.message) });
  await Bun.sleep(40);
  expect(refused).toEqual(["vm box is halted: …"]);
  expect(calls).toHaveLength(1);
  await hold.release();
});
