import type { Engine } from "../core/engine.ts";
import type { Logger } from "../core/plugin.ts";
import type { Host } from "../host/types.ts";
import type { Store } from "../store/store.ts";
import type { SSHPool } from "./ssh-pool.ts";

export interface SessionRouteDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Host;
  store: Store;
  log: Logger;
}

/** Session routes under /v1/sessions and /v1/vms/:vm/sessions (wired to the session engine). */
export function createSessionRoutes(_deps: SessionRouteDeps) {
  return {
    async reconcile(): Promise<void> {},
    async route(_req: Request, _url: URL, _parts: string[]): Promise<Response | null> {
      return null;
    },
  };
}
