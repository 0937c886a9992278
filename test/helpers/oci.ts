// OCI images made from local files (no registry here): layers are tars of
// dirs, blobs are named by their sha256, written as an OCI image layout or
// as a `docker save` archive.
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface OciConfig {
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  Cmd?: string[];
}

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** A layer: the tar of a dir (owner root, as an image build would make it). */
export function layerTar(dir: string, out: string): Uint8Array {
  const r = Bun.spawnSync(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", dir, "-cf", out, "."]);
  if (r.exitCode !== 0) throw new Error(`tar: ${r.stderr}`);
  return readFileSync(out);
}

function configJson(layers: Uint8Array[], config: OciConfig): string {
  return JSON.stringify({ architecture: "amd64", os: "linux", config, rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${sha(l)}`) } });
}

/** An OCI image layout dir (uncompressed layers, tagged "latest"). */
export function writeOciLayout(out: string, layers: Uint8Array[], config: OciConfig): void {
  const blobs = join(out, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  const put = (b: Uint8Array | string) => {
    const d = sha(b);
    writeFileSync(join(blobs, d), b);
    return { digest: `sha256:${d}`, size: typeof b === "string" ? Buffer.byteLength(b) : b.length };
  };
  const cfg = put(configJson(layers, config));
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfg },
    layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", ...put(l) })),
  });
  const m = put(manifest);
  writeFileSync(
    join(out, "index.json"),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m, annotations: { "org.opencontainers.image.ref.name": "latest" } }] }),
  );
  writeFileSync(join(out, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
}

/** A `docker save` archive: manifest.json, the config and one dir per layer, tarred. */
export function writeDockerArchive(out: string, work: string, layers: Uint8Array[], config: OciConfig): void {
  mkdirSync(work, { recursive: true });
  const cfg = configJson(layers, config);
  const cfgName = `${sha(cfg)}.json`;
  writeFileSync(join(work, cfgName), cfg);
  const names = layers.map((l) => {
    const d = sha(l);
    mkdirSync(join(work, d), { recursive: true });
    writeFileSync(join(work, d, "layer.tar"), l);
    return `${d}/layer.tar`;
  });
  writeFileSync(join(work, "manifest.json"), JSON.stringify([{ Config: cfgName, RepoTags: ["banger-test:latest"], Layers: names }]));
  const r = Bun.spawnSync(["tar", "-C", work, "-cf", out, "."]);
  if (r.exitCode !== 0) throw new Error(`tar: ${r.stderr}`);
}

export const BUSYBOX = ["/usr/bin/busybox", "/bin/busybox"].find((p) => existsSync(p)) ?? "";

/** A busybox-only image in two layers; the second whites out /etc/gone. */
export function busyboxLayers(work: string): Uint8Array[] {
  const l1 = join(work, "l1");
  const l2 = join(work, "l2");
  for (const d of ["bin", "etc", "root", "tmp", "srv/app"]) mkdirSync(join(l1, d), { recursive: true });
  writeFileSync(join(l1, "bin/busybox"), readFileSync(BUSYBOX));
  chmodSync(join(l1, "bin/busybox"), 0o755);
  for (const a of ["sh", "ls", "cat", "echo", "pwd", "env", "id"]) symlinkSync("busybox", join(l1, "bin", a));
  writeFileSync(join(l1, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  writeFileSync(join(l1, "etc/gone"), "whited out\n");
  mkdirSync(join(l2, "etc"), { recursive: true });
  mkdirSync(join(l2, "srv/app"), { recursive: true });
  writeFileSync(join(l2, "etc/.wh.gone"), "");
  writeFileSync(join(l2, "srv/app/hello"), "layer two\n");
  return [layerTar(l1, join(work, "l1.tar")), layerTar(l2, join(work, "l2.tar"))];
}

export const BUSYBOX_CONFIG = { Env: ["PATH=/bin", "GREETING=it's $(not) run"], WorkingDir: "/srv/app", Cmd: ["/bin/sh"] };

