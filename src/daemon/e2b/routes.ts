import { join } from "node:path";
import type { FS, Clock } from "../../host/types.ts";
import { BangerError } from "../../shared/errors.ts";
import type { E2BRepo } from "../../store/e2b.ts";
import type { HandlersFor } from "../router.ts";
import { checkKey, createKey, hashKey } from "./keys.ts";
import type { E2BServer } from "./server.ts";
import { BASE_IMAGE, type BaseTemplate } from "./template.ts";

/** banger's own key for `e2b env`: kept (0600, in the 0700 home) so every `e2b env` prints the same one. */
export const ENV_KEY_FILE = "e2b-env-key";

/** The daemon's `banger e2b …` routes (over its unix socket, like every other command). */
export function createE2BRoutes(d: {
  server: E2BServer;
  repo: E2BRepo;
  fs: FS;
  clock: Clock;
  home: string;
  base: BaseTemplate;
  /** Refuse a VMM that is not loaded or cannot run here (the engine's own check for `vm create --vmm`). */
  checkVmm?: (name: string) => Promise<unknown>;
}): HandlersFor<"e2b"> {
  const envKeyPath = join(d.home, ENV_KEY_FILE);
  return {
    e2bStatus: async () => d.server.status(),
    e2bServe: async ({ body }) => {
      // checked now, not remembered to fail every sandbox create later with an error that blames the SDK
      if (body.vmm) await d.checkVmm?.(body.vmm);
      return d.server.serve(body);
    },
    e2bStop: async () => d.server.stop(),
    e2bEnv: async ({ body }) => {
      const st = d.server.status();
      if (!st.listening) throw new BangerError("E_STATE", "the E2B endpoint is off: start it with `banger e2b serve`");
      if (body.key !== undefined) {
        const k = checkKey(d.repo, body.key);
        if (!k) throw new BangerError("E_BAD_REQUEST", "--key is not one of banger's e2b keys (`banger e2b key list`)");
        return { apiUrl: st.apiUrl, sandboxUrl: st.sandboxUrl, apiKey: body.key, keyId: k.id, created: false };
      }
      const kept = (await d.fs.readText(envKeyPath))?.trim() ?? "";
      const k = kept ? d.repo.keyByHash(hashKey(kept)) : null;
      if (k) return { apiUrl: st.apiUrl, sandboxUrl: st.sandboxUrl, apiKey: kept, keyId: k.id, created: false };
      // none yet, or it was removed (`e2b key rm`): a new one
      const made = createKey(d.repo, `env-${d.clock.now().getTime().toString(36)}`, d.clock.now());
      await d.fs.writeAtomic(envKeyPath, `${made.key}\n`, 0o600);
      return { apiUrl: st.apiUrl, sandboxUrl: st.sandboxUrl, apiKey: made.key, keyId: made.id, created: true };
    },
    e2bKeyCreate: async ({ body }) => createKey(d.repo, body.name, d.clock.now()),
    e2bKeyList: async () => ({ keys: d.repo.listKeys() }),
    e2bKeyRemove: async ({ params }) => {
      const k = d.repo.removeKey(params.key);
      if (!k) throw new BangerError("E_NOT_FOUND", `e2b key not found: ${params.key}`);
      return { deleted: k.name, id: k.id };
    },
    e2bTemplateBuild: async ({ body, ndjson }) =>
      ndjson(async (emit) => {
        await d.base.build(emit.progress, body.force ?? false);
        return { type: "result", data: { image: BASE_IMAGE } };
      }),
  };
}
