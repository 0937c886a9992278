// `banger image build --file banger.image.ts`: the recipe is a TypeScript
// file the compiled binary imports (as it imports plugins), whose default
// export is `defineImage({ name, from, packages, run, copy, env, size })`.
import { dirname, resolve } from "node:path";
import { BangerError, errorMessage } from "../shared/errors.ts";
import { defineImage, parseCopy, type ImageCopy, type ImageRecipe } from "../shared/image-recipe.ts";

interface BuildPosition {
  file?: string;
  line?: number;
  column?: number;
}

/** "file:line:col: message" for a file Bun could not parse, else the plain message. */
function _where(e: unknown, abs: string): string {
  const first = (e as { errors?: { message?: string; position?: BuildPosition }[] }).errors?.[0];
  const pos = first?.position ?? (e as { position?: BuildPosition }).position;
  if (pos?.line) return `${pos.file ?? abs}:${pos.line}:${pos.column ?? 0}: ${first?.message ?? errorMessage(e)}`;
  return `${abs}: ${errorMessage(e)}`;
}

/**
 * Load a recipe file. `defineImage` is a global while it loads, so the file
 * needs no import (`import type { ImageRecipe } from "banger/src/plugin-api.ts"`
 * for types is erased). Copy sources are relative to the file's dir.
 */
export async function loadImageFile(path: string): Promise<ImageRecipe> {
  const abs = resolve(path);
  const g = globalThis as { defineImage?: unknown };
  g.defineImage = defineImage;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(abs)) as Record<string, unknown>;
  } catch (e) {
    const missing = /Cannot find module|ENOENT|not found/i.test(errorMessage(e)) && !(e as { errors?: unknown[] }).errors;
    throw new BangerError("E_BAD_REQUEST", missing ? `recipe file not found: ${abs}` : `cannot load recipe ${_where(e, abs)}`, { cause: e });
  }
  const r = mod.default as Record<string, unknown> | undefined;
  if (!r || typeof r !== "object" || typeof r.name !== "string") {
    throw new BangerError("E_BAD_REQUEST", `${abs} must \`export default defineImage({ name, from, packages, run, copy, env, size })\``);
  }
  const base = dirname(abs);
  const copy = Array.isArray(r.copy)
    ? (r.copy as (string | ImageCopy)[]).map((c) => {
        const cc = typeof c === "string" ? parseCopy(c) : c;
        return { host: typeof cc?.host === "string" ? resolve(base, cc.host) : cc?.host, guest: cc?.guest } as ImageCopy;
      })
    : (r.copy as ImageCopy[] | undefined);
  return { ...(r as unknown as ImageRecipe), copy };
}
