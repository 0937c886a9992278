/** Stable error codes; each maps to an HTTP status and a CLI exit code. */
export const ERROR_CODES = {
  E_USAGE: { http: 400, exit: 2 },
  E_BAD_NAME: { http: 400, exit: 2 },
  E_BAD_REQUEST: { http: 400, exit: 2 },
  E_NOT_FOUND: { http: 404, exit: 1 },
  E_VM_NOT_FOUND: { http: 404, exit: 1 },
  E_IMAGE_NOT_FOUND: { http: 404, exit: 1 },
  E_SESSION_NOT_FOUND: { http: 404, exit: 1 },
  E_TOO_LARGE: { http: 413, exit: 2 },
  E_CONFLICT: { http: 409, exit: 1 },
  E_NAME_TAKEN: { http: 409, exit: 1 },
  E_STATE: { http: 409, exit: 1 },
  E_MISSING_TOOL: { http: 500, exit: 1 },
  E_TIMEOUT: { http: 504, exit: 1 },
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
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
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

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
