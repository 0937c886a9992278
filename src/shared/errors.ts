/** Stable error codes; each maps to an HTTP status and a CLI exit code. */
export const ERROR_CODES = {
  E_USAGE: { http: 400, exit: 2 },
  E_BAD_NAME: { http: 400, exit: 2 },
  E_BAD_REQUEST: { http: 400, exit: 2 },
  E_NOT_FOUND: { http: 404, exit: 1 },
  E_VM_NOT_FOUND: { http: 404, exit: 1 },
  E_IMAGE_NOT_FOUND: { http: 404, exit: 1 },
  E_SESSION_NOT_FOUND: { http: 404, exit: 1 },
  /** A known path asked with a method it does not take (the answer's Allow header names the ones it does). */
  E_METHOD: { http: 405, exit: 2 },
  E_TOO_LARGE: { http: 413, exit: 2 },
  E_CONFLICT: { http: 409, exit: 1 },
  /** The guest (or host) refused a file operation: permission denied, a read-only filesystem. */
  E_PERMISSION: { http: 403, exit: 1 },
  E_NAME_TAKEN: { http: 409, exit: 1 },
  /** A host port a VM publishes is taken by something else. */
  E_PORT_IN_USE: { http: 409, exit: 1 },
  E_STATE: { http: 409, exit: 1 },
  E_MISSING_TOOL: { http: 500, exit: 1 },
  E_TIMEOUT: { http: 504, exit: 1 },
  /** The person waiting went away (the CLI's Ctrl-C) and what they asked for was stopped and undone. */
  E_CANCELLED: { http: 499, exit: 130 },
  /** The host's filesystem (under BANGER_HOME) had no room for what was asked; it was undone. */
  E_NO_SPACE: { http: 507, exit: 1 },
  E_DAEMON: { http: 500, exit: 1 },
  /** The request named another build in its version header: refused unread, so the CLI may replace the daemon and resend. */
  E_DAEMON_VERSION: { http: 409, exit: 1 },
  E_PLUGIN: { http: 500, exit: 1 },
  E_INTERNAL: { http: 500, exit: 1 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

let originOfNewErrors: (() => unknown) | undefined;

/**
 * Set by the daemon: each new BangerError records the request it was made
 * in, so a rejection nobody handled can still fail just that request.
 */
export function setErrorOrigin(fn: (() => unknown) | undefined): void {
  originOfNewErrors = fn;
}

export class BangerError extends Error {
  readonly code: ErrorCode;
  /** The request (daemon scope) this error was made in, if any; not enumerable, so never serialised. */
  declare readonly origin: unknown;
  /** What failed while an operation unwound after this error (its first failure): one line each, `label: message`. */
  readonly undoFailures: string[];
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; undoFailures?: string[] }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.undoFailures = options?.undoFailures ?? [];
    this.name = "BangerError";
    Object.defineProperty(this, "origin", { value: originOfNewErrors?.(), enumerable: false });
  }
  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }
  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
}

export function isBangerError(e: unknown): e is BangerError {
  return e instanceof BangerError;
}

/** The undo failures an error carries (none for anything but a BangerError that has them). */
export function undoFailuresOf(e: unknown): string[] {
  return e instanceof BangerError ? e.undoFailures : [];
}

/** A message with its undo failures appended, still one line: `msg (undo also failed: a; b)`. */
export function withUndoNote(message: string, undoFailures: readonly string[]): string {
  return undoFailures.length ? `${message} (undo also failed: ${undoFailures.join("; ")})` : message;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A failure met because the host's disk filled (a host tool's "No space left on device", a node ENOSPC,
 * SQLite's "database or disk is full"), said as that with what the person can do (E_NO_SPACE); null for any
 * other. `name`: the operation, `undone`: whether its undo ran clean (absent: not an operation's). A guest's
 * full disk is not this: its commands fail as E_STATE, their callers saying so themselves.
 */
export function hostDiskFull(e: unknown, o: { name?: string; undone?: boolean } = {}): BangerError | null {
  if (e instanceof BangerError && e.code === "E_NO_SPACE") return e;
  const text = errorMessage(e);
  const internal = !(e instanceof BangerError) || e.code === "E_INTERNAL";
  const hostTool = internal && /failed \(exit \d+\):[^]*No space left on device/.test(text);
  const nodeFs = (e as { code?: unknown } | null)?.code === "ENOSPC";
  const sqlite = internal && /database or disk is full/.test(text);
  if (!hostTool && !nodeFs && !sqlite) return null;
  const undone = o.undone === undefined ? "" : o.undone ? "; what it did was undone" : "; it was undone as far as it could be";
  return new BangerError("E_NO_SPACE", `${o.name ? `${o.name}: ` : ""}the host's disk is full (${text.split("\n")[0]})${undone}: free space on it and try again`, { cause: e });
}
