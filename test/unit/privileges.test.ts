import { expect, test } from "bun:test";
import { parsePrivileges } from "../../src/host/privileges.ts";

test("parsePrivileges: the effective uid (second of Uid:) and CAP_NET_ADMIN (bit 12 of CapEff); unknown without the file", () => {
  expect(parsePrivileges("Name:\tbanger\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\nCapEff:\t000001ffffffffff\n")).toEqual({ uid: 0, capNetAdmin: true });
  expect(parsePrivileges("Uid:\t0\t1000\t1000\t1000\nCapEff:\t0000000000000000\n")).toEqual({ uid: 1000, capNetAdmin: false });
  expect(parsePrivileges(null)).toEqual({ uid: null, capNetAdmin: false });
});
