import { expect, test } from "bun:test";
import { setGuestClock } from "../../plugins/guest/index.ts";
import type { GuestSSH, Host } from "../../src/host/types.ts";

/** A guest that answers the clock exchange the way set-clock.sh does, recording what it was sent. */
function fakeConn(guestSays: string, exitCode = 0) {
  const rec = { command: "", stdin: [] as string[] };
  const conn = {
    closed: false,
    async exec(command: string, opts: { stdin: AsyncIterable<Uint8Array>; onStdout: (c: Uint8Array) => void }) {
      rec.command = command;
      for await (const chunk of opts.stdin) {
        rec.stdin.push(new TextDecoder().decode(chunk));
        if (rec.stdin.length === 1) opts.onStdout(new TextEncoder().encode(guestSays));
      }
      return exitCode;
    },
  } as unknown as GuestSSH;
  return { conn, rec };
}

function hostAt(times: number[]): Host {
  return { clock: { now: () => new Date(times.shift()!), sleep: async () => {} } } as unknown as Host;
}

test("the offset sent is the host's clock at the midpoint of the round trip minus the guest's, in µs", async () => {
  const { conn, rec } = fakeConn("1000.500000\n");
  // sent at 2000.000 s, the guest's answer back at 2000.200 s: the guest read its clock at ~2000.100
  expect(await setGuestClock(hostAt([2_000_000, 2_000_200, 2_000_200]), conn)).toEqual({ offsetMs: 999_600, roundTripMs: 200 });
  expect(rec.stdin).toEqual(["t\n", "999600000\n"]);
  expect(rec.command.startsWith("bash -c '")).toBe(true);
  expect(rec.command).toContain("EPOCHREALTIME");
});

test("a guest that answers no time gets no offset, and the failure is one line", async () => {
  const { conn, rec } = fakeConn("$(reboot)\n", 1);
  const e = await setGuestClock(hostAt([1, 2]), conn).catch((x: Error) => x);
  expect(rec.stdin).toEqual(["t\n"]);
  expect((e as Error).message).toMatch(/^setting the restored guest's clock failed \(exit 1\)/);
});
