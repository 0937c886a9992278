import { describe, expect, test } from "bun:test";
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { utils } from "ssh2";
import { dropbearEd25519Key, newEd25519KeyPair, opensshPrivateKey, sshPublicKeyLine, type Ed25519KeyPair } from "../../plugins/guest/ssh-keys.ts";

// RFC 8032 section 7.1, test 1: a seed and the public key it derives
const RFC_SEED = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
const RFC_PUB = Buffer.from("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "hex");
const RFC: Ed25519KeyPair = { seed: RFC_SEED, publicKey: RFC_PUB };

/** The public key node derives from a seed (PKCS#8 DER = a fixed 16-byte prefix + the seed). */
function derivedPublic(seed: Uint8Array): Buffer {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" });
  return Buffer.from(jwk.x!, "base64url");
}

/** A reader of SSH wire fields, to take a file apart independently of how it was put together. */
function reader(buf: Uint8Array) {
  let at = 0;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    u32() {
      const n = dv.getUint32(at);
      at += 4;
      return n;
    },
    bytes(n: number) {
      if (at + n > buf.length) throw new Error(`read past the end (${at}+${n} > ${buf.length})`);
      const b = Buffer.from(buf.subarray(at, at + n));
      at += n;
      return b;
    },
    string() {
      return this.bytes(this.u32());
    },
    rest() {
      return this.bytes(buf.length - at);
    },
  };
}

function pemBody(text: string): Buffer {
  const m = /^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=\n]+)\n-----END OPENSSH PRIVATE KEY-----\n$/.exec(text);
  if (!m) throw new Error(`not an OpenSSH private key file: ${JSON.stringify(text.slice(0, 60))}`);
  expect(m[1]!.split("\n").every((l) => l.length <= 70)).toBe(true);
  return Buffer.from(m[1]!.replace(/\n/g, ""), "base64");
}

describe("newEd25519KeyPair", () => {
  test("a 32-byte seed and the public key derived from it; a new pair every call", () => {
    const a = newEd25519KeyPair();
    const b = newEd25519KeyPair();
    expect(a.seed.length).toBe(32);
    expect(a.publicKey.length).toBe(32);
    expect(Buffer.from(a.publicKey).equals(derivedPublic(a.seed))).toBe(true);
    expect(Buffer.from(a.seed).equals(Buffer.from(b.seed))).toBe(false);
    expect(Buffer.from(a.publicKey).equals(Buffer.from(b.publicKey))).toBe(false);
  });

  test("the derivation check itself holds on RFC 8032's vector", () => {
    expect(derivedPublic(RFC_SEED).equals(RFC_PUB)).toBe(true);
  });
});

