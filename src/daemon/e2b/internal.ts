import { BangerError, ERROR_CODES, type ErrorCode } from "../../shared/errors.ts";

/** The daemon's own request handler (src/daemon/app.ts). */
export type DaemonApp = (req: Request) => Promise<Response>;

/**
 * One request to the daemon's own API, in process: the E2B front door
 * translates into the same routes the CLI uses (create with its warm
 * templates, TTLs, pause, snapshots, ports) instead of a second copy of
 * them. JSON and NDJSON answers both come back as their result; an error
 * comes back as the BangerError it was.
 */
export async function callDaemon<T>(app: DaemonApp, method: "GET" | "POST" | "DELETE", path: string, body?: unknown, onProgress?: (m: string) => void): Promise<T> {
  const res = await app(
    new Request(`http://banger${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
  if ((res.headers.get("content-type") ?? "").includes("ndjson")) return _lastEvent<T>(res, onProgress);
  const data = (await res.json()) as { error?: { code: string; message: string } };
  if (!res.ok || data.error) throw _error(data.error, res.status);
  return data as T;
}

async function _lastEvent<T>(res: Response, onProgress?: (m: string) => void): Promise<T> {
  const text = await res.text();
  for (const line of text.split("\n")) {
    if (!line) continue;
    const ev = JSON.parse(line) as { type: string; data?: unknown; message?: string; error?: { code: string; message: string } };
    if (ev.type === "progress" && ev.message) onProgress?.(ev.message);
    if (ev.type === "error") throw _error(ev.error, 500);
    if (ev.type === "result") return ev.data as T;
  }
  throw new BangerError("E_INTERNAL", "the daemon's stream ended without a result");
}

function _error(e: { code: string; message: string } | undefined, status: number): BangerError {
  const code = (e?.code && e.code in ERROR_CODES ? e.code : "E_INTERNAL") as ErrorCode;
  return new BangerError(code, e?.message ?? `HTTP ${status}`);
}
