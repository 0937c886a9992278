/**
 * The guest user of an envd call: `Authorization: Basic base64("<user>:")`,
 * as the SDK sends it, or the default. "root" is who banger logs in as, so it
 * runs as is (no user switch to pay for).
 */
export function userOf(headers: Headers, defaultUser: string): string | undefined {
  const auth = headers.get("authorization") ?? "";
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
  let user = defaultUser;
  if (m) {
    const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
    const name = decoded.includes(":") ? decoded.slice(0, decoded.indexOf(":")) : decoded;
    if (name) user = name;
  }
  return user === "root" ? undefined : user;
}
