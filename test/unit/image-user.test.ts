import { expect, test } from "bun:test";
import { imageDefaultUser, withDefaultUser } from "../../src/daemon/image-user.ts";
import { execCommandLine } from "../../src/sessions/exec.ts";
import type { ImageRecord, VMRecord } from "../../src/shared/model.ts";
import { existsSync } from "node:fs";
import { fakeFS } from "../helpers/fakes.ts";

const image = (name: string, source: ImageRecord["source"]): ImageRecord => ({ name, dir: `/images/${name}`, kernelPath: "", initrdPath: "", rootfsPath: "", kernelVersion: "", sizeBytes: 0, createdAt: "t", source });
const vmOf = (img: string) => ({ spec: { image: img } }) as unknown as VMRecord;
const manifest = (user: unknown) => JSON.stringify({ source: "oci", oci: { env: [], workdir: "/w", user } });

test("an OCI image's User is the default user of its VMs; root, other images, a bad or missing manifest give none", async () => {
  const images: Record<string, ImageRecord> = {
    app: image("app", "oci"),
    uid: image("uid", "oci"),
    rooted: image("rooted", "oci"),
    none: image("none", "oci"),
    bad: image("bad", "oci"),
    junk: image("junk", "oci"),
    gone: image("gone", "oci"),
    built: image("built", "built"),
  };
  const fs = fakeFS({
    "/images/app/manifest.json": manifest("app"),
    "/images/uid/manifest.json": manifest("1000:1000"),
    "/images/rooted/manifest.json": manifest("root"),
    "/images/none/manifest.json": manifest(""),
    "/images/bad/manifest.json": manifest("a b\nc"),
    "/images/junk/manifest.json": "{",
    "/images/built/manifest.json": manifest("app"),
  });
  const get = (n: string) => images[n] ?? null;
  const got: Record<string, string | undefined> = {};
  for (const n of [...Object.keys(images), "missing"]) got[n] = await imageDefaultUser(fs, get, vmOf(n));
  expect(got).toEqual({ app: "app", uid: "1000:1000", rooted: undefined, none: undefined, bad: undefined, junk: undefined, gone: undefined, built: undefined, missing: undefined });
});

test("the default applies only when no user was asked for: -u root keeps root; the exec wrapper then runs as it", () => {
  const withEnv: { env: string[]; user?: string } = { env: ["A=1"] };
  expect(withDefaultUser(withEnv, "app")).toEqual({ env: ["A=1"], user: "app" });
  expect(withDefaultUser({ user: "root" }, "app")).toEqual({ user: "root" });
  expect(withDefaultUser({ user: "bob" }, "app")).toEqual({ user: "bob" });
  expect(withDefaultUser({}, undefined)).toEqual({});
  // the wrapper (run here by bash, as the guest's would): the image's user is data, never shell; an unknown one is refused by name
  const marker = `/tmp/banger-image-user-${process.pid}`;
  const hostile = `nob'ody;$(touch ${marker})`;
  const r = Bun.spawnSync(["bash", "-c", execCommandLine(["true"], withDefaultUser({}, hostile), "tok")]);
  expect([r.exitCode, r.stderr.toString()]).toEqual([125, `banger-refused-tok: no such user in the guest: nob'ody;$(touch ${marker})\n`]);
  expect(existsSync(marker)).toBe(false);
  expect(execCommandLine(["true"], withDefaultUser({}, undefined), "tok")).toBe("'true'");
});
