// Shell completion through dist/banger: the scripts parse, the bash function
// driven with COMP_WORDS gives the CLI's own subcommands and options, and
// names come from a running daemon (a fake-guest VM here) — never from a
// daemon the completion would have to start.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BANGER, tempHome } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { guestLogin } from "../helpers/sshd.ts";

const has = (tool: string) => Bun.spawnSync(["sh", "-c", `command -v ${tool}`]).exitCode === 0;

/** COMPREPLY of the bash completion function for `banger WORDS…` (the last word is the one being completed). */
function bashComplete(script: string, words: string[], env: Record<string, string>): string[] {
  const driver = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _banger; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const p = Bun.spawnSync(["bash", "-c", driver, "drive", script, BANGER, ...words], { env });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return p.stdout.toString().split("\n").filter(Boolean);
}

describe("completion scripts", () => {
  const h = tempHome("banger-compl-");
  const script = join(h.home, "banger.bash");
  beforeAll(() => {
    const r = h.run(["completion", "bash"]);
    expect(r.code).toBe(0);
    writeFileSync(script, r.stdout);
  });
  afterAll(() => h.cleanup());

  test("bash: valid (bash -n, shellcheck); zsh and fish print scripts naming __complete; an unknown shell is exit 2", () => {
    expect(Bun.spawnSync(["bash", "-n", script]).exitCode).toBe(0);
    if (has("shellcheck")) {
      const sc = Bun.spawnSync(["shellcheck", "-s", "bash", script]);
      expect(sc.stdout.toString()).toBe("");
      expect(sc.exitCode).toBe(0);
    }
    for (const shell of ["zsh", "fish"]) {
      const r = h.run(["completion", shell]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("__complete");
      if (has(shell)) expect(Bun.spawnSync([shell, "-n", "-c", r.stdout]).exitCode).toBe(0);
    }
    const bad = h.run(["completion", "tcsh"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('banger: unknown shell "tcsh": use bash, zsh or fish\n');
  });

  test("with no daemon: subcommands, options and fixed values from the command definitions; no names, no daemon started, fast", () => {
    const env = h.env;
    expect(bashComplete(script, ["v"], env)).toEqual(["version", "vm"]);
    expect(bashComplete(script, ["vm", "ex"], env)).toEqual(["exec"]);
    expect(bashComplete(script, ["vm", "exec", "box", "--t"], env)).toEqual(["--timeout"]);
    expect(bashComplete(script, ["vm", "exec", "box", "-"], env)).toEqual(expect.arrayContaining(["-e", "--env", "--env-file", "-w", "--cwd", "-u", "--user", "--timeout", "--stdin", "--json", "--help"]));
    expect(bashComplete(script, ["session", "start", "box", "--e"], env)).toEqual(["--env", "--env-file"]);
    expect(bashComplete(script, ["vm", "create", "x", "--vmm", ""], env)).toEqual(["firecracker", "qemu"]);
    expect(bashComplete(script, ["session", "start", "box", "--stdin", "c"], env)).toEqual(["closed"]);
    expect(bashComplete(script, ["vm", "exec", "box", "--", "l"], env)).toEqual([]); // the guest command: left to the shell
    const t0 = performance.now();
    expect(bashComplete(script, ["vm", "exec", ""], env)).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(existsSync(join(h.home, "bangerd.sock"))).toBe(false);
    expect(existsSync(join(h.home, "daemon.pid"))).toBe(false);
  });
});

describe("names from a running daemon", () => {
  const g = fakeGuestVM("banger-compl-names-", "box");
  const script = join(g.scratch, "banger.bash");
  beforeAll(async () => {
    await g.start();
    writeFileSync(script, g.run(["completion", "bash"]).stdout);
  }, 30_000);
  afterAll(() => g.cleanup());

  guestLogin.test("VM, session and image names where the command takes them", () => {
    const env = { ...g.h.env, ...g.env };
    expect(g.run(["session", "start", "box", "--name", "agent", "--", "sleep", "60"]).code).toBe(0);
    expect(bashComplete(script, ["vm", "exec", ""], env)).toEqual(["box"]);
    expect(bashComplete(script, ["vm", "show", "b"], env)).toEqual(["box"]);
    expect(bashComplete(script, ["vm", "run", "--name", ""], env)).toEqual(["box"]);
    expect(bashComplete(script, ["vm", "create", ""], env)).toEqual([]); // a new name
    expect(bashComplete(script, ["session", "logs", ""], env)).toEqual(["box"]);
    expect(bashComplete(script, ["session", "logs", "box", ""], env)).toEqual(["agent"]);
    expect(bashComplete(script, ["image", "show", ""], env)).toEqual(["tiny"]);
    expect(bashComplete(script, ["vm", "run", "--image", "t"], env)).toEqual(["tiny"]);
    expect(bashComplete(script, ["vm", "exec", "nomatch"], env)).toEqual([]);
  });
});
