// A Bun-compiled binary would load .env and bunfig.toml from the current
// directory by default: a user's project files must not steer banger.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BANGER } from "../helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-cwd-"));
const home = join(dir, "home");
const leak = join(dir, "from-dotenv");
const defaultHome = join(dir, "user", ".local", "state", "banger");

afterAll(() => {
  for (const h of [home, leak, defaultHome]) {
    const pidFile = join(h, "daemon.pid");
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL");
      } catch {}
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

test("a .env and bunfig.toml in the current directory are ignored", () => {
  const project = join(dir, "project");
  mkdirSync(project);
  writeFileSync(join(project, ".env"), `BANGER_HOME=${leak}\n`);
  writeFileSync(join(project, "bunfig.toml"), `preload = ["./nope.ts"]\n`);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: "1", HOME: join(dir, "user") };
  delete env.BANGER_HOME;
  delete env.XDG_STATE_HOME;
  const p = Bun.spawnSync([BANGER, "vm", "list", "--json"], { cwd: project, env: { ...env, BANGER_HOME: home }, stdin: "ignore" });
  expect(p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
  expect(existsSync(leak)).toBe(false);
  // and with no BANGER_HOME at all, .env still cannot supply one: the default home is used
  const q = Bun.spawnSync([BANGER, "vm", "list", "--json"], { cwd: project, env, stdin: "ignore" });
  expect(q.exitCode).toBe(0);
  expect(existsSync(leak)).toBe(false);
  expect(existsSync(join(defaultHome, "daemon.pid"))).toBe(true);
});