describe("sshPublicKeyLine", () => {
  test("'ssh-ed25519 ' + base64(string type, string key)", () => {
    const line = sshPublicKeyLine(RFC_PUB);
    expect(line.startsWith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")).toBe(true);
    const r = reader(Buffer.from(line.split(" ")[1]!, "base64"));
    expect(r.string().toString()).toBe("ssh-ed25519");
    expect(r.string().equals(RFC_PUB)).toBe(true);
    expect(r.rest().length).toBe(0);
  });
});

describe("opensshPrivateKey", () => {
  test("openssh-key-v1 layout: none/none, one key, repeated checkint, seed+public, comment, padding 1,2,3…", () => {
    const r = reader(pemBody(opensshPrivateKey(RFC, "banger", 0xdeadbeef)));
    expect(r.bytes(15).toString("latin1")).toBe("openssh-key-v1\0");
    expect(r.string().toString()).toBe("none");
    expect(r.string().toString()).toBe("none");
    expect(r.string().length).toBe(0);
    expect(r.u32()).toBe(1);
    const pubBlob = r.string();
    expect(pubBlob.equals(Buffer.from(sshPublicKeyLine(RFC_PUB).split(" ")[1]!, "base64"))).toBe(true);
    const section = r.string();
    expect(r.rest().length).toBe(0);
    expect(section.length % 8).toBe(0);
    const s = reader(section);
    expect(s.u32()).toBe(0xdeadbeef);
    expect(s.u32()).toBe(0xdeadbeef);
    expect(s.string().toString()).toBe("ssh-ed25519");
    expect(s.string().equals(RFC_PUB)).toBe(true);
    expect(s.string().equals(Buffer.concat([RFC_SEED, RFC_PUB]))).toBe(true);
    expect(s.string().toString()).toBe("banger");
    const pad = s.rest();
    expect(pad.length).toBeLessThan(8);
    expect([...pad]).toEqual(Array.from({ length: pad.length }, (_, i) => i + 1));
  });

  test.each(["", "a", "banger", "seven77", "a comment of some length"])("comment %p pads the section to a multiple of 8", (comment) => {
    const r = reader(pemBody(opensshPrivateKey(RFC, comment, 1)));
    r.bytes(15);
    r.string();
    r.string();
    r.string();
    r.u32();
    r.string();
    const section = r.string();
    expect(section.length % 8).toBe(0);
    const s = reader(section);
    for (let i = 0; i < 2; i++) s.u32();
    for (let i = 0; i < 3; i++) s.string();
    expect(s.string().toString()).toBe(comment);
  });

  test("the checkint is random unless given", () => {
    const checkint = (text: string) => {
      const r = reader(pemBody(text));
      r.bytes(15);
      for (let i = 0; i < 3; i++) r.string();
      r.u32();
      r.string();
      return reader(r.string()).u32();
    };
    const seen = new Set(Array.from({ length: 8 }, () => checkint(opensshPrivateKey(RFC))));
    expect(seen.size).toBeGreaterThan(1);
  });

  test("ssh2 parses it, and a signature it makes verifies against the public key", () => {
    const key = newEd25519KeyPair();
    const parsed = utils.parseKey(opensshPrivateKey(key));
    if (parsed instanceof Error) throw parsed;
    const k = Array.isArray(parsed) ? parsed[0]! : parsed;
    expect(k.type).toBe("ssh-ed25519");
    expect(k.comment).toBe("banger");
    expect(k.isPrivateKey()).toBe(true);
    expect(k.getPublicSSH().equals(Buffer.from(sshPublicKeyLine(key.publicKey).split(" ")[1]!, "base64"))).toBe(true);
    const data = Buffer.from("banger signs this");
    const sig = k.sign(data);
    if (sig instanceof Error) throw sig;
    const pub = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(key.publicKey).toString("base64url") }, format: "jwk" });
    expect(verify(null, data, pub, sig)).toBe(true);
    // and the other way round: node's signature with the seed verifies in ssh2
    const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), key.seed]);
    const nodeSig = sign(null, data, createPrivateKey({ key: der, format: "der", type: "pkcs8" }));
    expect(k.verify(data, nodeSig)).toBe(true);
  });

  test("refuses a seed or public key of the wrong length", () => {
    expect(() => opensshPrivateKey({ seed: RFC_SEED.subarray(1), publicKey: RFC_PUB })).toThrow(/32 bytes/);
    expect(() => dropbearEd25519Key({ seed: RFC_SEED, publicKey: Buffer.alloc(33) })).toThrow(/32 bytes/);
  });
});

describe("dropbearEd25519Key", () => {
  test("string 'ssh-ed25519', uint32 64, seed, public key: 83 bytes", () => {
    const file = dropbearEd25519Key(RFC);
    expect(file.length).toBe(83);
    const r = reader(file);
    expect(r.string().toString()).toBe("ssh-ed25519");
    expect(r.u32()).toBe(64);
    expect(r.bytes(32).equals(RFC_SEED)).toBe(true);
    expect(r.bytes(32).equals(RFC_PUB)).toBe(true);
    expect(r.rest().length).toBe(0);
  });
});
