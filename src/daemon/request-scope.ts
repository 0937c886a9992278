import { AsyncLocalStorage } from "node:async_hooks";
import { BangerError, errorMessage, setErrorOrigin } from "../shared/errors.ts";
import type { Logger } from "../core/plugin.ts";

/**
 * One request's scope: a bug that escapes its handler (an unhandled
 * rejection, an exception thrown from a callback) fails this request with
 * E_INTERNAL instead of taking the daemon and every other request down.
 */
export class RequestScope {
  /** Rejects when a bug is attributed to this request; handlers race it. */
  readonly failed: Promise<never>;
  private rejectFailed!: (e: unknown) => void;
  private holds = 0;

  constructor(
    readonly label: string,
    private readonly onIdle: (s: RequestScope) => void,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    // Nobody may be racing it any more when a late bug lands: that must not be a second unhandled rejection.
    this.failed.catch(() => {});
  }

  fail(e: unknown): void {
    const first = errorMessage(e).split("\n")[0]!.slice(0, 300);
    this.rejectFailed(new BangerError("E_INTERNAL", `internal error while handling ${this.label}: ${first} (banger daemon logs)`, { cause: e }));
  }

  /** Keep the scope alive past its route (a stream still running); the returned function lets go. */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holds === 0) this.onIdle(this);
    };
  }

  /** `p`, or this request's failure if a bug lands first. */
  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.failed]);
  }
}

const storage = new AsyncLocalStorage<RequestScope>();
const inFlight = new Set<RequestScope>();

/** The scope of the request whose code is running now, if any. */
export function currentScope(): RequestScope | undefined {
  return storage.getStore();
}

/** Run one request's handler in its own scope. */
export async function withRequestScope<T>(label: string, fn: () => Promise<T>): Promise<T> {
  // the label goes into an error line: a hostile 300-char VM name in the path must not make it a wall
  const scope = new RequestScope(label.length > 100 ? `${label.slice(0, 100)}…` : label, (s) => inFlight.delete(s));
  inFlight.add(scope);
  const release = scope.hold();
  try {
    return await storage.run(scope, () => scope.race(fn()));
  } finally {
    release();
  }
}

/** Which request a stray error belongs to: where it was made, else the only one in flight, else none. */
function ownerOf(e: unknown): RequestScope | undefined {
  const origin = e instanceof BangerError ? e.origin : undefined;
  if (origin instanceof RequestScope && inFlight.has(origin)) return origin;
  return inFlight.size === 1 ? [...inFlight][0] : undefined;
}

function describe(e: unknown): string {
  return e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
}

/**
 * Process-wide handlers that keep the daemon serving through a bug: each
 * stray error is logged with its stack and fails only the request it
 * belongs to. Bun does not run `unhandledRejection` in the rejected
 * promise's async context, so errors of ours record where they were made.
 */
export function installCrashGuards(log: Logger): () => void {
  setErrorOrigin(() => storage.getStore());
  const strayError = (kind: string) => (e: unknown) => {
    // an uncaught exception runs in the throwing callback's context; a rejection does not
    const owner = (kind === "uncaught exception" ? storage.getStore() : undefined) ?? ownerOf(e);
    log.error(`${kind}${owner ? ` in ${owner.label}` : ` not tied to a request (${inFlight.size} in flight)`}; the daemon keeps serving: ${describe(e)}`);
    owner?.fail(e);
  };
  const onRejection = strayError("unhandled rejection");
  const onException = strayError("uncaught exception");
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onException);
  return () => {
    process.off("unhandledRejection", onRejection);
    process.off("uncaughtException", onException);
    setErrorOrigin(undefined);
  };
}
