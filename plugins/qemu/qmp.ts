import { BangerError } from "../../src/plugin-api.ts";
import { createConnection, type Socket } from "node:net";

/** A QMP error reply ({"error": {"class", "desc"}}). */
export class QmpError extends Error {
  constructor(
    readonly errorClass: string,
    desc: string,
  ) {
    super(`QMP ${errorClass}: ${desc}`);
    this.name = "QmpError";
  }
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * A minimal QMP client over a unix socket: one command at a time, replies
 * matched in order, asynchronous events ignored (kept in `events`). QEMU
 * serves one QMP client per socket at a time, so callers close promptly.
 */
export class QmpClient {
  readonly events: { event: string; data?: unknown }[] = [];
  private buf = "";
  private readonly queue: Pending[] = [];
  private greeting: Pending | null = null;
  private closedErr: Error | null = null;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this._feed(chunk));
    const fail = (e: Error) => {
      this.closedErr ??= e;
      this.greeting?.reject(e);
      this.greeting = null;
      for (const p of this.queue.splice(0)) p.reject(e);
    };
    sock.on("error", (e) => fail(e));
    sock.on("close", () => fail(new Error("QMP connection closed")));
  }

  /** Connect, read the greeting and negotiate capabilities, all within timeoutMs. */
  static async connect(path: string, timeoutMs = 2000): Promise<QmpClient> {
    const sock = createConnection({ path });
    const client = new QmpClient(sock);
    try {
      await _withTimeout(
        (async () => {
          await new Promise<void>((resolve, reject) => {
            client.greeting = { resolve: () => resolve(), reject };
          });
          await client._send({ execute: "qmp_capabilities" });
        })(),
        timeoutMs,
        `QMP handshake on ${path}`,
      );
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  /** Run one command; resolves with its `return` value, rejects with QmpError or on close/timeout. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = 2000): Promise<unknown> {
    const msg: Record<string, unknown> = { execute: command };
    if (args) msg.arguments = args;
    return _withTimeout(this._send(msg), timeoutMs, `QMP ${command}`);
  }

  close(): void {
    this.sock.destroy();
  }

  private _send(msg: Record<string, unknown>): Promise<unknown> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.sock.write(`${JSON.stringify(msg)}\n`);
    });
  }

  private _feed(chunk: string): void {
    this.buf += chunk;
    let i: number;
    while ((i = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ("QMP" in msg) {
        this.greeting?.resolve(msg);
        this.greeting = null;
      } else if ("event" in msg) {
        this.events.push({ event: String(msg.event), data: msg.data });
      } else if ("return" in msg) {
        this.queue.shift()?.resolve(msg.return);
      } else if ("error" in msg) {
        const err = (msg.error ?? {}) as { class?: string; desc?: string };
        this.queue.shift()?.reject(new QmpError(err.class ?? "GenericError", err.desc ?? "unknown error"));
      }
    }
  }
}

function _withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BangerError("E_TIMEOUT", `${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Connect, run one command, close. */
export async function qmpExecute(path: string, command: string, args?: Record<string, unknown>, timeoutMs = 2000): Promise<unknown> {
  const client = await QmpClient.connect(path, timeoutMs);
  try {
    return await client.execute(command, args, timeoutMs);
  } finally {
    client.close();
  }
}

/** Does a QEMU answer on this QMP socket (query-status)? Never throws. */
export async function qmpPing(path: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const status = (await qmpExecute(path, "query-status", undefined, timeoutMs)) as { status?: unknown } | undefined;
    return typeof status?.status === "string";
  } catch {
    return false;
  }
}

/** Ask the guest to power off (ACPI power button). True when QEMU accepted the request. */
export async function qmpPowerdown(path: string, timeoutMs = 1000): Promise<boolean> {
  try {
    await qmpExecute(path, "system_powerdown", undefined, timeoutMs);
    return true;
  } catch {
    return false;
  }
}

/**
 * Tell QEMU to exit now. QEMU may close the socket before its reply arrives,
 * so a close after the request was sent counts as accepted.
 */
export async function qmpQuit(path: string, timeoutMs = 1000): Promise<boolean> {
  let client: QmpClient;
  try {
    client = await QmpClient.connect(path, timeoutMs);
  } catch {
    return false;
  }
  try {
    await client.execute("quit", undefined, timeoutMs);
    return true;
  } catch (e) {
    return !(e instanceof QmpError) && !(e instanceof BangerError);
  } finally {
    client.close();
  }
}

/** A migration stream is bounded by the disk, not by QEMU's default 32 MiB/s cap. */
const _MAX_BANDWIDTH = 16 * 1024 * 1024 * 1024;

/** Poll query-migrate until the migration completes; its failure (QEMU's own words) or the deadline is an error. */
async function _untilMigrated(c: QmpClient, what: string, timeoutMs: number): Promise<void> {
  for (let waited = 0; ; waited += 10) {
    const r = (await c.execute("query-migrate", undefined, timeoutMs)) as { status?: string; "error-desc"?: string };
    if (r.status === "completed") return;
    if (r.status === "failed" || r.status === "cancelled") throw new BangerError("E_INTERNAL", `qemu ${what} ${r.status}${r["error-desc"] ? `: ${r["error-desc"]}` : ""}`);
    if (waited >= timeoutMs) throw new BangerError("E_TIMEOUT", `qemu ${what} did not finish within ${timeoutMs} ms (status ${r.status ?? "none"})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Migrate a stopped VM's memory and device state to `uri` (an exec: command) and wait until it is written. */
export async function qmpMigrateOut(path: string, uri: string, timeoutMs: number): Promise<void> {
  const c = await QmpClient.connect(path, 2000);
  try {
    await c.execute("migrate-set-parameters", { "max-bandwidth": _MAX_BANDWIDTH });
    await c.execute("migrate", { uri });
    await _untilMigrated(c, "state save", timeoutMs);
  } finally {
    c.close();
  }
}

/** Load memory and device state into a QEMU started with `-incoming defer` and wait until it is in. */
export async function qmpMigrateIn(path: string, uri: string, timeoutMs: number): Promise<void> {
  const c = await QmpClient.connect(path, 2000);
  try {
    await c.execute("migrate-incoming", { uri });
    await _untilMigrated(c, "state restore", timeoutMs);
  } finally {
    c.close();
  }
}
