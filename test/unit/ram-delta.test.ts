// A clone's snapshot by RAM delta (plugins/qemu/ram-delta.ts): which RAM file it maps, which pages it wrote, and the
// splice of its device state into the mapped snapshot's stream. The splice was checked against QEMU 7.2 itself: a
// stream so made restored a guest whose files and tmpfs came back (test/e2e/snapshot.test.ts does it end to end).
import { describe, expect, test } from "bun:test";
import { mappingsOf, PAGE, privateRamFile, spliceable, spliceDeviceState, splitWholeStream, StreamNotSpliceable, writtenRuns } from "../../plugins/qemu/ram-delta.ts";
import { deviceStream, mappedStream, NEW_DEVICES as NEW, wholeStream } from "../helpers/qemu-stream.ts";

describe("spliceDeviceState", () => {
  test("the mapped stream's RAM sections, then the new device sections and EOF, then its description", () => {
    const m = mappedStream();
    const out = spliceDeviceState(spliceable(m.bytes), deviceStream(NEW));
    expect([...out]).toEqual([...m.bytes.subarray(0, m.ramEnd), ...NEW, ...m.description]);
    expect(new TextDecoder().decode(out)).not.toContain("OLD-DEVICE-STATE");
  });

  test("refused: a stream saved without x-ignore-shared, a section of another id among RAM's, a record it does not know, a device stream that is not whole", () => {
    const refused = (a: Uint8Array, b: Uint8Array) => expect(() => spliceDeviceState(spliceable(a), b)).toThrow(StreamNotSpliceable);
    refused(mappedStream({ ignoreShared: false }).bytes, deviceStream(NEW));
    refused(mappedStream({ partId: 9 }).bytes, deviceStream(NEW));
    refused(mappedStream({ pageFlags: 0x100 }).bytes, deviceStream(NEW));
    refused(mappedStream().bytes, deviceStream(NEW.slice(0, -1)));
    refused(mappedStream().bytes, new Uint8Array([1, 2, 3]));
    refused(mappedStream().bytes.subarray(0, 300), deviceStream(NEW));
  });
});

describe("privateRamFile", () => {
  test("the mem-path of a file backend mapped private (QEMU's ',,' is a comma); null for shared, memfd or anonymous RAM", () => {
    expect(privateRamFile(["-m", "256", "-object", "memory-backend-file,id=pc.ram,size=256M,mem-path=/h/a,,b/memory.ram,share=off", "-machine", "memory-backend=pc.ram"])).toBe("/h/a,b/memory.ram");
    expect(privateRamFile(["-object", "memory-backend-file,id=pc.ram,size=256M,mem-path=/h/m.ram"])).toBe("/h/m.ram");
    expect(privateRamFile(["-object", "memory-backend-file,id=pc.ram,size=256M,mem-path=/h/m.ram,share=on"])).toBeNull();
    expect(privateRamFile(["-object", "memory-backend-memfd,id=pc.ram,size=256M,share=on"])).toBeNull();
    expect(privateRamFile(["-m", "256"])).toBeNull();
  });
});

describe("mappingsOf", () => {
  test("every mapping of the file, with its file offset; other files and look-alike paths are not", () => {
    const maps = [
      "7f0000000000-7f0001000000 rw-p 00000000 fe:01 1234                       /h/my ram/memory.ram",
      "7f0001000000-7f0010000000 rw-p 01000000 fe:01 1234                       /h/my ram/memory.ram",
      "7f0010000000-7f0011000000 rw-p 00000000 fe:01 99                         /h/my ram/memory.ram.old",
      "55d0c0000000-55d0c0100000 r-xp 00000000 fe:01 5                          /usr/bin/qemu-system-x86_64",
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
    ].join("\n");
    expect(mappingsOf(maps, "/h/my ram/memory.ram")).toEqual([
      { start: 0x7f0000000000, end: 0x7f0001000000, fileOffset: 0 },
      { start: 0x7f0001000000, end: 0x7f0010000000, fileOffset: 0x1000000 },
    ]);
    expect(mappingsOf(maps, "/h/other")).toEqual([]);
  });
});

describe("writtenRuns", () => {
  const PRESENT = 0x80000000;
  const SWAPPED = 0x40000000;
  const FILE = 0x20000000;
  const pagemap = (flags: number[]) => {
    const b = new Uint8Array(flags.length * 8);
    const v = new DataView(b.buffer);
    flags.forEach((f, i) => v.setUint32(i * 8 + 4, f, true));
    return b;
  };

  test("pages written (present, not the file's) or swapped out, as runs of file pages; the file's own and untouched pages are not", () => {
    const m = { start: 0, end: 10 * PAGE, fileOffset: 0 };
    const pm = pagemap([PRESENT, PRESENT | FILE, 0, PRESENT, PRESENT, SWAPPED, PRESENT | FILE, 0, 0, PRESENT]);
    expect(writtenRuns(pm, m, 0)).toEqual([{ first: 0, count: 1 }, { first: 3, count: 3 }, { first: 9, count: 1 }]);
  });

  test("runs a few pages apart are read as one (the pages between are the file's, written back unchanged), in file pages of the mapping's offset", () => {
    const m = { start: 0, end: 10 * PAGE, fileOffset: 100 * PAGE };
    const pm = pagemap([PRESENT, 0, 0, PRESENT, 0, 0, 0, 0, 0, PRESENT]);
    expect(writtenRuns(pm, m, 2)).toEqual([{ first: 100, count: 4 }, { first: 109, count: 1 }]);
    expect(writtenRuns(pm, m, 16)).toEqual([{ first: 100, count: 10 }]);
    expect(writtenRuns(pagemap([0, PRESENT | FILE]), m)).toEqual([]);
  });
});

describe("splitWholeStream", () => {
  test("the guest RAM's pages out (zero pages left as holes, a filled one kept as its byte), the rest of the stream as an x-ignore-shared save of it", () => {
    const w = wholeStream();
    const { stream, pages } = splitWholeStream(w.bytes);
    expect([...stream]).toEqual([...w.split]);
    expect(pages.map((p) => ({ offset: p.offset, data: p.fill === undefined ? [...w.bytes.subarray(p.at, p.at + PAGE)] : new Array<number>(PAGE).fill(p.fill) }))).toEqual(w.ramPages);
    // what it makes, a splice takes: a clone of such a snapshot is saved by delta too
    expect(() => spliceDeviceState(spliceable(stream), deviceStream(NEW))).not.toThrow();
  });

  test("refused: a stream already x-ignore-shared (its configuration names the capability), and one cut short", () => {
    expect(() => splitWholeStream(mappedStream().bytes)).toThrow(StreamNotSpliceable);
    expect(() => splitWholeStream(wholeStream().bytes.subarray(0, 200))).toThrow(StreamNotSpliceable);
    expect(() => splitWholeStream(new Uint8Array([1, 2, 3]))).toThrow(StreamNotSpliceable);
  });
});
