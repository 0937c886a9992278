// Crash fault injection through dist/banger: for every step in FAULT_POINTS the
// daemon SIGKILLs itself there (BANGER_FAULT), the next CLI call auto-starts a
// fresh daemon (reconcile), and we check that banger ended consistent: no
// orphan VM process, no temp file, no half-made row, every VM running and
// adopted or stopped and cleaned, and the operation retryable to success.
// The "VM" is the fake VMM (a node process), the "guest" a real sshd on 127.0.0.1.
// BANGER_FAULT_ITER sets the rounds per point (default 2; `npm run test:stress` uses 20).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseTempName } from "../../src/shared/temps.ts";
import { E2B_FAULT_POINTS, FAULT_POINTS, QEMU_ONLY_FAULT_POINTS, type FaultPoint } from "../../src/host/faults.ts";
import { alive, BANGER, FAKE_PLUGIN, tempHome, waitFor, killAndWait } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";
import { guestLogin } from "../helpers/sshd.ts";

const ITER = Math.max(1, Number(process.env.BANGER_FAULT_ITER ?? 2));
const TIMEOUT = Math.max(120_000, ITER * 12_000); // per test: rounds are ~1-4 s each under load
const g = fakeGuestVM("banger-fault-");
const { scratch, guestRoot } = g;
// VM lifecycle steps run in a second home with only the fake VMM: its VMs need no guest SSH
const v = tempHome("banger-fault-vm-");
const vEnv = { BANGER_PLUGINS: FAKE_PLUGIN };

/** One banger home under test: how to run the CLI in it and where it lives. */
interface World {
  home: string;
  run(args: string[], input?: string, extraEnv?: Record<string, string>): { code: number; stdout: string; stderr: string; json<T = any>(): T };
  daemonPid(): number;
  sessions: boolean;
}
const gw: World = { home: g.h.home, run: (a, i, e = {}) => g.h.run(a, { ...g.env, ...e }, i), daemonPid: g.h.daemonPid, sessions: true };
const vw: World = { home: v.home, run: (a, i, e = {}) => v.run(a, { ...vEnv, ...e }, i), daemonPid: v.daemonPid, sessions: false };
const repo = join(scratch, "repo");
const AGENT = ["bash", "-c", 'while IFS= read -r l; do printf "got:%s\\n" "$l"; done'];
const stats = { crashes: 0, vmKills: 0, cliKills: 0, leaks: [] as string[] };
const extraPids = new Set<number>();

interface VMView {
  name: string;
  alive: boolean;
  pid: number;
  runtime: { state: string; vmDir: string; lastError: string };
}

function ok(args: string[], input?: string, w: World = gw) {
  const r = w.run(args, input);
  if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}
const vms = (w: World = gw) => ok(["vm", "list", "--json"], undefined, w).json<VMView[]>();
const vmNamed = (n: string, w: World = vw) => vms(w).find((x) => x.name === n);
const vok = (args: string[]) => ok(args, undefined, vw);

function killDaemon(w: World) {
  killAndWait(w.daemonPid());
}

