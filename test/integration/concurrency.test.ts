// Concurrency against dist/banger's socket: 100 API calls in flight mixed with
// 10 parallel creates (+ start) and then 10 parallel deletes, the same name
// claimed 10 times at once, and starts/stops racing on one VM. No SQLITE_BUSY
// may surface, no name may be taken twice, and everything must finish (no deadlock).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, FAKE_PLUGIN, tempHome } from "../helpers/cli.ts";

const h = tempHome("banger-conc-");
const run = (args: string[]) => h.run(args, { BANGER_PLUGINS: FAKE_PLUGIN });
const pids = new Set<number>();
const BUSY = /SQLITE_BUSY|database is locked|database table is locked/i;

interface Reply {
  status: number;
  text: string;
}

async function call(method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`http://banger${path}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? {} : { "content-type": "application/json" },
    unix: join(h.home, "bangerd.sock"),
  } as RequestInit);
  return { status: res.status, text: await res.text() };
}

/** The last NDJSON event of a streamed reply (result or error). */
function last(r: Reply): any {
  const lines = r.text.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!);
}

beforeAll(() => {
  writeFileSync(join(h.home, "k"), "k");
  writeFileSync(join(h.home, "r"), Buffer.alloc(4096));
  expect(run(["image", "import", "--name", "tiny", "--kernel", join(h.home, "k"), "--rootfs", join(h.home, "r")]).code).toBe(0);
});

afterAll(async () => {
  for (const v of run(["vm", "list", "--json"]).json<{ pid: number }[]>()) if (v.pid) pids.add(v.pid);
  await h.cleanup([...pids]);
});

function noise(n: number, names: string[]): Promise<Reply>[] {
  const out: Promise<Reply>[] = [];
  for (let i = 0; i < n; i++) {
    const name = names[i % names.length]!;
    const pick = i % 5;
    if (pick === 0) out.push(call("GET", "/v1/vms"));
    else if (pick === 1) out.push(call("GET", `/v1/vms/${name}`));
    else if (pick === 2) out.push(call("GET", "/v1/health"));
    else if (pick === 3) out.push(call("GET", `/v1/vms/${name}/sessions`));
    else out.push(call("GET", "/v1/images"));
  }
  return out;
}

describe("100 concurrent calls with parallel creates and deletes", () => {
  test("no SQLITE_BUSY, no duplicate name, no deadlock", async () => {
    const daemon = (run(["vm", "list"]), h.daemonPid());
    const names = Array.from({ length: 10 }, (_, i) => `c${i}`);
    const t0 = performance.now();
    const creates = names.map((name) => call("POST", "/v1/vms", { name, image: "tiny", driver: "fake", start: true }));
    const dups = Array.from({ length: 10 }, () => call("POST", "/v1/vms", { name: "dup", image: "tiny", driver: "fake" }));
    const calls = noise(100, names);
    const all = await Promise.race([
      Promise.all([Promise.all(creates), Promise.all(dups), Promise.all(calls)]),
      Bun.sleep(60_000).then(() => null),
    ]);
    expect(all).not.toBeNull(); // a deadlock would hang here
    const [created, dupReplies, replies] = all!;
    for (const r of [...created, ...dupReplies, ...replies]) expect(r.text).not.toMatch(BUSY);
    for (const r of created) {
      expect(r.status).toBe(200);
      expect(last(r).type).toBe("result");
      expect(last(r).data.alive).toBe(true);
      pids.add(last(r).data.pid);
    }
    // exactly one claim of the same name wins; the others are a clean 409 (before the stream) or an in-band E_NAME_TAKEN
    const won = dupReplies.filter((r) => r.status === 200 && last(r).type === "result");
    expect(won.length).toBe(1);
    for (const r of dupReplies.filter((x) => !won.includes(x))) {
      const code = r.status === 200 ? last(r).error.code : JSON.parse(r.text).error.code;
      expect(code).toBe("E_NAME_TAKEN");
    }
    for (const r of replies) expect(r.status === 200 || r.status === 404).toBe(true); // a VM not created yet is a 404
    const list = run(["vm", "list", "--json"]).json<{ name: string; alive: boolean; runtime: { state: string } }[]>();
    expect(list.map((v) => v.name).sort()).toEqual(["dup", ...names].sort());
    expect(new Set(list.map((v) => v.name)).size).toBe(list.length);
    const createMs = performance.now() - t0;

    const deletes = names.map((n) => call("DELETE", `/v1/vms/${n}?force=1`));
    const more = noise(100, names);
    const done = await Promise.race([Promise.all([Promise.all(deletes), Promise.all(more)]), Bun.sleep(60_000).then(() => null)]);
    expect(done).not.toBeNull();
    for (const r of [...done![0], ...done![1]]) expect(r.text).not.toMatch(BUSY);
    for (const r of done![0]) expect(r.status).toBe(200);
    expect(run(["vm", "list", "--json"]).json<{ name: string }[]>().map((v) => v.name)).toEqual(["dup"]);
    for (const p of pids) expect(alive(p)).toBe(false);
    expect(h.daemonPid()).toBe(daemon);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).not.toMatch(BUSY);
    console.log(`concurrency: 10 creates+starts, 10 same-name claims and 100 reads in ${Math.round(createMs)} ms; 10 deletes + 100 reads in ${Math.round(performance.now() - t0 - createMs)} ms`);
  }, 150_000);

  test("starts, stops and shows racing on one VM all finish, and it ends in a consistent state", async () => {
    expect(run(["vm", "create", "race", "--image", "tiny", "--driver", "fake"]).code).toBe(0);
    const ops: Promise<Reply>[] = [];
    for (let i = 0; i < 10; i++) {
      ops.push(i % 2 === 0 ? call("POST", "/v1/vms/race/start") : call("POST", "/v1/vms/race/stop", { force: true }));
      ops.push(call("GET", "/v1/vms/race"));
    }
    const replies = await Promise.race([Promise.all(ops), Bun.sleep(60_000).then(() => null)]);
    expect(replies).not.toBeNull();
    for (const r of replies!) {
      expect(r.status).toBe(200);
      expect(r.text).not.toMatch(BUSY);
    }
    const v = run(["vm", "show", "race", "--json"]).json<{ alive: boolean; pid: number; runtime: { state: string } }>();
    if (v.pid) pids.add(v.pid);
    expect(v.alive).toBe(v.runtime.state === "running");
    expect(["running", "stopped"]).toContain(v.runtime.state);
    expect(run(["vm", "delete", "race", "--force"]).code).toBe(0);
  }, 90_000);
});
