import { describe, expect, test } from "bun:test";
import { completeUtf8Prefix, utf8OrNull } from "../../src/shared/utf8.ts";

describe("utf8: where a chunk of text may be cut", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  test("a sequence cut anywhere waits whole; complete text and ASCII pass", () => {
    for (const ch of ["é", "€", "𝄞"]) {
      const b = enc(`ab${ch}`);
      for (let cut = 3; cut < b.length; cut++) expect([ch, cut, completeUtf8Prefix(b.subarray(0, cut))]).toEqual([ch, cut, 2]);
      expect(completeUtf8Prefix(b)).toBe(b.length);
    }
    expect(completeUtf8Prefix(enc(""))).toBe(0);
    expect(completeUtf8Prefix(enc("plain"))).toBe(5);
  });

  test("bytes that can never be text do not wait for ever: at most 3 are held", () => {
    expect(completeUtf8Prefix(new Uint8Array([0x61, 0x80, 0x80, 0x80, 0x80]))).toBe(5);
    expect(completeUtf8Prefix(new Uint8Array([0x61, 0xff]))).toBe(1);
  });

  test("utf8OrNull: text, or null for bytes that are not UTF-8", () => {
    expect(utf8OrNull(enc("é €"))).toBe("é €");
    expect(utf8OrNull(new Uint8Array([0x61, 0xff]))).toBeNull();
    expect(utf8OrNull(new Uint8Array([0xc3]))).toBeNull();
  });
});