/** Pids of every fake-VM process serving a socket under this home. */
function vmProcesses(w: World): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (cmd.includes("fake-vm.mjs") && cmd.includes(w.home) && alive(Number(d))) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** What the fake VM itself says: "running" or "paused". */
async function fakeVmState(vmDir: string): Promise<string> {
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const c = connect(join(vmDir, "api.sock"));
    let got = "";
    c.on("connect", () => c.write("state\n"));
    c.on("data", (d) => (got += d.toString()));
    c.on("close", () => resolve(got.trim().replace(/^state /, "")));
    c.on("error", () => resolve("unreachable"));
  });
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** Everything that must hold after any crash once the next daemon has reconciled. */
async function checkConsistent(point: string, w: World): Promise<void> {
  const list = vms(w);
  const leak = (what: string) => {
    stats.leaks.push(`${point}: ${what}`);
    throw new Error(`${point}: ${what}`);
  };
  for (const x of list) {
    const up = x.runtime.state === "running" || x.runtime.state === "paused";
    if (!["running", "paused", "stopped", "created"].includes(x.runtime.state)) leak(`vm ${x.name} left in state ${x.runtime.state}`);
    if (up && !x.alive) leak(`vm ${x.name} ${x.runtime.state} but not alive`);
    if (!up && x.alive) leak(`vm ${x.name} ${x.runtime.state} but alive`);
    if (!up && existsSync(join(x.runtime.vmDir, "handles.json"))) leak(`vm ${x.name} stopped with a handles.json`);
    // the record says what the VMM does: a crash between the VMM's answer and the store's write is corrected by reconcile
    if (up) {
      const told = await fakeVmState(x.runtime.vmDir);
      if (told !== x.runtime.state) leak(`vm ${x.name} recorded ${x.runtime.state} but its VMM says ${told}`);
    }
    if (!existsSync(x.runtime.vmDir)) leak(`vm ${x.name} has no dir`);
    else if (!existsSync(join(x.runtime.vmDir, "system.img"))) leak(`vm ${x.name} is half-created (no system disk)`);
  }
  const adopted = new Set(list.filter((x) => x.alive).map((x) => x.pid));
  for (const pid of vmProcesses(w)) {
    if (!adopted.has(pid)) {
      extraPids.add(pid);
      leak(`orphan vm process ${pid}`);
    }
  }
  // every tap (and loop) the fake VMM "made" at start is torn down unless its VM runs now
  const events = join(w.home, "fake-events.log");
  const lastEvent = new Map<string, string>();
  for (const line of existsSync(events) ? readFileSync(events, "utf8").trim().split("\n").filter(Boolean) : []) {
    const e = JSON.parse(line) as { ev: string; tap: string };
    if (e.tap) lastEvent.set(e.tap, e.ev);
  }
  const runningTaps = new Set(list.filter((x) => x.alive).map((x) => `tap-${x.runtime.vmDir.split("/").pop()!.slice(0, 8)}`));
  for (const [tap, ev] of lastEvent) if (ev === "alloc" && !runningTaps.has(tap)) leak(`tap ${tap} made at start and never torn down`);
  // a snapshot is whole (row and dir) or gone (neither)
  const snapRows = new Set(ok(["snapshot", "list", "--json"], undefined, w).json<{ dir: string }[]>().map((s) => s.dir));
  for (const d of snapRows) if (!existsSync(join(d, "snapshot.json"))) leak(`snapshot row without its files: ${d}`);
  const snapsDir = join(w.home, "snapshots");
  for (const d of existsSync(snapsDir) ? readdirSync(snapsDir) : []) if (!snapRows.has(join(snapsDir, d))) leak(`snapshot dir without a ready row: ${d}`);
  const known = new Set(list.map((x) => x.runtime.vmDir));
  const vmsDir = join(w.home, "vms");
  for (const d of existsSync(vmsDir) ? readdirSync(vmsDir) : []) if (!known.has(join(vmsDir, d))) leak(`vm dir without a row: ${d}`);
  const temps = walk(w.home).filter((f) => parseTempName(basename(f)) !== null);
  if (temps.length) leak(`temp files left: ${temps.join(", ")}`);
  if (!w.sessions) return;
  // session reconcile runs just after the daemon listens: give it a moment
  const settled = await waitFor(() => !ok(["session", "list", "box", "--json"]).json<{ status: string }[]>().some((s) => s.status === "starting"), 10_000, 100);
  if (!settled) leak("a session left starting");
  const uploads = readdirSync("/tmp").filter((f) => f.startsWith("banger-send-") && uploadsBefore.has(f) === false);
  if (uploads.length) {
    // other test runs on this host may be mid-send: only a file that stays counts
    await Bun.sleep(1500);
    const still = uploads.filter((f) => existsSync(join("/tmp", f)));
    if (still.length) leak(`guest upload files left: ${still.join(", ")}`);
  }
}
let uploadsBefore = new Set<string>();

const sessionState = (name: string) => ok(["session", "list", "box", "--json"]).json<{ name: string; status: string }[]>().find((s) => s.name === name);
const sessionOut = (name: string) => ok(["session", "logs", "box", name]).stdout;

/** Per family of steps: get to the state the operation starts from, run it, and retry it after the crash. */
interface Scenario {
  world: World;
  setup(): void | Promise<void>;
  op(extraEnv: Record<string, string>): { code: number; stderr: string };
  retry(): void | Promise<void>;
}

