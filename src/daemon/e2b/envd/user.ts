/**
 * Who an envd call acts for: one rule for processes and files, as E2B's
 * envd has it. The SDK (2.51, against envd ≥ 0.4) names a user only when
 * its caller gave one: `Authorization: Basic base64("<user>:")` on the
 * Connect calls (process and filesystem), the `username` query on `/files`.
 * A named user must be an account in the guest, or the call fails as envd's
 * does (401 / Unauthenticated: the SDK's AuthenticationError). Nobody named
 * (no header, a header that is not Basic, an empty name: the SDK sends none
 * then) means envd's default user: a template's own, which is `user` for
 * E2B's templates and banger's `base`; a guest without that account (any
 * other banger image) acts as root, which is envd's default when a template
 * names none.
 */

/** The default user's name; whether the guest has it is the guest's to say (see CallUser.defaulted). */
export const DEFAULT_USER = "user";

/** Who a call acts for: the name, and whether nobody named it (then a guest without that account acts as root). */
export interface CallUser {
  name: string;
  defaulted: boolean;
}

/** A user the call names that cannot act: the SDK's AuthenticationError (HTTP 401, Connect Unauthenticated). */
export class EnvdUserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EnvdUserError";
  }
}

/** envd's words for a named user the guest has no account for (the guest scripts print the same). */
export function unknownUserMessage(name: string): string {
  return `error looking up user '${name}': unknown user`;
}

function _basic(authorization: string | null | undefined): string {
  // base64 or base64url: Go's BasicAuth (envd) takes the standard alphabet, the SDK sends it; the other costs nothing
  const m = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(authorization ?? "");
  if (!m) return "";
  const text = Buffer.from(m[1]!, "base64").toString("utf8");
  return text.includes(":") ? text.slice(0, text.indexOf(":")) : text;
}

/**
 * The user of a call from what the SDK sent: the `username` query (only
 * `/files` has one) first, then Basic authorization, else the default.
 * Throws EnvdUserError for a name no account can have (a control character
 * such as a newline or NUL, a `:`): those never reach a guest script, where
 * `:` would read as user:group. Any other name (quotes, `;`, `$()`) is a
 * value the scripts pass safely, and the guest says whether it exists.
 */
export function callUser(sent: { query?: string | null; authorization?: string | null }): CallUser {
  const name = sent.query || _basic(sent.authorization);
  if (!name) return { name: DEFAULT_USER, defaulted: true };
  if (/[\x00-\x1f\x7f:]/.test(name)) throw new EnvdUserError(`invalid username: ${JSON.stringify(name)}`);
  return { name, defaulted: false };
}

/** The user a guest session runs as for this call: root as is (no switch to pay for), a default the guest may lack as optional. */
export function sessionUser(u: CallUser): { user?: string; userOptional?: boolean } {
  if (u.name === "root") return {};
  return u.defaulted ? { user: u.name, userOptional: true } : { user: u.name };
}

/** A session start refused for its user (the guest's "no such user in the guest: X", the session engine's error's cause) as envd's error. */
export function userRefusal(e: unknown, u: CallUser): unknown {
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    if (c.message.startsWith("no such user in the guest")) return new EnvdUserError(unknownUserMessage(u.name));
  }
  return e;
}
