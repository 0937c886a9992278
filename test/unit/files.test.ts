// The pure parts of files and `vm cp`: reading `VM:PATH`, taking paths
// apart (docker cp's trailing slash and DIR/.), the scripts' record formats
// (NUL-separated, split across chunks anywhere), the staged-path check a
// commit relies on, and the one-line errors.
import { describe, expect, test } from "bun:test";
import { guestPath, parseCpEnd, splitPath } from "../../src/files/paths.ts";
import { EXIT, archiveScript, extractScript, parseInfo, placeLabel, scriptError, stagedPath, watchParser, writeScript } from "../../src/files/scripts.ts";
import type { FileEvent } from "../../src/shared/api.ts";
import { shellQuote } from "../../src/shared/quote.ts";

describe("parseCpEnd", () => {
  test("a colon before any slash names a VM; ./a:b, /a:b and - are host paths", () => {
    expect(parseCpEnd("box:/root/x")).toEqual({ vm: "box", path: "/root/x" });
    expect(parseCpEnd("box:")).toEqual({ vm: "box", path: "" });
    expect(parseCpEnd("/tmp/a:b")).toEqual({ vm: null, path: "/tmp/a:b" });
    expect(parseCpEnd("./a:b")).toEqual({ vm: null, path: "./a:b" });
    expect(parseCpEnd("-")).toEqual({ vm: null, path: "-" });
    expect(parseCpEnd("box:/a\nb")).toEqual({ vm: "box", path: "/a\nb" });
  });
});

describe("splitPath", () => {
  test("trailing slash and DIR/. are remembered; the path is normalized", () => {
    expect(splitPath("/root/d/", "guest")).toEqual({ path: "/root/d", parent: "/root", name: "d", slash: true, contents: false });
    expect(splitPath("/root/d/.", "guest")).toEqual({ path: "/root/d", parent: "/root", name: "d", slash: true, contents: true });
    expect(splitPath("/root//x/../y", "guest")).toMatchObject({ path: "/root/y", name: "y", slash: false });
    expect(splitPath("rel/f", "host", "/home/u")).toMatchObject({ path: "/home/u/rel/f", parent: "/home/u/rel", name: "f" });
    expect(splitPath("-rf", "host", "/w")).toMatchObject({ path: "/w/-rf", name: "-rf" });
    expect(splitPath("/", "guest")).toMatchObject({ path: "/", name: "" });
  });

  test("a relative guest path, an empty one and NUL are one-line 400s", () => {
    expect(() => splitPath("etc/passwd", "guest")).toThrow(/must be absolute/);
    expect(() => splitPath("", "guest")).toThrow(/must not be empty/);
    expect(() => splitPath("/a\0b", "guest")).toThrow(/NUL/);
    expect(() => guestPath(undefined)).toThrow(/"path" is required/);
    expect(() => guestPath("/", false)).toThrow(/root directory/);
  });
});

