// A derived image's recipe: what `image build NAME --from BASE --packages …
// --run … --copy … --size …` (or a banger.image.ts file) asks for, checked
// once here so the daemon, the image plugin and the cache key agree on it.
import { BangerError } from "./errors.ts";
import { VM_NAME_RE, VM_NAME_RULE } from "./model.ts";

/** A host file or dir copied into the image (`--copy HOST:GUEST`); host is absolute. */
export interface ImageCopy {
  host: string;
  guest: string;
}

/** What `defineImage` takes (banger.image.ts) and `image build --from` sends. */
export interface ImageRecipe {
  name: string;
  /** The base image (default: "default"): its rootfs, kernel and initrd are the start. */
  from?: string;
  /** Debian packages installed in a chroot of the base's rootfs, with the host's apt configuration. */
  packages?: string[];
  /** Shell steps run in order as root in a chroot of the rootfs (`/bin/sh -c`). */
  run?: string[];
  copy?: ImageCopy[];
  /** Environment for the run steps. */
  env?: Record<string, string>;
  /** The rootfs size (e.g. "4G"); only grows. Default: the base's. */
  size?: string;
}

/** A recipe after checking: every field present. */
export type CheckedRecipe = Required<ImageRecipe>;

/** Identity helper for banger.image.ts files: `export default defineImage({ … })`. */
export function defineImage<const T extends ImageRecipe>(recipe: T): T {
  return recipe;
}

// apt's own package name rule, plus an optional =version or /release pin
const _PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+(?:[=/][A-Za-z0-9.+~:-]+)?$/;
const _SIZE_RE = /^[1-9][0-9]*[KMGT]?$/;
const _ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

function _bad(msg: string): never {
  throw new BangerError("E_BAD_REQUEST", msg);
}

/** `HOST:GUEST` as typed on the command line; the host part is resolved by the caller. */
export function parseCopy(spec: string): ImageCopy {
  const i = spec.lastIndexOf(":");
  if (i <= 0 || i === spec.length - 1) _bad(`bad --copy ${JSON.stringify(spec)}: want HOST:GUEST (e.g. ./conf:/etc/app)`);
  return { host: spec.slice(0, i), guest: spec.slice(i + 1) };
}

/** Check a recipe's every field; the one-line error names the field and the rule. */
export function checkRecipe(r: ImageRecipe): CheckedRecipe {
  if (typeof r.name !== "string" || !VM_NAME_RE.test(r.name)) {
    throw new BangerError("E_BAD_NAME", `invalid image name ${JSON.stringify(r.name)}: must match ${VM_NAME_RULE}`);
  }
  const from = r.from ?? "default";
  if (typeof from !== "string" || !VM_NAME_RE.test(from)) throw new BangerError("E_BAD_NAME", `invalid base image name ${JSON.stringify(from)}: must match ${VM_NAME_RULE}`);
  if (from === r.name) _bad(`image ${r.name} cannot be built from itself`);
  const packages = r.packages ?? [];
  if (!Array.isArray(packages)) _bad("packages must be a list of Debian package names");
  for (const p of packages) if (typeof p !== "string" || !_PACKAGE_RE.test(p)) _bad(`invalid package name ${JSON.stringify(p)}: Debian names are lower case letters, digits and + - .`);
  const run = r.run ?? [];
  if (!Array.isArray(run)) _bad("run must be a list of shell steps");
  for (const s of run) {
    if (typeof s !== "string" || s.trim() === "") _bad("a run step is empty");
    if (s.includes("\0")) _bad("a run step holds a NUL byte");
  }
  const copy = r.copy ?? [];
  if (!Array.isArray(copy)) _bad("copy must be a list of { host, guest }");
  for (const c of copy) {
    if (typeof c?.host !== "string" || !c.host.startsWith("/")) _bad(`copy source must be an absolute host path: ${JSON.stringify(c?.host)}`);
    if (typeof c.guest !== "string" || !c.guest.startsWith("/") || c.guest.split("/").includes("..")) {
      _bad(`copy target must be an absolute guest path without ..: ${JSON.stringify(c.guest)}`);
    }
  }
  const env = r.env ?? {};
  if (typeof env !== "object" || Array.isArray(env)) _bad("env must be an object of NAME: value");
  for (const [k, v] of Object.entries(env)) {
    if (!_ENV_RE.test(k)) _bad(`invalid env name ${JSON.stringify(k)}`);
    if (typeof v !== "string" || v.includes("\0")) _bad(`env ${k} must be a string without NUL`);
  }
  const size = r.size ?? "";
  if (size !== "" && (typeof size !== "string" || !_SIZE_RE.test(size))) _bad(`invalid size ${JSON.stringify(size)}: want a number with K, M, G or T (e.g. 4G)`);
  if (packages.length === 0 && run.length === 0 && copy.length === 0 && size === "") _bad(`image ${r.name}: --from needs at least one of --packages, --run, --copy, --size`);
  return { name: r.name, from, packages: [...packages], run: [...run], copy: copy.map((c) => ({ host: c.host, guest: c.guest })), env: { ...env }, size };
}

/** Bytes of a size like "4G" (K/M/G/T are binary, as truncate reads them). */
export function sizeBytes(size: string): number {
  const m = /^(\d+)([KMGT]?)$/.exec(size);
  if (!m) return 0;
  return Number(m[1]) * 1024 ** " KMGT".indexOf(m[2] || " ");
}

/**
 * What makes two builds the same build, as one canonical JSON text: the
 * recipe (name aside: the same recipe under two names is two images), the
 * base's identity and a digest of what --copy reads on the host.
 */
export function recipeKey(r: CheckedRecipe, baseIdentity: string, copyDigest: string, recipeVersion: number): string {
  const env = Object.fromEntries(Object.entries(r.env).sort(([a], [b]) => a.localeCompare(b)));
  return JSON.stringify({ v: recipeVersion, from: r.from, base: baseIdentity, packages: r.packages, run: r.run, copy: r.copy, copyDigest, env, size: r.size });
}

/** One image of a chain, base first, as `image show` and `image build` answer it. */
export interface ImageChainLink {
  name: string;
  source: string;
  from: string | null;
  /** `vm commit`: the VM whose disk the image is. */
  committedFrom: string | null;
  packages: string[];
  run: string[];
  copy: string[];
  recipeHash: string | null;
}
