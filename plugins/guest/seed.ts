import { writeCpioGz, type CpioEntry, tempPathFor } from "../../src/plugin-api.ts";
import { join } from "node:path";
import { BangerError } from "../../src/plugin-api.ts";
import type { Exec, FS } from "../../src/plugin-api.ts";
import { CLOCK_RESEED_ELF } from "./clock-reseed-elf.ts";
import { dropbearEd25519Key, newEd25519KeyPair, opensshPrivateKey, sshPublicKeyLine } from "./ssh-keys.ts";

/** Where the seed lives inside the initramfs; the initramfs copies it to /run/banger-seed. */
export const SEED_DIR = "banger-seed";
export const SEED_HOSTNAME = "hostname";
export const SEED_AUTHORIZED_KEYS = "authorized_keys";
export const SEED_HOST_KEY = "dropbear_ed25519_host_key";
/** The program a clone of this VM sets its clock and reseeds its RNG with (clock-reseed-elf.ts): there and executable, no chmod at clone time. */
export const SEED_CLOCK_RESEED = "clock-reseed";
/** extraFiles land under banger-seed/files/<absolute guest path>; init copies them over /. */
export const SEED_FILES = "files";

const HOSTNAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const PUBKEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x21-\x7e][\x20-\x7e]*)?$/;
const GUEST_PATH_RE = /^(\/[A-Za-z0-9._@+-]+)+$/;

/** Throws E_BAD_NAME unless `name` is a valid guest hostname ([a-z0-9][a-z0-9-]{0,62}). */
export function validateHostname(name: string): string {
  if (!HOSTNAME_RE.test(name)) {
    throw new BangerError("E_BAD_NAME", `invalid hostname ${JSON.stringify(name)}: use 1-63 of [a-z0-9-], starting with a letter or digit`);
  }
  return name;
}

/** Throws E_BAD_REQUEST unless `key` is one OpenSSH public key line. */
export function validateAuthorizedKey(key: string): string {
  const line = key.trim();
  if (line.includes("\n") || line.includes("\r") || !PUBKEY_RE.test(line)) {
    throw new BangerError("E_BAD_REQUEST", "authorized key must be one OpenSSH public key line (e.g. \"ssh-ed25519 AAAA... comment\")");
  }
  return line;
}

/** Throws E_BAD_REQUEST unless `p` is an absolute guest path with plain segments (no "..", no spaces). */
export function validateGuestPath(p: string): string {
  if (!GUEST_PATH_RE.test(p) || p.split("/").some((s) => s === "." || s === "..")) {
    throw new BangerError("E_BAD_REQUEST", `invalid guest path ${JSON.stringify(p)}: must be absolute, segments of [A-Za-z0-9._@+-], no "." or ".."`);
  }
  return p;
}

/** The cpio entries of a per-VM seed (exported for tests). */
export function seedEntries(opts: { hostname: string; authorizedKey: string; hostKey: Uint8Array; extraFiles?: Record<string, string> }): CpioEntry[] {
  const entries: CpioEntry[] = [
    { path: SEED_DIR, type: "dir", mode: 0o700 },
    { path: `${SEED_DIR}/${SEED_HOSTNAME}`, type: "file", mode: 0o644, data: `${validateHostname(opts.hostname)}\n` },
    { path: `${SEED_DIR}/${SEED_AUTHORIZED_KEYS}`, type: "file", mode: 0o600, data: `${validateAuthorizedKey(opts.authorizedKey)}\n` },
    { path: `${SEED_DIR}/${SEED_HOST_KEY}`, type: "file", mode: 0o600, data: opts.hostKey },
    { path: `${SEED_DIR}/${SEED_CLOCK_RESEED}`, type: "file", mode: 0o700, data: CLOCK_RESEED_ELF },
  ];
  const extra = Object.entries(opts.extraFiles ?? {}).map(([p, data]) => [validateGuestPath(p), data] as const);
  if (extra.length > 0) {
    const dirs = new Set<string>();
    for (const [p] of extra) {
      const segs = p.split("/").slice(1, -1);
      for (let i = 1; i <= segs.length; i++) dirs.add(segs.slice(0, i).join("/"));
    }
    entries.push({ path: `${SEED_DIR}/${SEED_FILES}`, type: "dir", mode: 0o755 });
    for (const d of [...dirs].sort()) entries.push({ path: `${SEED_DIR}/${SEED_FILES}/${d}`, type: "dir", mode: 0o755 });
    for (const [p, data] of extra.sort(([a], [b]) => a.localeCompare(b))) {
      entries.push({ path: `${SEED_DIR}/${SEED_FILES}${p}`, type: "file", mode: 0o644, data });
    }
  }
  return entries;
}

