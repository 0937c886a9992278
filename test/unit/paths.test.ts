import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { daemonPaths, daemonSocket, joinPath, resolveHome } from "../../src/shared/paths.ts";

describe("paths", () => {
  test("joinPath answers as node:path's join", () => {
    const cases: string[][] = [
      ["/tmp/h", "bangerd.sock"],
      ["/tmp/h/", "bangerd.sock"],
      ["/tmp//h///", "x", "y"],
      ["./h", "bangerd.sock"],
      ["h/./a/../b", "c"],
      ["../a", "../../b"],
      ["/..", "x"],
      ["/a/b", ".."],
      ["a", ".."],
      ["", ""],
      ["", "x"],
      ["/"],
      ["a/", ""],
      ["a", "b/"],
      ["/a", "./"],
      ["~/x", ".local", "state"],
      [".", "."],
      ["a/b/../../.."],
    ];
    for (const c of cases) expect([c, joinPath(...c)]).toEqual([c, join(...c)]);
  });

  test("daemonSocket is join's socket path, by its short way or join's", () => {
    const homes = ["/tmp/h", "/tmp/h/", "/tmp//h", "/tmp/./h", "/tmp/../h", "/tmp/h/.", "/tmp/h/..", "/", "h", "./h", "", "/a b/'$(x)'/é", "/x.y/..z/.w"];
    for (const home of homes) expect([home, daemonSocket(home)]).toEqual([home, join(home, "bangerd.sock")]);
    for (const home of homes) expect(daemonPaths(home).socket).toBe(daemonSocket(home));
  });

  test("the daemon's paths hang off the home", () => {
    expect(daemonPaths("/tmp/h/").socket).toBe("/tmp/h/bangerd.sock");
    expect(resolveHome({ BANGER_HOME: "/x" })).toBe("/x");
    expect(resolveHome({ XDG_STATE_HOME: "/s" })).toBe("/s/banger");
    expect(resolveHome({ HOME: "/home/u" })).toBe("/home/u/.local/state/banger");
  });
});
