import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { BangerError } from "../../shared/errors.ts";
import type { E2BKeyInfo } from "../../shared/e2b.ts";
import type { E2BRepo } from "../../store/e2b.ts";

/** E2B's own key shape (`e2b_` + 40 hex), so tools that check the look of a key take ours. */
const KEY_RE = /^e2b_[0-9a-f]{40}$/;
const KEY_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Only this is stored: a key is 160 random bits, so a plain SHA-256 is enough (no dictionary to guess from). */
export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

export function newKey(): string {
  return `e2b_${randomBytes(20).toString("hex")}`;
}

/** An envd access token: never listed, compared in constant time. */
export function newAccessToken(): string {
  return randomBytes(24).toString("hex");
}

export function sameToken(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The key a control-plane request carries, checked against the stored hashes; null: refused. */
export function checkKey(repo: Pick<E2BRepo, "keyByHash">, given: string | null): E2BKeyInfo | null {
  if (given === null || !KEY_RE.test(given)) return null;
  return repo.keyByHash(hashKey(given));
}

/** Make a key: stored hashed, returned once. */
export function createKey(repo: Pick<E2BRepo, "addKey" | "listKeys">, name: string | undefined, now: Date): E2BKeyInfo & { key: string } {
  const id = randomBytes(4).toString("hex");
  const keyName = name ?? `key-${id}`;
  if (!KEY_NAME_RE.test(keyName)) throw new BangerError("E_BAD_NAME", `bad key name ${JSON.stringify(keyName).slice(0, 80)}: letters, digits, '_', '.', '-', up to 63`);
  if (repo.listKeys().some((k) => k.name === keyName)) throw new BangerError("E_NAME_TAKEN", `an e2b key named ${keyName} already exists`);
  const key = newKey();
  const info: E2BKeyInfo = { id, name: keyName, prefix: `${key.slice(0, 8)}…`, createdAt: now.toISOString() };
  repo.addKey({ ...info, hash: hashKey(key) });
  return { ...info, key };
}
