// The server name a TLS ClientHello asks for (RFC 6066 server_name), read
// from the first bytes a guest sends through an allowed CONNECT, so a tunnel
// opened to an allowed name cannot carry a handshake for another one.

/** "tls" with the SNI (null when the hello names none), "more" when the hello is not complete yet, "other" for a stream that is not TLS. */
export type HelloRead = { kind: "tls"; sni: string | null } | { kind: "more" } | { kind: "other" } | { kind: "bad" };

export function readClientHello(buf: Uint8Array): HelloRead {
  if (buf.length < 1) return { kind: "more" };
  if (buf[0] !== 0x16) return { kind: "other" }; // not a handshake record
  if (buf.length < 5) return { kind: "more" };
  const recLen = (buf[3]! << 8) | buf[4]!;
  // the hello may span records in theory; real clients send it in one, and a split one is refused rather than guessed at
  if (buf.length < 5 + recLen) return recLen > 16384 ? { kind: "bad" } : { kind: "more" };
  const b = buf.subarray(5, 5 + recLen);
  if (b[0] !== 0x01 || b.length < 4) return { kind: "bad" };
  const hsLen = (b[1]! << 16) | (b[2]! << 8) | b[3]!;
  if (hsLen + 4 > b.length) return { kind: "bad" };
  let i = 4 + 2 + 32; // version, random
  const need = (n: number) => i + n <= 4 + hsLen;
  if (!need(1)) return { kind: "bad" };
  i += 1 + b[i]!; // session id
  if (!need(2)) return { kind: "bad" };
  i += 2 + ((b[i]! << 8) | b[i + 1]!); // cipher suites
  if (!need(1)) return { kind: "bad" };
  i += 1 + b[i]!; // compression methods
  if (!need(2)) return { kind: "tls", sni: null };
  const extEnd = i + 2 + ((b[i]! << 8) | b[i + 1]!);
  i += 2;
  if (extEnd > 4 + hsLen) return { kind: "bad" };
  let sni: string | null = null;
  let seen = 0;
  while (i + 4 <= extEnd) {
    const type = (b[i]! << 8) | b[i + 1]!;
    const len = (b[i + 2]! << 8) | b[i + 3]!;
    const body = b.subarray(i + 4, i + 4 + len);
    if (i + 4 + len > extEnd) return { kind: "bad" };
    if (type === 0) {
      // two server_name extensions: which one would the server read? refuse
      if (++seen > 1) return { kind: "bad" };
      let j = 2;
      const listEnd = Math.min(body.length, 2 + ((body[0]! << 8) | body[1]!));
      const names: string[] = [];
      while (j + 3 <= listEnd) {
        const nt = body[j]!;
        const nl = (body[j + 1]! << 8) | body[j + 2]!;
        if (nt === 0) names.push(new TextDecoder().decode(body.subarray(j + 3, j + 3 + nl)));
        j += 3 + nl;
      }
      if (names.length !== 1) return { kind: "bad" };
      sni = names[0]!.toLowerCase().replace(/\.$/, "");
    }
    i += 4 + len;
  }
  return { kind: "tls", sni };
}
