import { describe, expect, test } from "bun:test";
import { fakeHost, testLogger } from "../helpers/fakes.ts";
import { Backlog } from "../../src/shared/backlog.ts";
import type { Clock, ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import type { GuestSession, VMRecord } from "../../src/shared/model.ts";
import { SessionEngine, TAIL_BACKLOG_BYTES } from "../../src/sessions/engine.ts";
import * as sess from "../../src/sessions/scripts.ts";
import { Store } from "../../src/store/store.ts";
import { EVENT_BACKLOG_BYTES, EventQueue } from "../../src/daemon/e2b/envd/process-events.ts";

const MiB = 1 << 20;

describe("Backlog", () => {
  test("pauses its producers past `high`, resumes them at `low`, and caughtUp waits in between", async () => {
    const b = new Backlog(100, 20);
    const calls: string[] = [];
    b.flow({ pause: () => calls.push("pause"), resume: () => calls.push("resume") });
    b.added(100);
    expect(calls).toEqual([]);
    let caught = false;
    void b.caughtUp().then(() => (caught = true));
    await Bun.sleep(0);
    expect(caught).toBe(true);
    b.added(1);
    b.added(50); // paused once, not at every chunk
    expect(calls).toEqual(["pause"]);
    caught = false;
    void b.caughtUp().then(() => (caught = true));
    b.taken(100);
    await Bun.sleep(0);
    expect(calls).toEqual(["pause"]); // 51 left: above low
    expect(caught).toBe(false);
    b.taken(31);
    await Bun.sleep(0);
    expect(calls).toEqual(["pause", "resume"]);
    expect(caught).toBe(true);
  });

  test("a producer that joins while the reader is behind starts paused; release lets everything go for good", async () => {
    const b = new Backlog(10);
    b.added(11);
    const late: string[] = [];
    b.flow({ pause: () => late.push("pause"), resume: () => late.push("resume") });
    expect(late).toEqual(["pause"]);
    const waited = b.caughtUp();
    b.release();
    await waited;
    expect(late).toEqual(["pause", "resume"]);
    b.added(1000);
    expect(late).toEqual(["pause", "resume"]);
  });
});

/**
 * A guest whose session writes `total` bytes as fast as the tail is read, in 64 KiB chunks, and
 * honours flow as ssh2's channel and the exec agent do. It records the most bytes handed over
 * and not yet taken by the reader at any moment.
 */
class FloodingGuest implements GuestSSH {
  closed = false;
  produced = 0;
  taken = 0;
  maxBehind = 0;
  pauses = 0;
  constructor(private readonly _total: number) {}
  async exec(command: string, opts?: ExecStreamOptions): Promise<number> {
    // only the stdout log grows; a tail of stderr waits for its end
    if (!command.includes("tail")) return 0;
    if (!command.includes("stdout")) {
      for await (const _ of (opts?.stdin as AsyncIterable<Uint8Array>) ?? []) void _;
      return 143;
    }
    let paused = false;
    opts?.flow?.({ pause: () => ((paused = true), this.pauses++), resume: () => (paused = false) });
    const chunk = new Uint8Array(64 << 10).fill(120);
    while (this.produced < this._total) {
      await Bun.sleep(0);
      if (paused) continue;
      opts?.onStdout?.(chunk);
      this.produced += chunk.length;
      this.maxBehind = Math.max(this.maxBehind, this.produced - this.taken);
    }
    // the tail runs until its stdin ends (the follower stops)
    for await (const _ of (opts?.stdin as AsyncIterable<Uint8Array>) ?? []) void _;
    return 143;
  }
  async runScript() {
    return { exitCode: 0, stdout: "", stderr: "" };
  }
  async upload() {}
  close() {
    this.closed = true;
  }
}

const clock: Clock = { now: () => new Date(), sleep: (ms) => Bun.sleep(ms), timer: () => () => {} };

function engineWith(guest: GuestSSH) {
  const store = new Store(":memory:");
  const now = new Date().toISOString();
  const vm = {
    id: "vm-id",
    name: "vm",
    spec: { image: "i", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: "qemu", storage: "copy" },
    runtime: { state: "running", guestIP: "", apiSockPath: "", vsockPath: "", vsockCID: 0, logPath: "", metricsPath: "", dnsName: "", vmDir: "", systemOverlay: "", workDiskPath: "", lastError: "", sshHost: "127.0.0.1", sshPort: 0 },
    createdAt: now,
    updatedAt: now,
  } as VMRecord;
  store.upsertVM(vm);
  const dir = sess.StateDir("s-id");
  const s: GuestSession = {
    id: "s-id", vmId: vm.id, name: "flood", backend: "ssh", command: "yes", args: [], cwd: "", stdinMode: "closed", status: "running",
    guestStateDir: dir, stdoutLogPath: sess.sessionPaths(dir).stdout, stderrLogPath: sess.sessionPaths(dir).stderr,
    attachable: false, reattachable: false, launchStage: "", launchMessage: "", guestPid: 4242, exitCode: null,
    startedAt: now, endedAt: "", createdAt: now, updatedAt: now,
  };
  store.sessions.upsert(s);
  const engine = new SessionEngine({
    repo: store.sessions,
    host: fakeHost(),
    log: testLogger(),
    dial: async () => guest,
    vmAlive: async () => true,
    getVM: (id) => store.getVM(id),
    clock,
    newId: () => "n",
  });
  return { engine, s };
}

describe("a followed log behind a slow reader", () => {
  test("follow(): the guest's tail is held once TAIL_BACKLOG_BYTES wait, and every byte still arrives in order", async () => {
    const total = 12 * MiB;
    const guest = new FloodingGuest(total);
    const { engine, s } = engineWith(guest);
    const ac = new AbortController();
    let got = 0;
    for await (const c of engine.follow(s, { signal: ac.signal })) {
      got += c.data.length;
      expect(c.nextOffset).toBe(got);
      // a reader that takes its time over every chunk
      await Bun.sleep(5);
      guest.taken = got;
      if (got >= total) ac.abort();
    }
    expect(got).toBe(total);
    expect(guest.pauses).toBeGreaterThan(0);
    // without the brake the whole 12 MiB waits in the daemon; with it, what the reader holds (one yield
    // takes all that waited) and as much again, and a chunk in flight
    expect(guest.maxBehind).toBeLessThanOrEqual(2 * TAIL_BACKLOG_BYTES + (128 << 10));
  });

  test("followAll (E2B connect): output waits for the handler's caughtUp before the next chunk is taken", async () => {
    const total = 12 * MiB;
    const guest = new FloodingGuest(total);
    const { engine, s } = engineWith(guest);
    const ac = new AbortController();
    const q = new EventQueue<Uint8Array>(ac.signal);
    const following = engine.followAll(s, { stdout: 0, stderr: 0 }, {
      onStdout: (d) => q.push(d, d.length),
      onStderr: (d) => q.push(d, d.length),
      flow: (ctl) => q.flow(ctl),
      caughtUp: () => q.caughtUp(),
    }, ac.signal);
    let got = 0;
    let maxQueued = 0;
    for await (const d of q) {
      got += d.length;
      guest.taken = got;
      maxQueued = Math.max(maxQueued, guest.produced - got);
      await Bun.sleep(2);
      if (got >= total) break;
    }
    ac.abort();
    await following;
    expect(got).toBe(total);
    // the queue's 4 MiB, plus the tail's own 1 MiB and a chunk or two in flight
    expect(maxQueued).toBeLessThanOrEqual(EVENT_BACKLOG_BYTES + TAIL_BACKLOG_BYTES + (256 << 10));
    expect(guest.maxBehind).toBeLessThanOrEqual(EVENT_BACKLOG_BYTES + TAIL_BACKLOG_BYTES + (256 << 10));
  });
});

describe("EventQueue", () => {
  test("a producer given to flow() is paused past EVENT_BACKLOG_BYTES and resumed as the client reads; an abort lets it go", async () => {
    const ac = new AbortController();
    const q = new EventQueue<string>(ac.signal);
    const calls: string[] = [];
    q.flow({ pause: () => calls.push("pause"), resume: () => calls.push("resume") });
    q.push("start");
    for (let i = 0; i < 5; i++) q.push(`data${i}`, 1 * MiB);
    expect(calls).toEqual(["pause"]);
    const it = q[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe("start");
    expect((await it.next()).value).toBe("data0");
    expect((await it.next()).value).toBe("data1");
    expect(calls).toEqual(["pause"]); // 3 MiB still wait
    expect((await it.next()).value).toBe("data2");
    expect((await it.next()).value).toBe("data3");
    expect(calls).toEqual(["pause", "resume"]);
    for (let i = 0; i < 5; i++) q.push(`more${i}`, 1 * MiB);
    expect(calls).toEqual(["pause", "resume", "pause"]);
    ac.abort();
    expect(calls).toEqual(["pause", "resume", "pause", "resume"]);
  });
});
