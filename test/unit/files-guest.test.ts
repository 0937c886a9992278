// GuestFiles' uploads (write, extract): a stream cut on the way is said as such, and a failure before the first
// byte was asked for (the guest unreachable) keeps its own error.
import { describe, expect, test } from "bun:test";
import { GuestFiles } from "../../src/files/guest.ts";
import { splitPath } from "../../src/files/paths.ts";
import { EXIT } from "../../src/files/scripts.ts";
import { BangerError } from "../../src/shared/errors.ts";
import type { ExecStreamOptions, GuestSSH } from "../../src/host/types.ts";
import { sampleVM } from "../helpers/fakes.ts";

/** A body of `chunks` that says it arrived whole only when `whole`. */
function body(chunks: string[], whole: boolean) {
  return {
    chunks: (async function* () {
      for (const c of chunks) yield new TextEncoder().encode(c);
    })(),
    whole: () => whole,
  };
}

/** A connection whose exec reads all of its stdin, then exits `code`. */
function conn(code: number): GuestSSH {
  return {
    async exec(_cmd: string, o: ExecStreamOptions = {}) {
      const s = o.stdin;
      if (s && typeof s !== "string" && !(s instanceof Uint8Array)) for await (const _ of s) void _;
      return code;
    },
    runScript: async () => ({ exitCode: 0, stdout: "", stderr: "" }),
    upload: async () => {},
    close: () => {},
    closed: false,
  };
}

describe("GuestFiles uploads", () => {
  const vm = sampleVM({ name: "box" });
  const refused = new BangerError("E_STATE", "ssh: the host key of 127.0.0.1:2222 is not the pinned one");

  test("the guest unreachable before the first byte: its own error, for write and for copy, though the body never ended", async () => {
    const unreachable = new GuestFiles(async () => {
      throw refused;
    });
    await expect(unreachable.write(vm, splitPath("/tmp/f", "guest"), body(["x"], false), "644")).rejects.toThrow(refused.message);
    await expect(unreachable.extract(vm, splitPath("/tmp", "guest"), "f", false, body(["x"], false))).rejects.toThrow(refused.message);
    // an exec that fails before taking stdin (the agent's connection dials SSH inside it) is the same
    const dialsLate = new GuestFiles(async () => ({ ...conn(0), exec: async () => Promise.reject(refused) }));
    await expect(dialsLate.write(vm, splitPath("/tmp/f", "guest"), body(["x"], false), "644")).rejects.toThrow(refused.message);
  });

  test("a stream cut on the way (the guest took what came, the body did not end): the cut, for write and for copy", async () => {
    const files = new GuestFiles(async () => conn(1));
    await expect(files.write(vm, splitPath("/tmp/f", "guest"), body(["x", "y"], false), "644")).rejects.toThrow(/^write: the stream was cut before its end: box:\/tmp\/f/);
    await expect(files.extract(vm, splitPath("/tmp", "guest"), "f", false, body(["x"], false))).rejects.toThrow(/^copy: the stream was cut before its end/);
  });

  test("the script's own refusal (a tar into a file, say) is its error, though it exited before the body ended: not a cut", async () => {
    // extract.sh exits "not a directory" before reading its stdin: the body is left mid-way, as it was when CI saw
    // "the stream was cut" instead for `vm cp - box:FILE` (a race on how much the guest read first)
    const files = new GuestFiles(async () => conn(EXIT.NOT_DIR));
    await expect(files.extract(vm, splitPath("/tmp/a b", "guest"), "", false, body(["x"], false))).rejects.toThrow("copy: not a directory: box:\"/tmp/a b\"");
    const exists = new GuestFiles(async () => conn(EXIT.IS_DIR));
    await expect(exists.write(vm, splitPath("/tmp", "guest"), body(["x"], false), "644")).rejects.toThrow("write: is a directory: box:/tmp");
  });
});