const fresh = () => {
  if (vmNamed("f")) vok(["vm", "delete", "f", "--force", "--with-snapshots"]);
};
const snaps = () => vok(["snapshot", "list", "--json"]).json<{ vmName: string; name: string; dir: string }[]>();
const snapNamed = (ref: string) => snaps().find((x) => `${x.vmName}@${x.name}` === ref);
const create = () => vok(["vm", "create", "f", "--image", "tiny", "--driver", "fake"]);
const runOp = (args: string[], input?: string, w: World = gw) => (extraEnv: Record<string, string>) => w.run(args, input, extraEnv);
const vmOp = (args: string[]) => runOp(args, undefined, vw);
let payloadN = 0;

const scenarios: Record<string, Scenario> = {
  create: {
    world: vw,
    setup: fresh,
    op: vmOp(["vm", "create", "f", "--image", "tiny", "--driver", "fake"]),
    retry() {
      if (!vmNamed("f")) create();
      expect(vmNamed("f")!.runtime.state).toBe("created");
    },
  },
  start: {
    world: vw,
    setup() {
      fresh();
      create();
    },
    op: vmOp(["vm", "start", "f"]),
    retry() {
      vok(["vm", "start", "f"]);
      expect(vmNamed("f")).toMatchObject({ alive: true, runtime: { state: "running" } });
    },
  },
  stop: {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "start", "f"]);
    },
    op: vmOp(["vm", "stop", "f"]),
    retry() {
      vok(["vm", "stop", "f"]);
      expect(vmNamed("f")).toMatchObject({ alive: false, runtime: { state: "stopped" } });
    },
  },
  delete: {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "start", "f"]);
    },
    op: vmOp(["vm", "delete", "f"]),
    retry() {
      if (vmNamed("f")) vok(["vm", "delete", "f"]);
      expect(vmNamed("f")).toBeUndefined();
    },
  },
  pause: {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "start", "f"]);
    },
    op: vmOp(["vm", "pause", "f"]),
    retry() {
      vok(["vm", "pause", "f"]);
      expect(vmNamed("f")).toMatchObject({ alive: true, runtime: { state: "paused" } });
    },
  },
  resume: {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "start", "f"]);
      vok(["vm", "pause", "f"]);
    },
    op: vmOp(["vm", "resume", "f"]),
    retry() {
      vok(["vm", "resume", "f"]);
      expect(vmNamed("f")).toMatchObject({ alive: true, runtime: { state: "running" } });
    },
  },
  snapshot: {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "start", "f"]);
    },
    op: vmOp(["vm", "snapshot", "f", "--name", "s"]),
    retry() {
      // all of it or none of it; and the VM it paused for the save runs on either way
      expect(vmNamed("f")).toMatchObject({ alive: true, runtime: { state: "running" } });
      if (!snapNamed("f@s")) vok(["vm", "snapshot", "f", "--name", "s"]);
      expect(readFileSync(join(snapNamed("f@s")!.dir, "state.mig"), "utf8")).toBe("state of f");
      expect(existsSync(join(snapNamed("f@s")!.dir, "system.img"))).toBe(true);
      expect(vmNamed("f")).toMatchObject({ alive: true, runtime: { state: "running" } });
    },
  },
  rollback: {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "start", "f"]);
      vok(["vm", "snapshot", "f", "--name", "r"]);
    },
    op: vmOp(["vm", "rollback", "f", "r"]),
    retry() {
      vok(["vm", "rollback", "f", "r"]);
      expect(vmNamed("f")).toMatchObject({ alive: true, runtime: { state: "running" } });
      expect(readFileSync(join(vmNamed("f")!.runtime.vmDir, "restored.log"), "utf8")).toContain("state of f");
    },
  },
  clone: {
    world: vw,
    setup() {
      if (vmNamed("g")) vok(["vm", "delete", "g", "--force"]);
      fresh();
      create();
      vok(["vm", "start", "f"]);
      vok(["vm", "snapshot", "f", "--name", "c"]);
    },
    op: vmOp(["vm", "create", "g", "--from", "f@c", "--start"]),
    retry() {
      // a crash after the disks leaves g made (the snapshot's disks) but never started: a whole VM, deleted to retry
      if (vmNamed("g")) {
        expect(vmNamed("g")!.runtime.state).toBe("created");
        vok(["vm", "delete", "g"]);
      }
      vok(["vm", "create", "g", "--from", "f@c", "--start"]);
      expect(vmNamed("g")).toMatchObject({ alive: true, runtime: { state: "running" } });
      expect(readFileSync(join(vmNamed("g")!.runtime.vmDir, "restored.log"), "utf8")).toBe("state of f\n");
      vok(["vm", "delete", "g", "--force"]);
    },
  },
  "snapshot-rm": {
    world: vw,
    setup() {
      fresh();
      create();
      vok(["vm", "snapshot", "f", "--name", "d"]);
    },
    op: vmOp(["snapshot", "rm", "f@d"]),
    retry() {
      const s = snapNamed("f@d");
      if (s) vok(["snapshot", "rm", "f@d"]);
      expect(snapNamed("f@d")).toBeUndefined();
    },
  },
  session: {
    world: gw,
    setup() {
      if (sessionState("s")) ok(["session", "rm", "box", "s", "--force"]);
    },
    op: runOp(["session", "start", "box", "--name", "s", "--", ...AGENT]),
    retry() {
      const s = sessionState("s");
      // a launch that happened before the crash is adopted; one that did not is failed and can be removed and started again
      if (s && s.status !== "running") ok(["session", "rm", "box", "s", "--force"]);
      if (!s || s.status !== "running") ok(["session", "start", "box", "--name", "s", "--", ...AGENT]);
      expect(sessionState("s")!.status).toBe("running");
    },
  },
  send: {
    world: gw,
    setup() {
      if (sessionState("s")?.status !== "running") {
        if (sessionState("s")) ok(["session", "rm", "box", "s", "--force"]);
        ok(["session", "start", "box", "--name", "s", "--", ...AGENT]);
      }
    },
    op: (extraEnv) => runOp(["session", "send", "box", "s"], `p${++payloadN}\n`)(extraEnv),
    async retry() {
      const n = payloadN;
      ok(["session", "send", "box", "s"], `p${n}\n`);
      // whole lines only, the retried payload last; the crashed send arrived whole or not at all
      expect(await waitFor(() => sessionOut("s").endsWith(`got:p${n}\n`), 5000, 100)).toBe(true);
      const lines = sessionOut("s").split("\n").filter(Boolean);
      for (const l of lines) expect(l).toMatch(/^got:p\d+$/);
    },
  },
  workspace: {
    world: gw,
    setup() {},
    op: runOp(["workspace", "push", "box", repo, "--guest-path", join(guestRoot, "ws")]),
    retry() {
      ok(["workspace", "push", "box", repo, "--guest-path", join(guestRoot, "ws")]);
      expect(readFileSync(join(guestRoot, "ws", "README.md"), "utf8")).toBe("hello\n");
    },
  },
};

