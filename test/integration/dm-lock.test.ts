/**
 * The storage-dm global lock against another real process: util-linux
 * `flock` (what a script or CLI tool would use) holds BANGER_HOME/dm.lock;
 * our GlobalLock must wait for it, without blocking the event loop.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClock } from "../../src/host/clock.ts";
import { createFileLocks } from "../../src/host/flock.ts";
import { GlobalLock } from "../../plugins/storage-dm/lock.ts";

const dirs: string[] = [];
const pids: number[] = [];
afterEach(() => {
  for (const p of pids.splice(0)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {}
  }
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

test("a lock held by another process is waited for; the event loop keeps running meanwhile", async () => {
  const dir = mkdtempSync(join(tmpdir(), "banger-dmlock-"));
  dirs.push(dir);
  const path = join(dir, "dm.lock");
  const child = Bun.spawn(["flock", "-x", path, "-c", "sleep 0.6"], { stdout: "ignore", stderr: "ignore" });
  pids.push(child.pid);
  const locks = createFileLocks();
  // wait until the child really holds it
  for (let i = 0; i < 100; i++) {
    const r = locks.tryLock(path);
    if (!r) break;
    r();
    await Bun.sleep(10);
  }
  expect(locks.tryLock(path)).toBeNull();

  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const lock = new GlobalLock({ locks, clock: createClock(), path, pollMs: 25 });
  let childDoneFirst = false;
  const t0 = performance.now();
  await lock.run(async () => {
    childDoneFirst = child.exitCode !== null || (await Promise.race([child.exited.then(() => true), Bun.sleep(50).then(() => false)]));
  });
  const waited = performance.now() - t0;
  clearInterval(timer);
  expect(childDoneFirst).toBe(true);
  expect(waited).toBeGreaterThan(300);
  expect(ticks).toBeGreaterThan(5); // not frozen in a blocking flock(2)
  // released afterwards
  const again = locks.tryLock(path);
  expect(again).not.toBeNull();
  again!();
});
