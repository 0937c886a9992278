import { join } from "node:path";
import { checkExecOptions } from "../shared/exec-options.ts";
import { mayBeFromOci, type ImageRecord, type VMRecord } from "../shared/model.ts";
import type { FS } from "../host/types.ts";

/**
 * The user a command in a VM runs as when none is asked for (`-u`): its OCI
 * image's `User`, as a container of that image would run it (its `Env` and
 * `WorkingDir` are the login shell's already), or of the OCI image it was
 * built or committed on. Root (undefined) for any other
 * image, a root User, or one `-u` would refuse (a malformed config is the
 * image's problem, not every exec's).
 */
export async function imageDefaultUser(fs: FS, getImage: (name: string) => ImageRecord | null, vm: VMRecord): Promise<string | undefined> {
  const img = getImage(vm.spec.image);
  if (!img || !mayBeFromOci(img)) return undefined;
  let user: unknown;
  try {
    user = (JSON.parse((await fs.readText(join(img.dir, "manifest.json"))) ?? "{}") as { oci?: { user?: unknown } }).oci?.user;
  } catch {
    return undefined;
  }
  if (typeof user !== "string" || user === "" || user === "root" || user === "0" || user === "0:0") return undefined;
  try {
    checkExecOptions({ user });
  } catch {
    return undefined;
  }
  return user;
}

/** `o` with the image's user when it names none (`-u root` asks for root and keeps it). */
export function withDefaultUser<T extends { user?: string }>(o: T, imageUser: string | undefined): T {
  return o.user === undefined && imageUser !== undefined ? { ...o, user: imageUser } : o;
}
