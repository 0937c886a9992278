/** UTF-8 text that arrives in chunks: where a chunk may be cut, and whether bytes are text at all. */

const _fatal = new TextDecoder("utf-8", { fatal: true });

/** The longest prefix of `b` that does not end inside a UTF-8 sequence: the rest waits for the bytes that finish it. */
export function completeUtf8Prefix(b: Uint8Array): number {
  let i = b.length - 1;
  let cont = 0;
  while (i >= 0 && cont < 3 && (b[i]! & 0xc0) === 0x80) {
    i--;
    cont++;
  }
  if (i < 0) return b.length;
  const lead = b[i]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need > cont + 1 ? i : b.length;
}

/** The bytes as text when they are valid UTF-8, else null (the caller says them another way: base64). */
export function utf8OrNull(b: Uint8Array): string | null {
  try {
    return _fatal.decode(b);
  } catch {
    return null;
  }
}
