import { createConnectRouter, createContextKey, createContextValues, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { universalServerRequestFromFetch, universalServerResponseToFetch, type UniversalHandler } from "@connectrpc/connect/protocol";
import type { Engine } from "../../../core/engine.ts";
import type { Logger } from "../../../core/plugin.ts";
import type { Host } from "../../../host/types.ts";
import type { SessionEngine } from "../../../sessions/engine.ts";
import type { VMRecord } from "../../../shared/model.ts";
import type { SSHPool } from "../../ssh-pool.ts";

/**
 * envd, emulated by the daemon: the per-sandbox API the E2B SDK speaks
 * (Connect services process.Process and filesystem.Filesystem, plus the
 * plain HTTP /files and /health). The control plane's listener has already
 * checked the sandbox's access token and found its VM; this answers the call.
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

export interface Envd {
  handle(req: Request, sandbox: EnvdSandbox): Promise<Response>;
}

/** Handlers read their sandbox from the call's context: `sandboxOf(ctx)`. */
const _SANDBOX = createContextKey<EnvdSandbox | null>(null, { description: "e2b sandbox" });

export function sandboxOf(ctx: HandlerContext): EnvdSandbox {
  const sb = ctx.values.get(_SANDBOX);
  if (!sb) throw new Error("envd handler called without a sandbox");
  return sb;
}

/** A service registration: each service file adds its implementation to the router. */
export type RegisterService = (router: ConnectRouter, deps: EnvdDeps) => void;

/** Plain-HTTP envd endpoints (/files, /health) take the request as is; null: not theirs. */
export type HttpEndpoint = (req: Request, url: URL, sandbox: EnvdSandbox, deps: EnvdDeps) => Promise<Response | null>;

const _SERVICES: RegisterService[] = [];
const _HTTP: HttpEndpoint[] = [];

export function createEnvd(deps: EnvdDeps, services: RegisterService[] = _SERVICES, http: HttpEndpoint[] = _HTTP): Envd {
  const router = createConnectRouter();
  for (const register of services) register(router, deps);
  const byPath = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  return {
    async handle(req, sandbox) {
      const url = new URL(req.url);
      const rpc = byPath.get(url.pathname);
      if (rpc) {
        const ureq = universalServerRequestFromFetch(req, {});
        ureq.contextValues = createContextValues().set(_SANDBOX, sandbox);
        return universalServerResponseToFetch(await rpc(ureq));
      }
      for (const endpoint of http) {
        const res = await endpoint(req, url, sandbox, deps);
        if (res) return res;
      }
      return Response.json({ code: 404, message: `envd has no ${req.method} ${url.pathname}` }, { status: 404 });
    },
  };
}
