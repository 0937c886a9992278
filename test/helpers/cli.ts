import { mkdtempSync, rmSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { anyThreadRunning } from "../../src/host/procs.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BANGER = join(ROOT, "dist/banger");
export const FAKE_PLUGIN = join(ROOT, "test/fixtures/fake-vmm-plugin.ts");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  json<T = any>(): T;
}

/** A throwaway BANGER_HOME with helpers to drive dist/banger in it, and cleanup that kills what it started by pid. */
/** A throwaway BANGER_HOME; `wrap` runs every CLI call (and so the daemon it starts) under a command, e.g. `ip netns exec NS`. */
export function tempHome(prefix = "banger-it-", o: { wrap?: string[] } = {}) {
  const home = mkdtempSync(join(tmpdir(), prefix));
  const env: Record<string, string> = { ...(process.env as Record<string, string>), BANGER_HOME: home, NO_COLOR: "1", BANGER_TAP_NETNS_ONLY: "1", BANGER_AUTO_WARM: "0" };
  // BANGER_AUTO_WARM=0 above: a background template after each test's first boot would slow every test; the auto-warm test turns it on
  delete env.BANGER_PLUGINS;
  const run = (args: string[], extraEnv: Record<string, string> = {}, input?: string): RunResult => {
    const p = Bun.spawnSync([...(o.wrap ?? []), BANGER, ...args], { env: { ...env, ...extraEnv }, stdin: input !== undefined ? new TextEncoder().encode(input) : "ignore" });
    const stdout = p.stdout.toString();
    return {
      code: p.exitCode ?? -1,
      stdout,
      stderr: p.stderr.toString(),
      json: () => JSON.parse(stdout),
    };
  };
  const daemonPid = (): number => {
    const f = join(home, "daemon.pid");
    return existsSync(f) ? Number(readFileSync(f, "utf8").trim()) : 0;
  };
  return {
    home,
    env,
    run,
    daemonPid,
    /** Kill the daemon and every VM process recorded under this home, by pid only. */
    async cleanup(vmPids: number[] = []) {
      const pid = daemonPid();
      if (pid) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      for (const p of vmPids) {
        try {
          process.kill(p, "SIGKILL");
        } catch {}
      }
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Is the process alive: any thread still running (see anyThreadRunning: a killed process's zombie main thread is not the end of it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return anyThreadRunning(pid);
}

/**
 * SIGKILL a daemon and wait until it is gone. Between the signal and its death the kernel
 * still accepts connections on the daemon's socket, so a CLI call made at once can reach the
 * dying daemon and get "the daemon stopped while handling this request" instead of a new one.
 */
export function killAndWait(pid: number, timeoutMs = 5000): void {
  if (!pid || !alive(pid)) return;
  process.kill(pid, "SIGKILL");
  const end = performance.now() + timeoutMs;
  while (alive(pid)) {
    if (performance.now() > end) throw new Error(`pid ${pid} still running ${timeoutMs} ms after SIGKILL`);
    Bun.sleepSync(5);
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(stepMs);
  }
  return cond();
}
