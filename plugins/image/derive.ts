import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { BangerError, renderScript, sizeBytes } from "../../src/plugin-api.ts";
import type { CheckedRecipe, Exec, FS, ImageRecord, Operation } from "../../src/plugin-api.ts";
// Embedded as text so the compiled binary carries it.
import DERIVE_SH from "./derive.sh" with { type: "text" };
import SCRUB_SH from "./scrub.sh" with { type: "text" };

/** Bump when a derived build changes in a way that changes the image (it is part of the cache key). */
export const DERIVE_VERSION = 1;
/** Lines of a failing step's output its error quotes. */
const _TAIL_LINES = 3;

export interface DerivedManifest {
  name: string;
  from: string;
  kernelVersion: string;
  /** "name=version" of every package in the rootfs after the build, sorted ([] when the image has no dpkg). */
  packages: string[];
  recipe: { packages: string[]; run: string[]; copy: { host: string; guest: string }[]; env: Record<string, string>; size: string };
  /** Set when the image is a `vm commit` of this VM. */
  committedFrom?: string;
  /** Where its chain of bases starts: "built" (banger's own image), "imported", "oci". */
  rootSource: string;
  /** From a base imported from OCI (oci.ts), kept: the init its initramfs hands over to, and the image's user, env and workdir. */
  init?: string;
  oci?: Record<string, unknown>;
  kernelArgs: string[];
  createdAt: string;
  deriveVersion: number;
}

export interface DeriveImageOptions {
  recipe: CheckedRecipe;
  base: ImageRecord;
  /** Output dir (an empty temp dir the caller renames into place). */
  dir: string;
  exec: Exec;
  fs: FS;
  progress: (msg: string) => void;
  op?: Operation;
  now?: () => Date;
  /** `vm commit` of this VM: dir/rootfs.ext4 is its system disk already; scrub it instead of copying the base's. */
  commitOf?: string;
}

/** apt-get on the host, resolving against the image's own dpkg status: the host's sources, keys and proxy settings, no apt needed in the guest. */
export function aptDownloadArgs(statusFile: string, debDir: string, packages: string[]): string[] {
  return [
    "-q",
    "-o", `Dir::State::status=${statusFile}`,
    "-o", `Dir::Cache::archives=${debDir}`,
    // the host's own apt lock and state stay untouched: nothing is installed on the host
    "-o", "Debug::NoLocking=1",
    // the download dir is a root-only build temp the _apt user cannot write
    "-o", "APT::Sandbox::User=root",
    "install", "--download-only", "--no-install-recommends", "-y", "--",
    ...packages,
  ];
}

/**
 * Build an image on a base: a sparse copy of the base's rootfs (grown to
 * `size`), the packages fetched by the host's apt and installed with the
 * image's own dpkg, the copies and run steps, all in a chroot of a private
 * mount namespace (derive.sh). Kernel, vmlinux and initrd are the base's.
 */
