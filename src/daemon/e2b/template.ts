import type { Logger } from "../../core/plugin.ts";
import { isBangerError } from "../../shared/errors.ts";
import { callDaemon, type DaemonApp } from "./internal.ts";

/** E2B's default template ID: the SDK creates `base` when no template is named. */
export const BASE_TEMPLATE = "base";
/** The banger image behind `base` (any other template ID is an image name as is). */
export const BASE_IMAGE = "e2b-base";

/**
 * The `base` template as a banger image recipe: E2B's base has a user `user`
 * (home /home/user, passwordless sudo) whose commands run by default, and
 * the tools its SDK's helpers call (git for sandbox.git, inotify-tools and
 * attr for file watching and metadata, python3 for the usual first server).
 */
export const BASE_RECIPE = {
  name: BASE_IMAGE,
  from: "default",
  // passwd: useradd (the default image is minimal and has none)
  packages: ["sudo", "git", "python3", "inotify-tools", "attr", "passwd"],
  run: ["useradd -m -s /bin/bash user && printf 'user ALL=(ALL) NOPASSWD:ALL\\n' > /etc/sudoers.d/user && chmod 0440 /etc/sudoers.d/user"],
};

async function _exists(app: DaemonApp, name: string): Promise<boolean> {
  try {
    await callDaemon(app, "GET", `/v1/images/${name}`);
    return true;
  } catch (e) {
    if (isBangerError(e) && e.httpStatus === 404) return false;
    throw e;
  }
}

/** Build the base image (and the default one under it) when missing; one build at a time, however many creates ask. */
export function createBaseTemplate(app: DaemonApp, log: Logger) {
  let building: Promise<void> | null = null;
  const build = async (progress: (m: string) => void, force: boolean): Promise<void> => {
    if (!(await _exists(app, "default"))) {
      log.info("e2b: building the default image under the base template");
      await callDaemon(app, "POST", "/v1/images/build", { name: "default" }, progress);
    }
    log.info(`e2b: building the base template (image ${BASE_IMAGE})`);
    await callDaemon(app, "POST", "/v1/images/build", { ...BASE_RECIPE, ...(force ? { force: true } : {}) }, progress);
    log.info(`e2b: base template ready (image ${BASE_IMAGE})`);
  };
  const once = (progress: (m: string) => void, force: boolean): Promise<void> => {
    building ??= build(progress, force).finally(() => {
      building = null;
    });
    return building;
  };
  return {
    /** For a create: a cheap check, a build only when the image is missing. */
    async ensure(): Promise<void> {
      if (await _exists(app, BASE_IMAGE)) return;
      await once((m) => log.info(`e2b base template: ${m}`), false);
    },
    /** `banger e2b template build`: the recipe is cached, so an unchanged one is a no-op. */
    build(progress: (m: string) => void, force = false): Promise<void> {
      return once((m) => {
        progress(m);
        log.info(`e2b base template: ${m}`);
      }, force);
    },
  };
}

export type BaseTemplate = ReturnType<typeof createBaseTemplate>;
