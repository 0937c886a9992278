// What the CLI can load, read from the sources' imports (Bun's own scanner: type-only
// imports are gone, as in the bundle). The daemon and its libraries (src/daemon/e2b:
// Connect, protobuf) are for `banger daemon` only; `vm list` (bench row P1) loads no
// npm package at all. .dependency-cruiser.cjs states the same for `npm run lint`.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const scanner = new Bun.Transpiler({ loader: "ts" });

interface Edge {
  kind: "static" | "dynamic" | "require";
  /** a repo-relative .ts file, or a package / builtin name */
  to: string;
}

function edgesOf(file: string): Edge[] {
  return scanner.scanImports(readFileSync(join(ROOT, file), "utf8")).flatMap((i): Edge[] => {
    const kind = i.kind === "dynamic-import" ? "dynamic" : i.kind === "require-call" || i.kind === "require-resolve" ? "require" : "static";
    if (!i.path.startsWith(".")) return [{ kind, to: i.path }];
    const abs = resolve(dirname(join(ROOT, file)), i.path);
    if (!abs.endsWith(".ts")) return []; // package.json and other data
    if (!existsSync(abs)) throw new Error(`${file}: ${i.path} does not exist`);
    return [{ kind, to: relative(ROOT, abs) }];
  });
}

/** Every file and package reachable from `start` along the edges `follow` accepts. */
function closure(start: string[], follow: (from: string, e: Edge) => boolean): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [...start];
  while (todo.length) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    for (const e of edgesOf(f)) {
      if (!follow(f, e)) continue;
      if (e.to.endsWith(".ts")) todo.push(e.to);
      else packages.add(e.to);
    }
  }
  return { files, packages };
}

const isDaemon = (p: string) => p.startsWith("src/daemon/");
const npm = (pkgs: Set<string>) => [...pkgs].filter((p) => !p.startsWith("node:") && !p.startsWith("bun:") && !builtinModules.includes(p));

describe("the CLI's import graph", () => {
  test("no command but `banger daemon` can load the daemon, Connect or protobuf; that one only by import()", () => {
    const daemonEdges: Edge[] = [];
    const all = closure(["src/cli/entry.ts"], (from, e) => {
      if (!isDaemon(e.to)) return true;
      if (from === "src/cli/daemon.ts") {
        daemonEdges.push(e);
        return false; // `banger daemon`: the daemon's own graph, loaded by that command alone
      }
      return true; // anything else reaching the daemon is what this test is for: follow it, so it shows below
    });
    expect([...all.files].filter(isDaemon)).toEqual([]);
    expect(npm(all.packages).filter((p) => /^@(connectrpc|bufbuild)\//.test(p) || p === "e2b")).toEqual([]);
    expect(daemonEdges).toEqual([{ kind: "dynamic", to: "src/daemon/main.ts" }]);
    // the walk sees the CLI's lazy commands too (a walk that saw nothing would pass anything)
    expect(all.files.has("src/cli/session.ts")).toBe(true);
    expect(npm(all.packages)).toContain("ssh2");
  });

  test("what every command loads before it runs (entry.ts's static imports) is the early read's lean modules, no more", () => {
    // each function of a module loaded at start costs start-up whether or not it runs (P1 in bench/results.md):
    // a new static import here (errors.ts, paths.ts, config.ts, stdio.ts…) is a slower `vm list --json`
    const first = closure(["src/cli/entry.ts"], (_from, e) => e.kind === "static");
    expect([...first.files].sort()).toEqual([
      "src/cli/early-reads.ts",
      "src/cli/entry.ts",
      "src/cli/json-out.ts",
      "src/client/early.ts",
      "src/host/environ.ts",
      "src/host/line.ts",
      "src/host/owner-uid.ts",
      "src/host/profile.ts",
      "src/host/unix-get.ts",
      "src/shared/home.ts",
      "src/version.ts",
    ]);
    expect([...first.packages]).toEqual([]);
  });

  test("`vm list` loads no npm package: only the modules its path imports, and their static imports", () => {
    // the import()s `banger vm list` takes: the command tree, the vm commands (the early read is a static import of entry.ts)
    const taken = new Set(["src/cli/entry.ts>src/cli/main.ts", "src/cli/main.ts>src/cli/vm.ts"]);
    const hot = closure(["src/cli/entry.ts"], (from, e) => e.kind === "static" || (e.kind === "dynamic" && taken.has(`${from}>${e.to}`)));
    for (const f of taken) expect(hot.files.has(f.split(">")[1]!)).toBe(true);
    expect(hot.files.has("src/client/daemon-client.ts")).toBe(true);
    expect(hot.files.has("src/client/early.ts")).toBe(true);
    // a require() inside a function (consola for messages, node:fs for a TTY check) runs only when called: not followed;
    // no node builtin either (node:fs alone costs ~1 ms: src/host/stdio.ts)
    expect([...hot.packages]).toEqual([]);
  });
});