export async function deriveImage(opts: DeriveImageOptions): Promise<DerivedManifest> {
  const { exec, fs, progress, dir, recipe, base } = opts;
  const work = join(dir, ".build");
  await fs.mkdirp(work, 0o755);
  try {
    const rootfs = join(dir, "rootfs.ext4");
    if (!opts.commitOf) {
      progress(`rootfs: copy of ${base.name}'s`);
      await exec.run("cp", ["--sparse=always", "--reflink=auto", base.rootfsPath, rootfs]);
    }
    for (const f of ["vmlinuz", "vmlinux", "initrd.img"]) {
      const src = join(base.dir, f);
      if (await fs.exists(src)) await exec.run("cp", ["--reflink=auto", src, join(dir, f)]);
    }
    if (recipe.size) await _grow(exec, fs, rootfs, recipe.size, progress);

    let debs = "";
    if (recipe.packages.length) {
      debs = join(work, "debs");
      await fs.mkdirp(join(debs, "partial"), 0o755);
      const status = join(work, "dpkg-status");
      // the image's dpkg status, read without mounting it, so apt only fetches what the image lacks
      await exec.run("debugfs", ["-R", `dump /var/lib/dpkg/status ${status}`, rootfs]);
      if (!(await fs.exists(status))) {
        throw new BangerError("E_BAD_REQUEST", `base image ${base.name} has no dpkg (/var/lib/dpkg/status): --packages needs a Debian-based image`);
      }
      progress(`packages: apt-get download ${recipe.packages.join(" ")} (host's apt sources)`);
      const r = await exec.run("apt-get", aptDownloadArgs(status, debs, recipe.packages), {
        check: false,
        env: { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C.UTF-8", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
        onLine: (l) => {
          if (/^(Get:|E:|W:)/.test(l)) progress(`packages: ${l}`);
        },
      });
      if (r.exitCode !== 0) {
        // apt's own reason ("E: Unable to locate package x"), as it said it
        const why = `${r.stderr}\n${r.stdout}`.split("\n").filter((l) => l.startsWith("E: ")).at(0) ?? `apt-get exited ${r.exitCode}`;
        throw new BangerError("E_BAD_REQUEST", `packages: ${why}`);
      }
      const got = (await fs.list(debs)).filter((e) => e.name.endsWith(".deb"));
      progress(`packages: ${got.length} .deb to install`);
      if (got.length === 0) debs = ""; // already in the base
    }

    const steps = opts.commitOf ? [...recipe.run, SCRUB_SH] : recipe.run;
    await _runChroot(opts, work, rootfs, debs, steps);

    const listed = await fs.readText(join(work, "packages.txt"));
    const packages = (listed ?? "").split("\n").filter(Boolean).sort();
    const baseManifest = await _json(fs, join(base.dir, "manifest.json"));
    const manifest: DerivedManifest = {
      name: recipe.name,
      from: base.name,
      kernelVersion: base.kernelVersion || String(baseManifest?.kernelVersion ?? ""),
      packages,
      recipe: { packages: recipe.packages, run: recipe.run, copy: recipe.copy, env: recipe.env, size: recipe.size },
      kernelArgs: Array.isArray(baseManifest?.kernelArgs) ? (baseManifest.kernelArgs as string[]) : ["console=ttyS0", "panic=-1"],
      createdAt: (opts.now?.() ?? new Date()).toISOString(),
      deriveVersion: DERIVE_VERSION,
      rootSource: base.source === "derived" || base.source === "committed" ? String(baseManifest?.rootSource ?? "built") : base.source,
      ...(opts.commitOf ? { committedFrom: opts.commitOf } : {}),
      // an OCI base's rootfs boots only through its /.banger init: without these a derived image would not start
      ...(typeof baseManifest?.init === "string" ? { init: baseManifest.init } : {}),
      ...(baseManifest?.oci && typeof baseManifest.oci === "object" ? { oci: baseManifest.oci as Record<string, unknown> } : {}),
    };
    await fs.writeFile(join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
    progress(`done: ${recipe.name} from ${base.name} (+${recipe.packages.length} packages, ${recipe.run.length} steps)`);
    return manifest;
  } finally {
    await fs.rmrf(work);
  }
}

async function _grow(exec: Exec, fs: FS, rootfs: string, size: string, progress: (m: string) => void): Promise<void> {
  const want = sizeBytes(size);
  const have = (await fs.stat(rootfs))?.size ?? 0;
  if (want < have) throw new BangerError("E_BAD_REQUEST", `--size ${size} is smaller than the base's rootfs (${Math.round(have / 2 ** 20)} MiB): images only grow`);
  if (want === have) return;
  progress(`rootfs: growing to ${size}`);
  await exec.run("truncate", ["-s", String(want), rootfs]);
  // resize2fs wants a freshly checked filesystem; -p fixes only what is safe to fix
  await exec.run("e2fsck", ["-f", "-p", rootfs]);
  await exec.run("resize2fs", [rootfs]);
}

async function _runChroot(opts: DeriveImageOptions, work: string, rootfs: string, debs: string, steps: string[]): Promise<void> {
  const { exec, progress, recipe } = opts;
  // a token of this build's: a step printing a marker line cannot pass for the build's own
  const mark = `@@banger-${randomBytes(8).toString("hex")}`;
  const script = renderScript(DERIVE_SH, {
    WORK: work,
    MARK: mark,
    ROOTFS: rootfs,
    DEBS: debs,
    ENV: Object.entries(recipe.env).map(([k, v]) => `${k}=${v}`),
    COPY_HOST: recipe.copy.map((c) => c.host),
    COPY_GUEST: recipe.copy.map((c) => c.guest),
    RUN: steps,
  });
  let stage = "setup";
  let tail: string[] = [];
  let failed: { what: string; n: number; code: number; detail: string } | null = null;
  const r = await exec.run("unshare", ["--mount", "--pid", "--fork", "--propagation", "private", "bash", "-c", script], {
    check: false,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8" },
    onLine: (line) => {
      const m = line.startsWith(`${mark} `) ? /^(stage|failed) (\S+)(?: (\d+))?(?: (.*))?$/.exec(line.slice(mark.length + 1)) : null;
      if (!m) {
        tail = [...tail, line].slice(-_TAIL_LINES);
        progress(`${stage}: ${line}`);
        return;
      }
      if (m[1] === "stage") {
        stage = m[3] ? `${m[2]} ${m[3]}` : m[2]!;
        tail = [];
        if (stage !== "done") progress(stage === "packages" ? "packages: dpkg -i in the chroot" : `${stage}: ${_describe(recipe, steps, m[2]!, Number(m[3]))}`);
      } else {
        const n = Number(m[3] ?? 0);
        const rest = m[4] ?? "";
        failed = m[2] === "layout" ? { what: "layout", n, code: 1, detail: rest } : { what: m[2]!, n, code: Number(rest), detail: "" };
      }
    },
  });
  if (r.exitCode === 0) return;
  const f = failed as { what: string; n: number; code: number; detail: string } | null;
  const said = tail.filter((l) => l.trim()).join(" ⏎ ");
  // a step that ran and failed is a failed build (exit 1, as docker build), not bad input
  if (f?.what === "run") {
    throw new BangerError("E_STATE", `run step ${f.n} (\`${_brief(steps[f.n - 1] ?? "")}\`) failed with exit ${f.code}${said ? `: ${said}` : " (no output)"}`);
  }
  if (f?.what === "copy") throw new BangerError("E_STATE", `copy ${f.n} (${recipe.copy[f.n - 1]?.guest ?? "?"}) failed with exit ${f.code}${said ? `: ${said}` : ""}`);
  if (f?.what === "packages") throw new BangerError("E_INTERNAL", `packages: dpkg -i in the chroot failed with exit ${f.code}${said ? `: ${said}` : ""}`);
  if (f?.what === "layout") throw new BangerError("E_BAD_REQUEST", `base image ${opts.base.name}: ${f.detail}`);
  const why = `${r.stderr}`.trim().split("\n").at(-1) ?? "";
  throw new BangerError("E_INTERNAL", `chroot (${stage}) failed with exit ${r.exitCode}${why ? `: ${why}` : ""}`);
}

function _describe(recipe: CheckedRecipe, steps: string[], what: string, n: number): string {
  if (what === "run") return steps[n - 1] === SCRUB_SH ? "scrubbing SSH keys, histories, logs" : _brief(steps[n - 1] ?? "");
  if (what === "copy") return `${recipe.copy[n - 1]?.host} → ${recipe.copy[n - 1]?.guest}`;
  return what;
}

function _brief(s: string): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > 60 ? `${one.slice(0, 60)}…` : one;
}

async function _json(fs: FS, path: string): Promise<Record<string, unknown> | null> {
  const text = await fs.readText(path);
  try {
    return text ? (JSON.parse(text) as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
