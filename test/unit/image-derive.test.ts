import { describe, expect, test } from "bun:test";
import { aptDownloadArgs, deriveImage } from "../../plugins/image/derive.ts";
import { checkRecipe, parseCopy, recipeKey, sizeBytes } from "../../src/shared/image-recipe.ts";
import { caught, fakeExec, fakeFS, sampleImage } from "../helpers/fakes.ts";

describe("checkRecipe", () => {
  test("fills defaults: base default, empty lists", () => {
    expect(checkRecipe({ name: "tools", packages: ["jq"] })).toEqual({ name: "tools", from: "default", packages: ["jq"], run: [], copy: [], env: {}, size: "" });
  });

  test("refuses bad input with the field in the message", async () => {
    const bad: [object, string][] = [
      [{ name: "Tools", run: ["true"] }, "invalid image name"],
      [{ name: "t", from: "x y", run: ["true"] }, "invalid base image name"],
      [{ name: "t", packages: ["jq; rm -rf /"] }, "invalid package name"],
      [{ name: "t", packages: ["-o"] }, "invalid package name"],
      [{ name: "t", run: [" "] }, "a run step is empty"],
      [{ name: "t", copy: [{ host: "rel", guest: "/x" }] }, "absolute host path"],
      [{ name: "t", copy: [{ host: "/a", guest: "/x/../../etc" }] }, "without .."],
      [{ name: "t", env: { "A-B": "1" }, run: ["true"] }, "invalid env name"],
      [{ name: "t", size: "4 G" }, "invalid size"],
      [{ name: "t" }, "needs at least one of"],
      [{ name: "t", from: "t", run: ["true"] }, "from itself"],
    ];
    for (const [r, msg] of bad) {
      let err: unknown;
      try {
        checkRecipe(r as never);
      } catch (e) {
        err = e;
      }
      expect(String((err as Error)?.message)).toContain(msg);
    }
  });

  test("parseCopy splits at the last colon; sizeBytes is binary", () => {
    expect(parseCopy("/a:b/c:/guest")).toEqual({ host: "/a:b/c", guest: "/guest" });
    expect(() => parseCopy("/only")).toThrow("HOST:GUEST");
    expect(sizeBytes("4G")).toBe(4 * 2 ** 30);
    expect(sizeBytes("512")).toBe(512);
  });

  test("the cache key changes with the base, the copied content and every step, not with env order", () => {
    const r = checkRecipe({ name: "t", run: ["a", "b"], env: { A: "1", B: "2" } });
    const k = recipeKey(r, "base@1", "c1", 1);
    expect(recipeKey(checkRecipe({ name: "t", run: ["a", "b"], env: { B: "2", A: "1" } }), "base@1", "c1", 1)).toBe(k);
    expect(recipeKey(r, "base@2", "c1", 1)).not.toBe(k);
    expect(recipeKey(r, "base@1", "c2", 1)).not.toBe(k);
    expect(recipeKey(checkRecipe({ name: "t", run: ["b", "a"], env: { A: "1", B: "2" } }), "base@1", "c1", 1)).not.toBe(k);
    expect(recipeKey(r, "base@1", "c1", 2)).not.toBe(k);
  });
});

describe("deriveImage", () => {
  test("apt resolves against the image's own dpkg status; packages come after --", () => {
    const a = aptDownloadArgs("/w/status", "/w/debs", ["jq", "make"]);
    expect(a).toContain("Dir::State::status=/w/status");
    expect(a).toContain("Dir::Cache::archives=/w/debs");
    expect(a.slice(a.indexOf("--") + 1)).toEqual(["jq", "make"]);
  });

  test("an unknown package: apt's own line, nothing run in the chroot, the work dir removed", async () => {
    const exec = fakeExec();
    const fs = fakeFS();
    exec.on("debugfs", (_c, args) => {
      void fs.writeFile(args[1]!.split(" ")[2]!, "Package: bash\n");
      return {};
    });
    exec.on("apt-get", { exitCode: 100, stdout: "Reading package lists...\n", stderr: "E: Unable to locate package nosuchpkg\n" });
    const err = await caught(
      deriveImage({ recipe: checkRecipe({ name: "t", packages: ["nosuchpkg"] }), base: sampleImage(), dir: "/out", exec, fs, progress: () => {} }),
    );
    expect(err.code).toBe("E_BAD_REQUEST");
    expect(err.message).toBe("packages: E: Unable to locate package nosuchpkg");
    expect(exec.lines().some((l) => l.startsWith("unshare"))).toBe(false);
    expect(await fs.exists("/out/.build")).toBe(false);
  });

  test("the chroot script carries hostile steps and env as bash values, never spliced", async () => {
    const exec = fakeExec();
    const fs = fakeFS();
    const step = "echo 'a' ; $(id) `x`\nnext";
    await deriveImage({ recipe: checkRecipe({ name: "t", run: [step], env: { V: "$(boom)'" } }), base: sampleImage(), dir: "/out", exec, fs, progress: () => {} });
    const run = exec.runs.find((r) => r.cmd === "unshare")!;
    expect(run.args.slice(0, 5)).toEqual(["--mount", "--pid", "--fork", "--propagation", "private"]);
    const script = run.args[run.args.length - 1]!;
    // what bash makes of the prelude is exactly the values given
    const prelude = script.slice(0, script.indexOf("# shellcheck"));
    const p = Bun.spawnSync(["bash", "-c", `${prelude}\nprintf '%s\\0' "\${RUN[@]}" "\${ENV[@]}"`]);
    expect(p.stdout.toString().split("\0").slice(0, 2)).toEqual([step, "V=$(boom)'"]);
  });
});
