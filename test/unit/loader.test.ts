import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { importPluginFile, setupPlugins, type LoaderDeps } from "../../src/core/loader.ts";
import { definePlugin, type BangerPlugin } from "../../src/core/plugin.ts";
import { Providers } from "../../src/core/providers.ts";
import type { VMMDriver } from "../../src/vmm/driver.ts";
import { caught, fakeDriver, fakeHost, fakeProcs, sampleVM, testLogger, recordingOp } from "../helpers/fakes.ts";

// outside the repo, like a user's plugin folder
const dir = mkdtempSync(join(tmpdir(), "banger-plugins-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileNo = 0;
function pluginFile(source: string, ext = "ts"): string {
  const p = join(dir, `plugin-${++fileNo}.${ext}`);
  writeFileSync(p, source);
  return p;
}

function deps(): LoaderDeps & { log: ReturnType<typeof testLogger> } {
  return {
    hooks: new HookEngine(),
    host: fakeHost(),
    paths: { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" },
    log: testLogger(),
    store: { listVMs: () => [], getImage: () => null },
    drivers: new Map<string, VMMDriver>(),
    providers: new Providers(),
  };
}


describe("importPluginFile", () => {
  test("a TypeScript plugin file from outside the repo loads and its hooks run", async () => {
    const path = pluginFile(`
      interface Ctx { hook(name: string, fn: (p: any) => unknown): () => void; log: { info(m: string): void } }
      export default {
        name: "hello",
        description: "says hello",
        setup(ctx: Ctx) {
          ctx.hook("vm:create", ({ vm }) => {
            ctx.log.info("created " + vm.name);
            return () => ctx.log.info("undo " + vm.name);
          });
        },
      };
    `);
    const plugin = await importPluginFile(path);
    expect(plugin.name).toBe("hello");
    const d = deps();
    const loaded = await setupPlugins([{ plugin, source: path }], d);
    expect(loaded).toEqual([{ name: "hello", description: "says hello", source: path, hooks: ["vm:create"], drivers: [], storage: [], nets: [] }]);
    await d.hooks.run("vm:create", { vm: sampleVM({ name: "web" }), progress: () => {}, op: recordingOp() });
    expect(d.log.of("info")).toEqual(["[hello] created web"]);
  });

  test("a plain .mjs plugin and a named `plugin` export also load", async () => {
    const a = await importPluginFile(pluginFile(`export default { name: "js-one", setup() {} };`, "mjs"));
    expect(a.name).toBe("js-one");
    const b = await importPluginFile(pluginFile(`export const plugin = { name: "named", setup() {} };`));
    expect(b.name).toBe("named");
  });

  test("a relative path is resolved", async () => {
    const path = pluginFile(`export default { name: "rel", setup() {} };`);
    const rel = relative(process.cwd(), path);
    expect(rel.startsWith("/")).toBe(false);
    expect((await importPluginFile(rel)).name).toBe("rel");
  });

  test.each([
    ["no default export", `export const x = 1;`],
    ["default is not a plugin", `export default 42;`],
    ["missing setup", `export default { name: "nosetup" };`],
    ["name not a string", `export default { name: 7, setup() {} };`],
  ])("%s → E_PLUGIN naming the path and the expected shape", async (_label, source) => {
    const path = pluginFile(source);
    const err = await caught(importPluginFile(path));
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toContain(path);
    expect(err.message).toContain("export default definePlugin");
  });

  test("a missing file or a syntax error → E_PLUGIN 'cannot load plugin <path>'", async () => {
    const missing = join(dir, "nope.ts");
    const e1 = await caught(importPluginFile(missing));
    expect(e1.code).toBe("E_PLUGIN");
    expect(e1.message).toContain(`cannot load plugin ${missing}`);

    const broken = pluginFile(`export default { name: "x", setup( {`);
    const e2 = await caught(importPluginFile(broken));
    expect(e2.code).toBe("E_PLUGIN");
    expect(e2.message).toContain(`cannot load plugin ${broken}`);
    // what the build said and where, not only how many errors it found
    expect(e2.message).toMatch(/: .+ \(line \d+:\d+: .*\)/);
  });

  test("a plugin that throws at import time → E_PLUGIN naming the path", async () => {
    const path = pluginFile(`throw new Error("import-time boom"); export default {};`);
    const err = await caught(importPluginFile(path));
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toContain(path);
    expect(err.message).toContain("import-time boom");
  });
});

describe("setupPlugins", () => {
  const noop = (name: string): BangerPlugin => definePlugin({ name, setup() {} });

  test("plugins set up in order (built-ins first) and their hooks run in that order", async () => {
    const d = deps();
    const seen: string[] = [];
    const mk = (name: string) =>
      definePlugin({
        name,
        setup(ctx) {
          seen.push(`setup ${name}`);
          ctx.hook("vm:delete", () => void seen.push(`hook ${name}`));
        },
      });
    await setupPlugins(
      [
        { plugin: mk("builtin-net"), source: "builtin" },
        { plugin: mk("builtin-storage"), source: "builtin" },
        { plugin: mk("user"), source: "/home/u/p.ts" },
      ],
      d,
    );
    await d.hooks.run("vm:delete", { vm: sampleVM() });
    expect(seen).toEqual(["setup builtin-net", "setup builtin-storage", "setup user", "hook builtin-net", "hook builtin-storage", "hook user"]);
  });

  test("a built-in's errors reach the user as it wrote them (but internal ones); a user's plugin is named in its own", async () => {
    const failWith = (name: string, e: () => Error) => definePlugin({ name, setup: (ctx) => void ctx.hook("vm:delete", () => Promise.reject(e())) });
    const message = async (p: BangerPlugin, source: string) => {
      const d = deps();
      await setupPlugins([{ plugin: p, source }], d);
      return (await caught(d.hooks.run("vm:delete", { vm: sampleVM() }))).message;
    };
    expect(await message(failWith("image", () => new BangerError("E_STATE", "run step 1 failed")), "builtin")).toBe("run step 1 failed");
    expect(await message(failWith("image", () => new BangerError("E_INTERNAL", "lost a file")), "builtin")).toBe("image:vm:delete: lost a file");
    expect(await message(failWith("image", () => new Error("plain")), "builtin")).toBe("image:vm:delete: plain");
    expect(await message(failWith("mine", () => new BangerError("E_STATE", "run step 1 failed")), "/home/u/p.ts")).toBe("mine:vm:delete: run step 1 failed");
  });

  test("duplicate plugin names are rejected, naming the second source", async () => {
    const err = await caught(
      setupPlugins(
        [
          { plugin: noop("dup"), source: "builtin" },
          { plugin: noop("dup"), source: "/tmp/mine.ts" },
        ],
        deps(),
      ),
    );
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toContain('"dup"');
    expect(err.message).toContain("/tmp/mine.ts");
  });

  test("a setup throw → E_PLUGIN naming the plugin", async () => {
    const bad = definePlugin({
      name: "explodes",
      setup() {
        throw new Error("missing config key");
      },
    });
    const err = await caught(setupPlugins([{ plugin: bad, source: "x" }], deps()));
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toBe("explodes: setup failed: missing config key");
  });

  test("an async setup rejection is attributed too", async () => {
    const bad = definePlugin({
      name: "async-bad",
      async setup() {
        await Bun.sleep(1);
        throw new Error("late");
      },
    });
    expect((await caught(setupPlugins([{ plugin: bad, source: "x" }], deps()))).message).toBe("async-bad: setup failed: late");
  });

  test("registering an unknown hook fails setup with E_PLUGIN naming plugin and hook", async () => {
    const bad = definePlugin({
      name: "typo",
      setup(ctx) {
        ctx.hook("vm:strat" as "vm:delete", () => {});
      },
    });
    const err = await caught(setupPlugins([{ plugin: bad, source: "x" }], deps()));
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toContain("typo");
    expect(err.message).toContain("vm:strat");
  });

  test("registerDriver adds a driver; a second driver with the same name is rejected", async () => {
    const d = deps();
    const procs = fakeProcs();
    const loaded = await setupPlugins(
      [{ plugin: definePlugin({ name: "vmm", setup: (ctx) => ctx.registerDriver(fakeDriver(procs)) }), source: "builtin" }],
      d,
    );
    expect(loaded[0]!.drivers).toEqual(["fake"]);
    expect(d.drivers.has("fake")).toBe(true);
    const err = await caught(
      setupPlugins([{ plugin: definePlugin({ name: "vmm2", setup: (ctx) => ctx.registerDriver(fakeDriver(procs)) }), source: "user" }], d),
    );
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toContain("vmm2");
    expect(err.message).toContain('"fake"');
  });

  test("registerStorage / registerNet: listed by plugin, their hooks scoped to the VMs that chose them; a name taken twice or a bad name is refused", async () => {
    const d = deps();
    const seen: string[] = [];
    const loaded = await setupPlugins(
      [
        {
          plugin: definePlugin({
            name: "mine",
            setup(ctx) {
              ctx.registerStorage({ name: "zfs", priority: 5 }).hook("vm:delete", ({ vm }) => void seen.push(`zfs ${vm.name}`));
              ctx.registerNet({ name: "wg", drivers: ["qemu"] }).hook("vm:delete", ({ vm }) => void seen.push(`wg ${vm.name}`));
            },
          }),
          source: "user",
        },
      ],
      d,
    );
    expect(loaded[0]).toMatchObject({ storage: ["zfs"], nets: ["wg"], hooks: ["vm:delete", "vm:delete"] });
    expect([d.providers.names("storage"), d.providers.names("net"), d.providers.netsFor("qemu", undefined), d.providers.netsFor("fake", undefined)]).toEqual([["zfs"], ["wg"], ["wg"], []]);
    await d.hooks.run("vm:delete", { vm: sampleVM({ name: "a", storage: "zfs", net: "user" }) });
    await d.hooks.run("vm:delete", { vm: sampleVM({ name: "b", storage: "copy", net: "wg" }) });
    expect(seen).toEqual(["zfs a", "wg b"]);
    const again = await caught(setupPlugins([{ plugin: definePlugin({ name: "copycat", setup: (ctx) => void ctx.registerStorage({ name: "zfs" }) }), source: "user" }], d));
    expect([again.code, again.message]).toEqual(["E_PLUGIN", 'copycat: storage provider "zfs" is already registered by mine']);
    const bad = await caught(setupPlugins([{ plugin: definePlugin({ name: "odd", setup: (ctx) => void ctx.registerNet({ name: "Bad Name" }) }), source: "user" }], d));
    expect(bad.message).toBe('odd: bad net provider name "Bad Name": 1-32 of [a-z0-9_-]');
  });

  test("ctx exposes host, paths, store and a prefixed logger; ctx.hook returns an unregister fn", async () => {
    const d = deps();
    let off: (() => void) | null = null;
    await setupPlugins(
      [
        {
          plugin: definePlugin({
            name: "inspect",
            setup(ctx) {
              expect(ctx.name).toBe("inspect");
              expect(ctx.host).toBe(d.host);
              expect(ctx.paths.vmsDir).toBe("/state/vms");
              expect(ctx.store.listVMs()).toEqual([]);
              ctx.log.warn("careful");
              off = ctx.hook("vm:delete", () => {});
            },
          }),
          source: "x",
        },
      ],
      d,
    );
    expect(d.log.of("warn")).toEqual(["[inspect] careful"]);
    expect(d.hooks.count("vm:delete")).toBe(1);
    off!();
    expect(d.hooks.count("vm:delete")).toBe(0);
  });
});