beforeAll(async () => {
  await g.start();
  mkdirSync(repo);
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "README.md"), "hello\n");
  git(repo, "add", ".");
  git(repo, "commit", "-q", "-m", "init");
  writeFileSync(join(scratch, "vk"), "k");
  writeFileSync(join(scratch, "vr"), Buffer.alloc(4096));
  vok(["image", "import", "--name", "tiny", "--kernel", join(scratch, "vk"), "--rootfs", join(scratch, "vr")]);
  uploadsBefore = new Set(readdirSync("/tmp").filter((f) => f.startsWith("banger-send-")));
}, 30_000);

afterAll(async () => {
  for (const p of extraPids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {}
  }
  for (const n of ["f", "r"]) if (vmNamed(n)) vw.run(["vm", "delete", n, "--force"]);
  await v.cleanup(vmProcesses(vw));
  await g.cleanup();
  console.log(
    `fault injection (${ITER} rounds per point): ${stats.crashes} daemon crashes at ${FAULT_POINTS.length - QEMU_ONLY_FAULT_POINTS.length - E2B_FAULT_POINTS.length} points, ${stats.vmKills} VM kills, ${stats.cliKills} CLI kills; ${stats.leaks.length} leaks${stats.leaks.length ? `: ${stats.leaks.join("; ")}` : ""}`,
  );
});