describe("record formats", () => {
  test("parseInfo: six NUL-terminated fields a record; names may hold newlines", () => {
    const rec = (...f: string[]) => f.map((x) => x + "\0").join("");
    const out = Buffer.from(rec("f", "5", "644", "1700000000.5", "", "/r/a\nb") + rec("l", "3", "777", "1700000000", "a\nb", "/r/l") + rec("d", "4096", "755", "1", "", "/r"));
    expect(parseInfo(out)).toEqual([
      { name: "a\nb", path: "/r/a\nb", type: "file", size: 5, mode: 0o644, mtime: new Date(1700000000500).toISOString() },
      { name: "l", path: "/r/l", type: "symlink", size: 3, mode: 0o777, mtime: new Date(1700000000000).toISOString(), target: "a\nb" },
      { name: "r", path: "/r", type: "dir", size: 4096, mode: 0o755, mtime: new Date(1000).toISOString() },
    ]);
  });

  test("watchParser: records split across chunks at every byte; pings dropped", () => {
    const wire = Buffer.from(["ready", "d", "/w", "create", "f", "/w/x\ny", "ping", "d", "/w", "remove", "l", "/w/$(z)"].map((x) => x + "\0").join(""));
    for (let cut = 0; cut <= wire.length; cut++) {
      const got: FileEvent[] = [];
      const feed = watchParser((e) => got.push(e));
      feed(wire.subarray(0, cut));
      feed(wire.subarray(cut));
      expect(got).toEqual([
        { op: "ready", type: "dir", path: "/w" },
        { op: "create", type: "file", path: "/w/x\ny" },
        { op: "remove", type: "symlink", path: "/w/$(z)" },
      ]);
    }
  });

  test("stagedPath: only the temp kind a script makes, directly under the parent", () => {
    expect(stagedPath(Buffer.from("/r/.banger-cp-AbC123\0/r/dest\0"), "cp")).toEqual({ tmp: "/r/.banger-cp-AbC123", dest: "/r/dest" });
    expect(stagedPath(Buffer.from("//.banger-write-x\0/f\0"), "write")).toEqual({ tmp: "//.banger-write-x", dest: "/f" });
    // a symlink's target, elsewhere: staged next to it
    expect(stagedPath(Buffer.from("/t/.banger-write-x\0/t/real\0"), "write")).toEqual({ tmp: "/t/.banger-write-x", dest: "/t/real" });
    expect(stagedPath(Buffer.from(""), "cp")).toBeNull();
    expect(() => stagedPath(Buffer.from("/etc\0/r/x\0"), "cp")).toThrow(/unexpected path/);
    expect(() => stagedPath(Buffer.from("/r/.banger-cp-x/../../etc\0/r/x\0"), "cp")).toThrow(/unexpected path/);
    expect(() => stagedPath(Buffer.from("/r/.banger-write-x\0/r/x\0"), "cp")).toThrow(/unexpected path/);
    expect(() => stagedPath(Buffer.from("/r/.banger-cp-x\0/s/x\0"), "cp")).toThrow(/unexpected path/);
    expect(() => stagedPath(Buffer.from("/r/.banger-cp-x\0relative\0"), "cp")).toThrow(/unexpected path/);
  });
});

describe("scripts carry hostile values only as quoted variables", () => {
  test("names with quotes, $(), backticks, ; and newlines appear only in the NAME='…' prelude", () => {
    const name = "it's $(touch pwned); `id`\nx";
    const p = splitPath(`/r/${name}`, "guest");
    for (const script of [archiveScript(p), extractScript(p, p.name, false), writeScript(p, "0644")]) {
      const at = script.indexOf("# shellcheck");
      expect(script.slice(0, at)).toContain(shellQuote(name).slice(1));
      // the body never splices a value: it only says "$NAME"
      expect(script.slice(at)).not.toContain("pwned");
    }
  });

  test("the tar-stream form has no top-level name; contents and slash are flags", () => {
    const s = extractScript(splitPath("/r/d/", "guest"), "", true);
    expect(s).toContain("NAME=''");
    expect(s).toContain("CONTENTS='1'");
    expect(s).toContain("SLASH='1'");
  });
});

describe("scriptError", () => {
  test("script exits and tools' messages become one line with their own code", () => {
    const where = placeLabel("box", "/r/a b");
    expect(where).toBe('box:"/r/a b"');
    expect(placeLabel("box", "/r/x.txt")).toBe("box:/r/x.txt");
    expect(scriptError(EXIT.NOT_FOUND, "", "read", where)).toMatchObject({ code: "E_NOT_FOUND", message: 'read: no such file or directory: box:"/r/a b"' });
    expect(scriptError(EXIT.DIR_TO_FILE, "", "copy", where).code).toBe("E_CONFLICT");
    const ro = scriptError(2, "tar: x: Cannot open: Read-only file system\ntar: Exiting with failure status due to previous errors\n", "copy", where);
    expect(ro.code).toBe("E_PERMISSION");
    expect(ro.message).toBe('copy: permission denied: box:"/r/a b" (tar: x: Cannot open: Read-only file system)');
    expect(scriptError(1, "cat: write error: No space left on device", "write", where).message).toMatch(/disk is full/);
    expect(scriptError(3, "weird\n", "stat", where)).toMatchObject({ code: "E_STATE", message: 'stat failed (exit 3): box:"/r/a b": weird' });
    // tar's reason, not its closing summary (what `vm cp - box:/dir < garbage` printed)
    const garbage = "tar: This does not look like a tar archive\ntar: Skipping to next header\ntar: Exiting with failure status due to previous errors\n";
    expect(scriptError(2, garbage, "copy", where).message).toBe('copy failed (exit 2): box:"/r/a b": tar: This does not look like a tar archive');
    expect(placeLabel(null, "/a\nb")).toBe('"/a\\nb"');
  });
});
