import { createConnectRouter, createContextValues } from "@connectrpc/connect";
import { universalServerRequestFromFetch, universalServerResponseToFetch, type UniversalHandler } from "@connectrpc/connect/protocol";
import { SANDBOX_KEY, type EnvdDeps, type EnvdSandbox, type HttpEndpoint, type RegisterService } from "./context.ts";
import { registerFilesystem } from "./filesystem.ts";
import { filesEndpoint } from "./files.ts";
import { registerProcess } from "./process.ts";

export { sandboxOf, type EnvdDeps, type EnvdSandbox, type HttpEndpoint, type RegisterService } from "./context.ts";

/**
 * envd, emulated by the daemon: the per-sandbox API the E2B SDK speaks
 * (Connect services process.Process and filesystem.Filesystem, plus the
 * plain HTTP /files and /health). The control plane's listener has already
 * checked the sandbox's access token and found its VM; this answers the call.
 */

export interface Envd {
  handle(req: Request, sandbox: EnvdSandbox): Promise<Response>;
}

const _SERVICES: RegisterService[] = [
  registerProcess,
  registerFilesystem,
];
const _HTTP: HttpEndpoint[] = [
  filesEndpoint,
];

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
        ureq.contextValues = createContextValues().set(SANDBOX_KEY, sandbox);
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
