// The owner check split for the early read (src/host/owner-uid.ts: a bare uid) and the
// refusal built on it (src/host/owner.ts): the same answer for a path either way.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ownedByMe, ownerUid } from "../../src/host/owner-uid.ts";
import { refuseOwner, refuseForeignAsync } from "../../src/host/owner.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-owner-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const me = process.getuid!();

describe("ownerUid and ownedByMe", () => {
  test("a path's owner, or null when nothing is there", async () => {
    const f = join(dir, "mine");
    writeFileSync(f, "x");
    expect(await ownerUid(f)).toBe(me);
    expect(await ownerUid(join(dir, "missing"))).toBeNull();
    // not ENOENT: the stat's own error, for the caller to handle (the early read leaves it to DaemonClient)
    writeFileSync(join(dir, "file"), "x");
    await expect(ownerUid(join(dir, "file", "below"))).rejects.toMatchObject({ code: "ENOTDIR" });
  });

  test("ours: our uid, or nothing there; anyone else's is not", () => {
    expect(ownedByMe(me)).toBe(true);
    expect(ownedByMe(null)).toBe(true);
    expect(ownedByMe(me + 1)).toBe(false);
  });

  test("refuseOwner says whose it is, as refuseForeignAsync always did", async () => {
    expect(() => refuseOwner("/x/bangerd.sock", "daemon socket", me + 1)).toThrow(
      `daemon socket /x/bangerd.sock belongs to uid ${me + 1}, not to you (uid ${me}): refusing to use it; set BANGER_HOME to a directory of your own`,
    );
    let code = "";
    try {
      refuseOwner("/x/bangerd.sock", "daemon socket", me + 1);
    } catch (e) {
      code = (e as { code: string }).code;
    }
    expect(code).toBe("E_DAEMON");
    refuseOwner("/x", "state dir", me);
    refuseOwner("/x", "state dir", null);
    await refuseForeignAsync(join(dir, "mine"), "state dir");
    await refuseForeignAsync(join(dir, "missing"), "state dir");
  });
});
