import { expect, test } from "bun:test";
import { setGuestClock } from "../../plugins/guest/index.ts";
import type { GuestSSH, Host } from "../../src/host/types.ts";

/** A guest that answers the clock exchange the way set-clock.sh does (ready, then its clock per ping), recording what it was sent. */
function fakeConn(guestSays: string[], exitCode = 0) {
  const rec = { command: "", stdin: [] as string[] };
  const conn = {
    closed: false,
    async exec(command: string, opts: { stdin: AsyncIterable<Uint8Array>; onStdout: (c: Uint8Array) => void }) {
      rec.command = command;
      const says = [...guestSays];
      opts.onStdout(new TextEncoder().encode("ready\n"));
      // like set-clock.sh: three pings and the offset read, then it exits (the host keeps stdin open until then)
      const it = opts.stdin[Symbol.asyncIterator]();
      for (let i = 0; i < 4; i++) {
        const r = await it.next();
        if (r.done) break;
        rec.stdin.push(new TextDecoder().decode(r.value));
        const next = says.shift();
        if (next !== undefined) opts.onStdout(new TextEncoder().encode(next + "\n"));
      }
      return exitCode;
    },
  } as unknown as GuestSSH;
  return { conn, rec };
}

function hostAt(times: number[]): Host {
  return { clock: { now: () => new Date(times.shift()!), sleep: async () => {} } } as unknown as Host;
}

test("the offset sent comes from the quickest of three round trips: host clock at its midpoint minus the guest's, in µs", async () => {
  const { conn, rec } = fakeConn(["1000.500000", "1000.900000", "1001.500000"]);
  // round trips: 2000.000→2000.400 (400 ms), 2000.500→2000.520 (20 ms, the best: guest read 1000.9 at host ~2000.510), 2001.0→2001.3
  const host = hostAt([2_000_000, 2_000_400, 2_000_500, 2_000_520, 2_001_000, 2_001_300]);
  expect(await setGuestClock(host, conn)).toEqual({ offsetMs: 999_610, roundTripMs: 20 });
  expect(rec.stdin).toEqual(["t\n", "t\n", "t\n", "999610000\n"]);
  expect(rec.command.startsWith("S='")).toBe(true);
  expect(rec.command.endsWith(`; if [ -n "$BASH_VERSION" ]; then eval "$S"; else exec bash -c "$S"; fi`)).toBe(true);
  expect(rec.command).toContain("EPOCHREALTIME");
});

test("a guest that answers no time gets no offset, and the failure is one line", async () => {
  const { conn, rec } = fakeConn(["$(reboot)"], 1);
  const e = await setGuestClock(hostAt([1, 2, 3, 4]), conn).catch((x: Error) => x);
  expect(rec.stdin).toEqual(["t\n"]);
  expect((e as Error).message).toMatch(/^setting the restored guest's clock failed \(exit 1\)/);
});

test("an exec that fails mid-exchange rejects, and the stdin it was reading ends instead of waiting forever", async () => {
  let stdinDone: Promise<unknown> = Promise.resolve();
  const conn = {
    closed: false,
    async exec(_command: string, opts: { stdin: AsyncIterable<Uint8Array>; onStdout: (c: Uint8Array) => void }) {
      const it = opts.stdin[Symbol.asyncIterator]();
      opts.onStdout(new TextEncoder().encode("ready\n"));
      await it.next(); // the first ping; then the channel drops before the guest answers
      stdinDone = it.next();
      throw new Error("channel closed");
    },
  } as unknown as GuestSSH;
  expect(await setGuestClock(hostAt([1, 2, 3, 4]), conn).catch((e: Error) => e.message)).toBe("channel closed");
  expect(await stdinDone).toEqual({ done: true, value: undefined });
});
