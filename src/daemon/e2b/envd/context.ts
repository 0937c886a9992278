import { createContextKey, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Engine } from "../../../core/engine.ts";
import type { Logger } from "../../../core/plugin.ts";
import type { Host } from "../../../host/types.ts";
import type { SessionEngine } from "../../../sessions/engine.ts";
import type { VMRecord } from "../../../shared/model.ts";
import type { SSHPool } from "../../ssh-pool.ts";

/**
 * What envd's services share with the dispatcher (index.ts), in a module of
 * its own: index.ts imports every service, so a service importing index.ts
 * would make a cycle.
 */

/** The sandbox a call is for, as the listener found it from `E2b-Sandbox-Id`. */
export interface EnvdSandbox {
  /** The E2B sandbox id (banger's VM name). */
  id: string;
  vm: VMRecord;
  /** envVars given at create: every process and command starts with them. */
  envVars: Record<string, string>;
}

/** What envd needs from the daemon. */
export interface EnvdDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Host;
  log: Logger;
  sessions: SessionEngine;
}

/** Handlers read their sandbox from the call's context: `sandboxOf(ctx)`. */
export const SANDBOX_KEY = createContextKey<EnvdSandbox | null>(null, { description: "e2b sandbox" });

export function sandboxOf(ctx: HandlerContext): EnvdSandbox {
  const sb = ctx.values.get(SANDBOX_KEY);
  if (!sb) throw new Error("envd handler called without a sandbox");
  return sb;
}

/** A service registration: each service file adds its implementation to the router. */
export type RegisterService = (router: ConnectRouter, deps: EnvdDeps) => void;

/** Plain-HTTP envd endpoints (/files, /health) take the request as is; null: not theirs. */
export type HttpEndpoint = (req: Request, url: URL, sandbox: EnvdSandbox, deps: EnvdDeps) => Promise<Response | null>;

