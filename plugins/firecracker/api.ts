import { BangerError, type UnixHttp } from "../../src/plugin-api.ts";

/** One request the driver sends to Firecracker's API. */
export interface FcCall {
  method: "GET" | "PUT" | "PATCH";
  path: string;
  body?: unknown;
}

/** Firecracker refused a request: its own `fault_message` is what the user needs to read. */
export class FirecrackerApiError extends BangerError {
  constructor(
    readonly call: FcCall,
    readonly status: number,
    readonly faultMessage: string,
  ) {
    super(status >= 500 ? "E_INTERNAL" : "E_BAD_REQUEST", `firecracker refused ${call.method} ${call.path} (HTTP ${status}): ${faultMessage}`);
    this.name = "FirecrackerApiError";
  }
}

/** Firecracker's Error body is `{"fault_message": "…"}`; anything else is shown as it came. */
export function faultMessageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { fault_message?: unknown };
    if (typeof parsed?.fault_message === "string" && parsed.fault_message) return parsed.fault_message;
  } catch {
    // not JSON: fall through to the raw text
  }
  return body.trim() || "(no fault_message)";
}

export interface FirecrackerApi {
  /** Send one call; resolves with the parsed JSON body (undefined for 204), throws FirecrackerApiError on 4xx/5xx. */
  send(call: FcCall): Promise<unknown>;
}

/** A client for one VM's API socket; every request is bounded by timeoutMs. */
export function firecrackerApi(http: UnixHttp, sockPath: string, timeoutMs = 5000): FirecrackerApi {
  return {
    async send(call) {
      const res = await http.request(
        sockPath,
        { method: call.method, path: call.path, body: call.body === undefined ? undefined : JSON.stringify(call.body) },
        timeoutMs,
      );
      if (res.status >= 400) throw new FirecrackerApiError(call, res.status, faultMessageOf(res.body));
      if (!res.body) return undefined;
      try {
        return JSON.parse(res.body);
      } catch {
        throw new BangerError("E_INTERNAL", `firecracker answered ${call.method} ${call.path} with non-JSON: ${res.body.slice(0, 200)}`);
      }
    },
  };
}
