/**
 * Who owns a path, without node:fs and without an error type: the CLI's
 * early read (src/client/early.ts) checks its socket with this alone, and
 * ./owner.ts builds its refusals on it. Apart from owner.ts because every
 * command loads this first, and each function a loaded module holds costs
 * start-up whether or not it runs (P1 in bench/results.md).
 */

/** The uid owning `path` (symlinks followed), or null when nothing is there. An async stat: it runs off the main thread. */
export async function ownerUid(path: string): Promise<number | null> {
  try {
    return (await Bun.file(path).stat()).uid;
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw e;
  }
}

/** Whether a path of this owner (null: nothing there, which we may create) is ours to use. */
export function ownedByMe(uid: number | null): boolean {
  return uid === null || uid === (process.getuid?.() ?? uid);
}
