import { emptyHandles, type VMHandles } from "../shared/model.ts";
import type { FS } from "../host/types.ts";
import { vmPaths } from "../shared/paths.ts";

export type HandlesFileStatus = "ok" | "missing" | "corrupt";

/** Scratch file: VMDir/handles.json, written atomically. */
export async function writeHandlesFile(fs: FS, vmDir: string, handles: VMHandles): Promise<void> {
  await fs.writeAtomic(vmPaths(vmDir).handles, JSON.stringify(handles, null, 2) + "\n", 0o600);
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}
function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/** Coerce arbitrary JSON into VMHandles; returns null when it isn't an object at all. */
export function parseHandles(text: string): VMHandles | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  const extra: Record<string, string> = {};
  if (r.extra && typeof r.extra === "object" && !Array.isArray(r.extra)) {
    for (const [k, v] of Object.entries(r.extra as Record<string, unknown>)) if (typeof v === "string") extra[k] = v;
  }
  return {
    ...emptyHandles(),
    pid: num(r.pid),
    pidStartTime: num(r.pidStartTime),
    tapDevice: str(r.tapDevice),
    baseLoop: str(r.baseLoop),
    cowLoop: str(r.cowLoop),
    dmName: str(r.dmName),
    dmDev: str(r.dmDev),
    extra,
  };
}

/** A missing or corrupt file is "unknown", never a crash. */
export async function readHandlesFile(fs: FS, vmDir: string): Promise<{ status: HandlesFileStatus; handles: VMHandles | null }> {
  const text = await fs.readText(vmPaths(vmDir).handles);
  if (text === null) return { status: "missing", handles: null };
  const handles = parseHandles(text);
  return handles ? { status: "ok", handles } : { status: "corrupt", handles: null };
}

export async function removeHandlesFile(fs: FS, vmDir: string): Promise<void> {
  await fs.rmrf(vmPaths(vmDir).handles);
}