describe("SIGKILL of the daemon at every step", () => {
  // send, session and workspace steps log in to the guest; the VM lifecycle steps need none
  for (const point of FAULT_POINTS.filter((p) => !QEMU_ONLY_FAULT_POINTS.includes(p) && !E2B_FAULT_POINTS.includes(p))) (["session", "send", "workspace"].includes(point.split(":")[0]!) ? guestLogin : { test }).test(
    `${point}: crash, restart, consistent, retryable`,
    async () => {
      const scenario = scenarios[point.split(":")[0]!]!;
      for (let i = 0; i < ITER; i++) {
        await scenario.setup();
        const w = scenario.world;
        killDaemon(w); // the next call starts a daemon with the fault armed
        await waitFor(() => !alive(w.daemonPid()), 2000);
        const r = scenario.op({ BANGER_FAULT: point });
        expect(r.code).not.toBe(0); // the daemon died under the CLI
        const log = readFileSync(join(w.home, "daemon.log"), "utf8");
        if (!log.includes(`SIGKILL at ${point}`)) console.log(`MISSING fault line for ${point}: exit ${r.code}: ${r.stderr.trim()}\n${log.split("\n").slice(-6).join("\n")}`);
        expect(log).toContain(`SIGKILL at ${point}`);
        stats.crashes++;
        await checkConsistent(point, w); // this call auto-starts an unarmed daemon: reconcile has run
        await scenario.retry();
        await checkConsistent(point, w);
      }
    },
    TIMEOUT,
  );
});

describe("the VM process killed at a random moment", () => {
  test(`start, then kill -9 of the VM at a random delay (${ITER * 3} rounds): demoted and cleaned, startable again`, async () => {
    for (let i = 0; i < ITER * 3; i++) {
      if (!vmNamed("r")) vok(["vm", "create", "r", "--image", "tiny", "--driver", "fake"]);
      const starting = Bun.spawn([BANGER, "vm", "start", "r"], { env: { ...v.env, ...vEnv }, stdout: "ignore", stderr: "ignore" });
      const delay = Math.floor(Math.random() * 400);
      await Bun.sleep(delay);
      const dir = vmNamed("r")!.runtime.vmDir;
      for (const pid of vmProcesses(vw)) {
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir)) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {}
        }
      }
      await starting.exited;
      // a start that had not launched yet when we looked leaves a live VM: either way the state must be honest
      await waitFor(() => {
        const x = vmNamed("r")!;
        return x.alive === (x.runtime.state === "running");
      }, 5000, 100);
      stats.vmKills++;
      await checkConsistent(`vm-kill@${delay}ms`, vw);
      vok(["vm", "start", "r"]);
      expect(vmNamed("r")).toMatchObject({ alive: true, runtime: { state: "running" } });
      vok(["vm", "stop", "r"]);
    }
    vok(["vm", "delete", "r"]);
  }, TIMEOUT);
});

guestLogin.describe("the CLI killed mid-stream", () => {
  test("kill -9 of `vm logs -f` and `session attach`: the daemon keeps serving, no guest tail is left behind", async () => {
    if (sessionState("s")?.status !== "running") {
      if (sessionState("s")) ok(["session", "rm", "box", "s", "--force"]);
      ok(["session", "start", "box", "--name", "s", "--", ...AGENT]);
    }
    const tails = () =>
      readdirSync("/proc").filter((d) => {
        try {
          return /^\d+$/.test(d) && readFileSync(`/proc/${d}/cmdline`, "utf8").startsWith("tail\0") && readFileSync(`/proc/${d}/cmdline`, "utf8").includes(guestRoot);
        } catch {
          return false;
        }
      });
    for (let i = 0; i < ITER * 2; i++) {
      const follow = Bun.spawn([BANGER, "vm", "logs", "box", "-f"], { env: { ...g.h.env, ...g.env }, stdout: "pipe", stderr: "ignore" });
      const attach = Bun.spawn([BANGER, "session", "attach", "box", "s"], { env: { ...g.h.env, ...g.env }, stdin: "pipe", stdout: "pipe", stderr: "ignore" });
      await waitFor(() => tails().length > 0, 5000, 50);
      await Bun.sleep(Math.floor(Math.random() * 300));
      follow.kill("SIGKILL");
      attach.kill("SIGKILL");
      await Promise.all([follow.exited, attach.exited]);
      stats.cliKills++;
      expect(ok(["vm", "list", "--json"]).json<VMView[]>().length).toBeGreaterThan(0);
      expect(await waitFor(() => tails().length === 0, 10_000, 100)).toBe(true);
      ok(["session", "send", "box", "s"], `after-cut-${i}\n`);
      expect(await waitFor(() => sessionOut("s").includes(`got:after-cut-${i}\n`), 5000, 100)).toBe(true);
    }
    await checkConsistent("cli-kill", gw);
  }, TIMEOUT);
});
