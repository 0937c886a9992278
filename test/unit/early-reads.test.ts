import { describe, expect, test } from "bun:test";
import { EARLY_READS, earlyRead } from "../../src/cli/early-reads.ts";
import { main } from "../../src/cli/main.ts";
import { requestPath, routes } from "../../src/shared/routes.ts";
import { sendEarly, takeEarly } from "../../src/client/early.ts";
import { withEnv } from "../helpers/env.ts";

type Cmd = { args?: unknown; subCommands?: unknown; run?: unknown };
const resolve = async (v: unknown): Promise<any> => (typeof v === "function" ? await (v as () => unknown)() : v);

describe("early reads", () => {
  test("the command line names a list and only output flags", () => {
    expect(earlyRead(["vm", "list"])).toEqual({ route: "vmList", path: "/v1/vms", key: "vms" });
    expect(earlyRead(["vm", "list", "--json"])?.route).toBe("vmList");
    expect(earlyRead(["--quiet", "image", "list", "--json", "--verbose"])?.route).toBe("imageList");
    expect(earlyRead(["plugin", "list"])?.route).toBe("pluginList");
    for (const argv of [[], ["--version"], ["vm"], ["vm", "list", "--help"], ["vm", "list", "-h"], ["vm", "list", "x"], ["vm", "show", "list"], ["list", "vm"], ["vm", "list", "--json=1"], ["vm", "list", "--", "x"], ["vm", "lists"], ["", "vm", "list"], ["vm", "", "list"], ["vm", "list", ""], ["constructor"], ["toString"], ["__proto__"], ["vm list"]]) {
      expect(earlyRead(argv)).toBeNull();
    }
  });

  test("each is a parameterless GET, and its command exists and takes no flag but --json", async () => {
    for (const [words, { route: name, path }] of Object.entries(EARLY_READS)) {
      const def = routes[name];
      expect(def.method).toBe("GET");
      expect(def.path).not.toContain(":");
      expect(path).toBe(requestPath(def, {}));
      let cmd: Cmd = main as Cmd;
      for (const w of words.split(" ")) cmd = await resolve(((await resolve(cmd.subCommands)) as Record<string, unknown>)[w]);
      expect(typeof cmd.run).toBe("function");
      expect(Object.keys((await resolve(cmd.args)) ?? {})).toEqual(["json"]);
    }
  });

  test.each([true, false])("taken once, and only for the same socket, method and path (alone: %p)", async (alone) => {
    // a socket nobody listens on: the answer is a rejection, awaited here so it is not left unhandled
    const home = `/tmp/banger-early-unit-${process.pid}`;
    withEnv({ BANGER_HOME: home }, () => sendEarly("/v1/vms", alone));
    const sock = `${home}/bangerd.sock`;
    expect(takeEarly(sock, "GET", "/v1/images")).toBeNull();
    expect(takeEarly("/elsewhere.sock", "GET", "/v1/vms")).toBeNull();
    const e = takeEarly(sock, "GET", "/v1/vms");
    expect(e).not.toBeNull();
    expect(takeEarly(sock, "GET", "/v1/vms")).toBeNull();
    // no daemon: the code DaemonClient takes for "start one", whichever way the read went
    await expect(e!.res).rejects.toMatchObject({ code: alone ? "ENOENT" : expect.any(String) });
    expect(await e!.owner).toBeNull(); // no socket: no owner to refuse (DaemonClient starts the daemon)
  });

  test("only a route's path without parameters may go early", () => {
    expect(() => sendEarly("/v1/vms/:vm", true)).toThrow(/without parameters/);
    expect(() => sendEarly("/v1/vms?x=1", true)).toThrow(/without parameters/);
    expect(() => sendEarly("http://elsewhere/v1/vms", true)).toThrow(/without parameters/);
  });
});
