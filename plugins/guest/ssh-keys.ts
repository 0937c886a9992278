/**
 * A VM's ed25519 keys made in-process and written in the two formats its
 * ends read: OpenSSH's "openssh-key-v1" for the client key (ssh2 and ssh read
 * it) and dropbear's own file for the guest's host key. Making them here
 * instead of running ssh-keygen and dropbearkey (twice) saves a clone three
 * process spawns of daemon CPU (issue 15, P8b/P8c).
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";

export interface Ed25519KeyPair {
  /** The 32-byte private seed (RFC 8032's "private key"). */
  seed: Uint8Array;
  /** The 32-byte public key. */
  publicKey: Uint8Array;
}

const KEY_TYPE = "ssh-ed25519";
const KEY_LEN = 32;

/** A new ed25519 key pair from the OS's CSPRNG (node:crypto, in-process). */
export function newEd25519KeyPair(): Ed25519KeyPair {
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  if (typeof jwk.d !== "string" || typeof jwk.x !== "string") throw new Error("ed25519 JWK export lacks d or x");
  return _checked({ seed: Buffer.from(jwk.d, "base64url"), publicKey: Buffer.from(jwk.x, "base64url") });
}

/** The `authorized_keys` / known-hosts line of a public key: "ssh-ed25519 AAAA…" (no comment). */
export function sshPublicKeyLine(publicKey: Uint8Array): string {
  return `${KEY_TYPE} ${Buffer.from(_publicBlob(publicKey)).toString("base64")}`;
}

/**
 * The unencrypted OpenSSH private key file ("-----BEGIN OPENSSH PRIVATE KEY-----",
 * PROTOCOL.key in OpenSSH's source): cipher and kdf "none", one key, its private
 * section opened by a repeated check integer and padded to the 8-byte cipher
 * block with 1, 2, 3… as ssh-keygen writes it. `checkint` defaults to a random one,
 * as ssh-keygen's; tests pass their own for a fixed output.
 */
export function opensshPrivateKey(key: Ed25519KeyPair, comment = "banger", checkint = randomBytes(4).readUInt32BE(0)): string {
  _checked(key);
  const priv = new Uint8Array(2 * KEY_LEN);
  priv.set(key.seed, 0);
  priv.set(key.publicKey, KEY_LEN);
  const section = [_u32(checkint), _u32(checkint), _string(KEY_TYPE), _string(key.publicKey), _string(priv), _string(comment)];
  const unpadded = _length(section);
  const pad = (8 - (unpadded % 8)) % 8;
  section.push(Uint8Array.from({ length: pad }, (_, i) => i + 1));
  const body = _concat([
    new TextEncoder().encode("openssh-key-v1\0"),
    _string("none"),
    _string("none"),
    _string(new Uint8Array(0)),
    _u32(1),
    _string(_publicBlob(key.publicKey)),
    _string(_concat(section)),
  ]);
  const b64 = Buffer.from(body).toString("base64");
  const lines = b64.match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/**
 * Dropbear's ed25519 key file (ed25519.c buf_put_ed25519_priv_key, the same
 * since 2020.79 and in bookworm's 2022.83): string "ssh-ed25519", then a uint32
 * 64 and the 32-byte seed followed by the 32-byte public key; 83 bytes, no header.
 */
export function dropbearEd25519Key(key: Ed25519KeyPair): Uint8Array {
  _checked(key);
  return _concat([_string(KEY_TYPE), _u32(2 * KEY_LEN), key.seed, key.publicKey]);
}

function _checked(key: Ed25519KeyPair): Ed25519KeyPair {
  if (key.seed.length !== KEY_LEN || key.publicKey.length !== KEY_LEN) {
    throw new Error(`ed25519 seed and public key must be ${KEY_LEN} bytes each, not ${key.seed.length} and ${key.publicKey.length}`);
  }
  return key;
}

function _publicBlob(publicKey: Uint8Array): Uint8Array {
  return _concat([_string(KEY_TYPE), _string(publicKey)]);
}

function _u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0);
  return b;
}

/** SSH wire "string": a uint32 length, then the bytes. */
function _string(s: string | Uint8Array): Uint8Array {
  const bytes = typeof s === "string" ? new TextEncoder().encode(s) : s;
  return _concat([_u32(bytes.length), bytes]);
}

function _length(parts: readonly Uint8Array[]): number {
  return parts.reduce((n, p) => n + p.length, 0);
}

function _concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(_length(parts));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
