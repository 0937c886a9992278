// The early read (src/client/early.ts): a plain list's GET goes out as the CLI
// starts, and the command uses that answer: one request per command, not two.
// With --json, a plain answer is printed before the CLI loads; anything else
// goes through the CLI as ever.
import { afterAll, describe, expect, test } from "bun:test";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BANGER, tempHome } from "../helpers/cli.ts";
import { IS_ROOT, needs } from "../helpers/skip.ts";

const VERSION = Bun.spawnSync([BANGER, "--version"]).stdout.toString().trim().replace(/^banger /, "");
const h = tempHome("banger-early-");
const seen: string[] = [];
let failNext = false;
let bigNext = false;
// more than a pipe holds (64 KiB): the reader drains it while the CLI writes, and exits
const BIG = { vms: Array.from({ length: 2000 }, (_, i) => ({ name: `vm-${i}`, spec: { image: "img", note: "x".repeat(100) } })) };
const ANSWERS: Record<string, unknown> = {
  "/v1/vms": { vms: [] },
  "/v1/images": { images: [{ name: "img-from-fake", source: "import", sizeBytes: 1048576, kernelVersion: "6.1" }] },
  "/v1/plugins": { plugins: [{ name: "plug-from-fake", source: "builtin", hooks: [], drivers: [], storage: [], nets: [] }] },
};
// a stand-in daemon of this build: it answers each list and records what it was asked
const server = Bun.serve({
  unix: join(h.home, "bangerd.sock"),
  fetch(req) {
    const path = new URL(req.url).pathname;
    seen.push(`${req.method} ${path} ${req.headers.get("x-banger-version")}`);
    if (bigNext) {
      bigNext = false;
      return Response.json(BIG, { headers: { "x-banger-version": VERSION } });
    }
    if (failNext) {
      failNext = false;
      return Response.json({ error: { code: "E_DAEMON", message: "store is on fire" } }, { status: 500, headers: { "x-banger-version": VERSION } });
    }
    return Response.json(ANSWERS[path] ?? { error: { code: "E_NOT_FOUND", message: "no" } }, { status: path in ANSWERS ? 200 : 404, headers: { "x-banger-version": VERSION } });
  },
});
afterAll(() => {
  void server.stop(true);
  rmSync(h.home, { recursive: true, force: true });
});

async function cli(args: string[]) {
  // async: the stand-in daemon answers from this process's event loop
  const p = Bun.spawn([BANGER, ...args], { env: h.env, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

describe("a plain list asks the daemon once, as the CLI starts", () => {
  test.each([
    [["vm", "list", "--json"], "/v1/vms", "[]\n"],
    [["image", "list", "--json", "--quiet"], "/v1/images", JSON.stringify((ANSWERS["/v1/images"] as { images: unknown }).images, null, 2) + "\n"],
    [["--verbose", "plugin", "list", "--json"], "/v1/plugins", JSON.stringify((ANSWERS["/v1/plugins"] as { plugins: unknown }).plugins, null, 2) + "\n"],
    [["image", "list"], "/v1/images", `${"img-from-fake".padEnd(16)} ${"import".padEnd(9)} ${"1 MiB".padStart(9)}  6.1\n`],
  ])("%p: one GET %s, its answer printed", async (args, path, out) => {
    seen.length = 0;
    const r = await cli(args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(out);
    expect(seen).toEqual([`GET ${path} ${VERSION}`]);
  });

  test("an error answer goes through the CLI: its message and exit code, still one request", async () => {
    seen.length = 0;
    failNext = true;
    const r = await cli(["vm", "list", "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ error: { code: "E_DAEMON", message: "store is on fire" } });
    expect(r.stderr).toBe("banger: store is on fire\n");
    expect(seen).toEqual([`GET /v1/vms ${VERSION}`]);
  });

  test("a big answer arrives whole", async () => {
    seen.length = 0;
    bigNext = true;
    const r = await cli(["vm", "list", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(200_000);
    expect(r.stdout).toBe(JSON.stringify(BIG.vms, null, 2) + "\n");
    expect(seen.length).toBe(1);
  });

  test("a list with --help asks nothing", async () => {
    seen.length = 0;
    const r = await cli(["vm", "list", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("USAGE");
    expect(seen).toEqual([]);
  });
});

needs(IS_ROOT, "needs root (chowns a socket to another user)").test("another user's socket whose listener never answers: refused at once, nothing printed from it", async () => {
  const home = mkdtempSync(join(tmpdir(), "banger-early-foreign-"));
  const sock = join(home, "bangerd.sock");
  // accepts and stays silent: the early GET reaches it, and must not hold up the refusal
  const listener = Bun.listen({ unix: sock, socket: { data() {} } });
  try {
    chownSync(sock, 65534, 65534);
    for (const args of [["vm", "list", "--json"], ["vm", "list"]]) {
      const t0 = performance.now();
      const p = Bun.spawn([BANGER, ...args], { env: { ...h.env, BANGER_HOME: home }, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      expect(code).toBe(1);
      expect(stderr).toContain(`daemon socket ${sock} belongs to uid 65534`);
      if (args.includes("--json")) expect(JSON.parse(stdout).error.code).toBe("E_DAEMON");
      else expect(stdout).toBe("");
      expect(performance.now() - t0).toBeLessThan(5000);
    }
  } finally {
    listener.stop(true);
    rmSync(home, { recursive: true, force: true });
  }
}, 30_000);