/**
 * Write `out` = the image's base initrd followed by a second gzip'd newc
 * cpio holding /banger-seed/{hostname,authorized_keys,dropbear_ed25519_host_key}
 * (+ files/<path> for extraFiles). The kernel unpacks both archives; the
 * base initrd's /init copies /banger-seed to /run/banger-seed in the new
 * root. Nothing is mounted and no shell is involved: the archive is written
 * in-process. `out` is replaced atomically (temp file + rename), mode 0600.
 */
export async function buildSeedInitrd(opts: {
  exec: Exec;
  fs: FS;
  baseInitrd: string;
  out: string;
  hostname: string;
  authorizedKey: string;
  hostKeyPath: string;
  extraFiles?: Record<string, string>;
}): Promise<void> {
  const hostKey = await _readOr(opts.fs, opts.hostKeyPath, "host key");
  const seed = writeCpioGz(
    seedEntries({ hostname: opts.hostname, authorizedKey: opts.authorizedKey, hostKey, extraFiles: opts.extraFiles }),
  );
  const base = await _readOr(opts.fs, opts.baseInitrd, "base initrd");
  // No padding between the two gzip members: the kernel needs 4-byte alignment
  // only for uncompressed archives, and plain concatenation keeps `zcat | cpio -t` working.
  const out = new Uint8Array(base.length + seed.length);
  out.set(base, 0);
  out.set(seed, base.length);
  const tmp = tempPathFor(opts.out);
  await opts.fs.writeFile(tmp, out, 0o600);
  await opts.fs.chmod(tmp, 0o600);
  await opts.fs.rename(tmp, opts.out);
}

async function _readOr(fs: FS, path: string, what: string): Promise<Uint8Array> {
  try {
    return await fs.readBytes(path);
  } catch (e) {
    throw new BangerError("E_NOT_FOUND", `cannot read ${what} ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Make a VM's key pair set in `dir`: the client key (OpenSSH ed25519,
 * `id_ed25519` + `.pub`, which ssh2 parses) and the guest's dropbear host key
 * (`host_ed25519_dropbear`) with its public line, which the client pins.
 * Both are made in-process (ssh-keys.ts), files mode 0600, each written to a
 * temp name and renamed so a killed daemon leaves a whole key or none.
 * Refuses to overwrite existing keys.
 */
export async function generateVMKeys(opts: { fs: FS; dir: string }): Promise<{
  clientKeyPath: string;
  clientPublicKey: string;
  hostKeyPath: string;
  hostPublicKey: string;
}> {
  const { fs, dir } = opts;
  await fs.mkdirp(dir, 0o700);
  const clientKeyPath = join(dir, "id_ed25519");
  const hostKeyPath = join(dir, "host_ed25519_dropbear");
  for (const p of [clientKeyPath, `${clientKeyPath}.pub`, hostKeyPath]) {
    if (await fs.exists(p)) throw new BangerError("E_CONFLICT", `${p} already exists; not overwriting a VM key`);
  }
  const client = newEd25519KeyPair();
  const host = newEd25519KeyPair();
  const clientPublicKey = sshPublicKeyLine(client.publicKey);
  await _writeKeyFile(fs, clientKeyPath, opensshPrivateKey(client, KEY_COMMENT));
  await _writeKeyFile(fs, `${clientKeyPath}.pub`, `${clientPublicKey} ${KEY_COMMENT}\n`);
  await _writeKeyFile(fs, hostKeyPath, dropbearEd25519Key(host));
  return { clientKeyPath, clientPublicKey, hostKeyPath, hostPublicKey: sshPublicKeyLine(host.publicKey) };
}

const KEY_COMMENT = "banger";

async function _writeKeyFile(fs: FS, path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathFor(path);
  // a fresh name (random): created here with 0600, which no umask widens
  await fs.writeFile(tmp, data, 0o600);
  await fs.rename(tmp, path);
}
