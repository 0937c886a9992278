// The guard on a guest's tar stream, against real GNU tar archives (made
// here as root, with device nodes and set-id bits) and hand-made hostile ones;
// what it lets through is extracted by real tar.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guardGuestTar, type SkippedEntry } from "../../src/files/tar-guard.ts";

const root = mkdtempSync(join(tmpdir(), "banger-tar-guard-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function guard(tar: Uint8Array, chunk = 4096): Promise<{ out: Uint8Array; skipped: SkippedEntry[] }> {
  const skipped: SkippedEntry[] = [];
  const src = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < tar.length; i += chunk) c.enqueue(tar.slice(i, i + chunk));
      c.close();
    },
  });
  const out = new Uint8Array(await new Response(src.pipeThrough(guardGuestTar((e) => skipped.push(e)))).arrayBuffer());
  return { out, skipped };
}

function makeTar(dir: string, format: "gnu" | "posix"): Uint8Array {
  const r = Bun.spawnSync(["tar", `--format=${format}`, "-C", dir, "-cf", "-", "t"]);
  expect(r.exitCode).toBe(0);
  return r.stdout as Uint8Array;
}

function extract(tar: Uint8Array, into: string): void {
  mkdirSync(into, { recursive: true });
  const r = Bun.spawnSync(["tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", into], { stdin: tar });
  expect([r.exitCode, r.stderr.toString()]).toEqual([0, ""]);
}

const long = "n".repeat(120);
function hostileTree(name: string): string {
  const dir = join(root, name);
  const t = join(dir, "t");
  mkdirSync(join(t, "shared"), { recursive: true });
  chmodSync(join(t, "shared"), 0o2775);
  writeFileSync(join(t, "suid"), "#!/bin/sh\n");
  chmodSync(join(t, "suid"), 0o4755);
  writeFileSync(join(t, "sgid"), "x");
  chmodSync(join(t, "sgid"), 0o2711);
  writeFileSync(join(t, "plain"), Buffer.alloc(5000, 7));
  chmodSync(join(t, "plain"), 0o640);
  expect(Bun.spawnSync(["mknod", "-m", "666", join(t, "blk"), "b", "7", "0"]).exitCode).toBe(0);
  expect(Bun.spawnSync(["mknod", "-m", "666", join(t, `${long}-chr`), "c", "1", "3"]).exitCode).toBe(0);
  expect(Bun.spawnSync(["mkfifo", join(t, "fifo")]).exitCode).toBe(0);
  writeFileSync(join(t, `${long}-file`), "long\n");
  return dir;
}

describe("guardGuestTar", () => {
  for (const format of ["gnu", "posix"] as const) {
    test(`${format} format: devices left out (long names too), set-id bits cleared on files, kept on a dir; the rest exact, however it is chunked`, async () => {
      const tar = makeTar(hostileTree(`tree-${format}`), format);
      const whole = await guard(tar);
      expect(whole.skipped.map((s) => [s.name, s.type]).sort()).toEqual([
        ["t/blk", "block device"],
        [`t/${long}-chr`, "character device"],
      ]);
      for (const size of [1, 511, 513, 65536]) expect(Buffer.from((await guard(tar, size)).out).equals(Buffer.from(whole.out))).toBe(true);
      const into = join(root, `out-${format}`);
      extract(whole.out, into);
      const t = join(into, "t");
      const mode = (p: string) => lstatSync(join(t, p)).mode & 0o7777;
      expect([mode("suid"), mode("sgid"), mode("shared"), mode("plain")]).toEqual([0o755, 0o711, 0o2775, 0o640]);
      expect(readFileSync(join(t, "plain")).equals(Buffer.alloc(5000, 7))).toBe(true);
      expect(readFileSync(join(t, `${long}-file`), "utf8")).toBe("long\n");
      expect(lstatSync(join(t, "fifo")).isFIFO()).toBe(true);
      expect(() => lstatSync(join(t, "blk"))).toThrow();
      expect(() => lstatSync(join(t, `${long}-chr`))).toThrow();
    });
  }

  test("an archive with nothing to change passes byte for byte", async () => {
    const dir = join(root, "clean");
    mkdirSync(join(dir, "t", "d"), { recursive: true });
    writeFileSync(join(dir, "t", "d", "f"), "f\n");
    const tar = makeTar(dir, "gnu");
    expect(Buffer.from((await guard(tar, 100)).out).equals(Buffer.from(tar))).toBe(true);
  });

  /** A ustar header by hand (checksum right unless told). */
  function header(name: string, type: string, size: number, o: { mode?: number; badSum?: boolean } = {}): Uint8Array {
    const h = new Uint8Array(512);
    const put = (s: string, off: number) => h.set(new TextEncoder().encode(s), off);
    put(name, 0);
    put((o.mode ?? 0o644).toString(8).padStart(7, "0") + "\0", 100);
    put("0000000\0", 108);
    put("0000000\0", 116);
    put(size.toString(8).padStart(11, "0") + "\0", 124);
    put("00000000000\0", 136);
    put(type, 156);
    put("ustar\0" + "00", 257);
    h.fill(32, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    put((sum + (o.badSum ? 1 : 0)).toString(8).padStart(6, "0") + "\0 ", 148);
    return h;
  }
  const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
  const data = (n: number) => new Uint8Array(Math.ceil(n / 512) * 512).fill(65, 0, n);
  const end = new Uint8Array(1024);

  test.each([
    ["a bad checksum (tar would skip ahead for another header)", cat(header("a", "0", 3, { badSum: true }), data(3), end), "checksum"],
    ["a hard link that claims data", cat(header("l", "1", 512), header("dev", "4", 0), end), "claims 512 bytes"],
    ["a device that claims data", cat(header("dev", "3", 10), data(10), end), "claims 10 bytes"],
    ["old GNU sparse headers", cat(header("s", "S", 0), end), "entry type"],
    ["a lone zero block, then a device", cat(new Uint8Array(512), header("dev", "4", 0), end), "lone zero block"],
    ["a global pax header that sets sizes", cat(header("g", "g", 12), new TextEncoder().encode("12 size=512\n"), new Uint8Array(500), end), "global pax"],
    ["a cut in the middle of an entry", cat(header("a", "0", 3000), data(1000)), "middle of an entry"],
  ])("refused: %s", async (_what, tar, why) => {
    const e = await guard(tar).catch((e: Error) => e);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(why);
  });

  test("a pax size moves where the next header is: what it hides is read as data, as tar reads it", async () => {
    const rec = new TextEncoder().encode("12 size=512\n");
    const pax = cat(header("pax", "x", rec.length), rec, new Uint8Array(512 - rec.length));
    // the file's header says 0 bytes, the pax record 512: the "device" inside is the file's data
    const tar = cat(pax, header("f", "0", 0), header("dev", "4", 0), end);
    const r = await guard(tar);
    expect(r.skipped).toEqual([]);
    expect(r.out.length).toBe(tar.length);
  });
});
