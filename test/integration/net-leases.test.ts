import { afterEach, describe, expect, test } from "bun:test";
import { rawDb } from "../helpers/fakes.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { MIGRATIONS, migrate } from "../../src/store/migrations.ts";
import { Store } from "../../src/store/store.ts";
import { createLeaseStore } from "../../src/store/leases.ts";
import { sampleVM } from "../helpers/fakes.ts";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});
function dbPath(): string {
  const d = mkdtempSync(join(tmpdir(), "banger-leases-"));
  dirs.push(d);
  return join(d, "banger.db");
}

describe("guest IP leases on a real SQLite file", () => {
  test("8 processes x 12 concurrent allocations: 96 distinct addresses, one per VM", async () => {
    const path = dbPath();
    new Store(path).close(); // migrate once so the workers race on leases, not on schema
    const worker = join(import.meta.dir, "../fixtures/lease-worker.ts");
    const startAt = Date.now() + 1500;
    const procs = Array.from({ length: 8 }, (_, w) =>
      Bun.spawn([process.execPath, worker, path, String(w), "12", String(startAt)], { stdout: "pipe", stderr: "pipe" }),
    );
    const results = await Promise.all(
      procs.map(async (p) => {
        const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
        if (code !== 0) throw new Error(`worker exited ${code}: ${err}`);
        return JSON.parse(out) as string[];
      }),
    );
    const all = results.flat();
    expect(all.length).toBe(96);
    expect(new Set(all).size).toBe(96);
    const store = new Store(path);
    const rows = store.leases.list("net-tap");
    expect(rows.length).toBe(96);
    expect(new Set(rows.map((r) => r.vmId)).size).toBe(96);
    store.close();
  });

  test("the table itself refuses a second VM on the same address and a second address for one VM", () => {
    const store = new Store(dbPath());
    for (const id of ["a", "b"]) store.upsertVM(sampleVM({ id, name: id }));
    const ins = (vm: string, ip: string) => rawDb(store).query(`INSERT INTO leases (pool, value, vm_id, created_at) VALUES ('net-tap', ?, ?, 'now')`).run(ip, vm);
    ins("a", "10.213.0.2");
    expect(() => ins("b", "10.213.0.2")).toThrow(/UNIQUE/);
    expect(() => ins("a", "10.213.0.3")).toThrow(/UNIQUE/);
    // same address in another pool is fine
    rawDb(store).query(`INSERT INTO leases (pool, value, vm_id, created_at) VALUES ('other', '10.213.0.2', 'b', 'now')`).run();
    store.close();
  });

  test("a lease is idempotent per VM and goes with the VM's row (ON DELETE CASCADE)", () => {
    const store = new Store(dbPath());
    const leases = store.leases;
    store.upsertVM(sampleVM({ id: "a", name: "a" }));
    expect(leases.lease("p", "a", ["x", "y"])).toBe("x");
    expect(leases.lease("p", "a", ["y"])).toBe("x");
    store.deleteVM("a");
    expect(leases.list("p")).toEqual([]);
    store.close();
  });

  test("two tap VMs share port 22 on different hosts; the same host:port twice is still a conflict", () => {
    const store = new Store(dbPath());
    const a = sampleVM({ id: "a", name: "a", sshPort: 22 });
    a.runtime.sshHost = "10.213.0.2";
    const b = sampleVM({ id: "b", name: "b", sshPort: 22 });
    b.runtime.sshHost = "10.213.0.3";
    store.upsertVM(a);
    store.upsertVM(b);
    const c = sampleVM({ id: "c", name: "c", sshPort: 22 });
    c.runtime.sshHost = "10.213.0.3";
    expect(() => store.upsertVM(c)).toThrow("already belongs to another vm");
    store.close();
  });

  test("a version-3 database upgrades: VMs become net=user, their forwarded ports stay unique", () => {
    const path = dbPath();
    const old = new Database(path);
    migrate(old, MIGRATIONS.filter((m) => m.version <= 3));
    old.run(`INSERT INTO vms (id, name, image, cpus, memory_mib, driver, state, ssh_host, ssh_port, created_at, updated_at)
      VALUES ('a', 'a', 'default', 1, 256, 'qemu', 'stopped', '127.0.0.1', 20100, 'then', 'then')`);
    old.close();
    const store = new Store(path);
    const a = store.getVM("a")!;
    expect(a.spec.net).toBe("user");
    expect(a.runtime.sshPort).toBe(20100);
    const b = sampleVM({ id: "b", name: "b", sshPort: 20100 });
    b.runtime.sshHost = "127.0.0.1";
    expect(() => store.upsertVM(b)).toThrow("already belongs to another vm");
    store.close();
  });
});
