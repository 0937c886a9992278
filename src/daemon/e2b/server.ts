import type { Logger } from "../../core/plugin.ts";
import type { Clock } from "../../host/types.ts";
import type { PortsView } from "../../shared/api.ts";
import { DEFAULT_E2B_LISTEN, ENVD_PORT, type E2BStatus } from "../../shared/e2b.ts";
import { BangerError, errorMessage } from "../../shared/errors.ts";
import type { E2BRepo } from "../../store/e2b.ts";
import { clearPausedTimeouts, e2bError, e2bErrorOf, findSandbox, handleControl, sweepPendingSandboxes } from "./control.ts";
import type { Envd } from "./envd/index.ts";
import { callDaemon, type DaemonApp } from "./internal.ts";
import { checkKey, sameToken } from "./keys.ts";
import type { BaseTemplate } from "./template.ts";

const LISTEN_KEY = "listen";
const VMM_KEY = "vmm";

/** HOST:PORT → its parts (IPv6 in brackets); bad input is one line. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new BangerError("E_USAGE", `--listen must be HOST:PORT (e.g. ${DEFAULT_E2B_LISTEN}), got ${JSON.stringify(s).slice(0, 80)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `PORT-SANDBOXID.anything`: the host name getHost(port) makes with the domain we return. */
export function sandboxFromHost(host: string | null): { id: string; port: number } | null {
  const m = host ? /^(\d{1,5})-([a-z0-9][a-z0-9-]{0,62})\./.exec(host) : null;
  return m ? { port: Number(m[1]), id: m[2]! } : null;
}

/** A request's hop-by-hop headers and ours stay here; the rest go to the guest's server. */
const _DROP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer", "host", "e2b-sandbox-id", "e2b-sandbox-port", "x-access-token", "e2b-traffic-access-token"]);

type _WsData = { target: string; upstream: WebSocket | null; queue: (string | Uint8Array)[] };

/**
 * A client's WebSocket to a guest port, relayed to one the listener opens to
 * the port's loopback forward: frames both ways (text stays text), what the
 * client sends before the guest side is open is queued, and either side's
 * close closes the other.
 */
function _wsRelay(): Bun.WebSocketHandler<_WsData> {
  return {
    open(ws) {
      const up = new WebSocket(ws.data.target);
      up.binaryType = "arraybuffer";
      ws.data.upstream = up;
      up.onopen = () => {
        for (const m of ws.data.queue.splice(0)) up.send(m);
      };
      up.onmessage = (ev) => {
        ws.send(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data as ArrayBuffer));
      };
      up.onclose = (ev) => ws.close(ev.code === 1005 || ev.code === 1006 ? 1000 : ev.code, ev.reason);
      up.onerror = () => ws.close(1011, "the guest's WebSocket failed");
    },
    message(ws, msg) {
      const data = typeof msg === "string" ? msg : new Uint8Array(msg);
      const up = ws.data.upstream;
      if (up && up.readyState === WebSocket.OPEN) up.send(data);
      else ws.data.queue.push(data);
    },
    close(ws) {
      ws.data.upstream?.close();
    },
  };
}

export interface E2BServerDeps {
  repo: E2BRepo;
  log: Logger;
  clock: Clock;
  app: () => DaemonApp;
  /** envd, made on first use: Connect and the generated protos load only when a sandbox is asked for them. */
  envd: () => Promise<Envd>;
  base: BaseTemplate;
}

/**
 * The E2B endpoint: one HTTP listener for the control plane (`X-API-Key`)
 * and every sandbox (`E2b-Sandbox-Id` + `E2b-Sandbox-Port`, or a
 * `PORT-ID.` host name): envd's port goes to the emulated envd after its
 * access token is checked, any other port to that port in the guest.
 * Opt-in: it listens only after `banger e2b serve`, which the store
 * remembers, so the next daemon listens again.
 */
export class E2BServer {
  private server: ReturnType<typeof Bun.serve> | null = null;
  private lastError = "";

  constructor(private readonly d: E2BServerDeps) {}

  /** At daemon start: listen again where the last `e2b serve` said; a failure is logged and kept for `e2b status`. */
  restore(): void {
    const listen = this.d.repo.getSetting(LISTEN_KEY);
    if (!listen) return;
    try {
      this.open(listen);
    } catch (e) {
      this.lastError = errorMessage(e);
      this.d.log.warn(`e2b: cannot listen on ${listen}: ${this.lastError}`);
    }
  }

  /**
   * At daemon start, what a killed daemon left in the middle: the VMs of sandboxes it left half made are deleted
   * (sweepPendingSandboxes), and paused sandboxes lose a timeout they kept (clearPausedTimeouts).
   */
  async reconcile(): Promise<{ swept: string[]; untimed: string[] }> {
    const deps = this.controlDeps();
    const swept = await sweepPendingSandboxes(deps);
    return { swept, untimed: await clearPausedTimeouts(deps) };
  }

  serve(o: { listen?: string; vmm?: string }): E2BStatus {
    const listen = o.listen ?? this.d.repo.getSetting(LISTEN_KEY) ?? DEFAULT_E2B_LISTEN;
    if (o.vmm !== undefined) this.d.repo.setSetting(VMM_KEY, o.vmm || null);
    // ":0" (any port) is satisfied by the one already bound on that host: a second serve keeps the URLs exported
    const want = parseListen(listen);
    if (this.server && this.address() !== listen && !(want.port === 0 && parseListen(this.address()).host === want.host)) this.close();
    if (!this.server) this.open(listen);
    // the port actually bound (":0" asks for any): what the next daemon listens on, so exported URLs stay right
    this.d.repo.setSetting(LISTEN_KEY, this.address());
    this.lastError = "";
    return this.status();
  }

  stop(): E2BStatus {
    this.close();
    this.d.repo.setSetting(LISTEN_KEY, null);
    this.lastError = "";
    return this.status();
  }

  close(): void {
    if (!this.server) return;
    this.server.stop(true).catch((e: unknown) => this.d.log.warn(`e2b: closing the listener: ${errorMessage(e)}`));
    this.server = null;
    this.d.log.info("e2b: stopped listening");
  }

  status(): E2BStatus {
    const listen = this.server ? this.address() : (this.d.repo.getSetting(LISTEN_KEY) ?? "");
    const url = listen ? `http://${listen}` : "";
    const host = listen ? parseListen(listen).host : "";
    return {
      listening: !!this.server,
      listen,
      vmm: this.vmm(),
      apiUrl: url,
      sandboxUrl: url,
      ...(host && !isLoopback(host) ? { warning: `the E2B endpoint listens on ${host}, off loopback: anyone who can reach it and holds a key runs VMs here` } : {}),
      ...(this.lastError ? { error: this.lastError } : {}),
      sandboxes: this.d.repo.listSandboxes().length,
      keys: this.d.repo.listKeys().length,
    };
  }

  vmm(): string {
    return this.d.repo.getSetting(VMM_KEY) ?? "";
  }

  private address(): string {
    const s = this.server!;
    const host = s.hostname ?? "127.0.0.1";
    return `${host.includes(":") ? `[${host}]` : host}:${s.port}`;
  }

  private open(listen: string): void {
    const { host, port } = parseListen(listen);
    try {
      // idleTimeout 0: envd streams (a command's output, a watch) stay quiet for as long as the guest is
      this.server = Bun.serve<_WsData, never>({
        hostname: host,
        port,
        idleTimeout: 0,
        maxRequestBodySize: Number.MAX_SAFE_INTEGER,
        // an upgraded WebSocket has no Response: Bun takes undefined for "answered by the upgrade"
        fetch: async (req, server) => (await this.serveRequest(req, (target) => server.upgrade(req, { data: { target, upstream: null, queue: [] } }))) ?? (undefined as unknown as Response),
        websocket: _wsRelay(),
      });
    } catch (e) {
      throw new BangerError("E_PORT_IN_USE", `cannot listen on ${listen}: ${errorMessage(e)}`);
    }
    if (!isLoopback(host)) this.d.log.warn(`e2b: listening on ${host}, off loopback`);
    this.d.log.info(`e2b: listening on ${this.address()}`);
  }

  /** The listener's handler: a plain (Request) => Response, so tests call it without a socket. */
  async handle(req: Request): Promise<Response> {
    return (await this.serveRequest(req)) ?? e2bError(400, "a WebSocket upgrade needs the listener's socket");
  }

  /** handle, with the socket's WebSocket upgrade when there is one (null: the request became a WebSocket). */
  private async serveRequest(req: Request, upgrade?: (target: string) => boolean): Promise<Response | null> {
    try {
      const idHeader = req.headers.get("e2b-sandbox-id");
      const byHost = idHeader ? null : sandboxFromHost(req.headers.get("host"));
      if (idHeader || byHost) {
        const port = idHeader ? Number(req.headers.get("e2b-sandbox-port") ?? ENVD_PORT) : byHost!.port;
        return await this.sandboxRequest(req, idHeader ?? byHost!.id, port, upgrade);
      }
      if (!checkKey(this.d.repo, req.headers.get("x-api-key"))) return e2bError(401, "invalid or missing API key (X-API-Key): make one with `banger e2b key create`");
      return await handleControl(req, this.controlDeps());
    } catch (e) {
      return e2bErrorOf(e);
    }
  }

  private controlDeps() {
    return { app: this.d.app(), repo: this.d.repo, log: this.d.log, clock: this.d.clock, vmm: () => this.vmm(), base: this.d.base, domain: () => `localhost:${this.server?.port ?? ""}` };
  }

  private async sandboxRequest(req: Request, id: string, port: number, upgrade?: (target: string) => boolean): Promise<Response | null> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return e2bError(400, "E2b-Sandbox-Port must be a port number");
    const found = await findSandbox({ app: this.d.app(), repo: this.d.repo }, id);
    // what E2B's proxy answers for a sandbox that is not there (the SDK's isRunning reads 502 as "not running")
    if (!found) return e2bError(502, `sandbox "${id}" not found`);
    const { sb, vm } = found;
    const running = vm.runtime.state === "running" && vm.alive;
    if (port !== ENVD_PORT) {
      if (sb.trafficAccessToken && !sameToken(req.headers.get("e2b-traffic-access-token"), sb.trafficAccessToken)) {
        return e2bError(403, "this sandbox's ports want its traffic access token (e2b-traffic-access-token)");
      }
      if (!running) return e2bError(502, `sandbox "${id}" is not running`);
      return await this.proxy(req, vm.id, port, upgrade);
    }
    if (!sameToken(req.headers.get("x-access-token"), sb.accessToken)) return e2bError(401, "invalid or missing access token (X-Access-Token)");
    const url = new URL(req.url);
    if (url.pathname === "/health") return new Response(null, { status: running ? 204 : 502 });
    if (!running) return e2bError(502, `sandbox "${id}" is ${vm.runtime.state === "paused" ? "paused: connect to resume it" : "not running"}`);
    return await (await this.d.envd()).handle(req, { id: sb.id, vm, envVars: sb.envVars });
  }

  /** A guest port through the VM's published ports (one loopback forward per port, made on first use and kept). */
  private async proxy(req: Request, vmId: string, port: number, upgrade?: (target: string) => boolean): Promise<Response | null> {
    const app = this.d.app();
    const path = `/v1/vms/${encodeURIComponent(vmId)}/ports`;
    const { ports } = await callDaemon<PortsView>(app, "GET", path);
    let fwd = ports.find((p) => p.proto === "tcp" && p.guestPort === port && p.boundPort && isLoopback(p.hostIP));
    if (!fwd) {
      const added = await callDaemon<PortsView>(app, "POST", path, { spec: `127.0.0.1:0:${port}` });
      fwd = added.added;
    }
    if (!fwd?.boundPort) return e2bError(502, `no forward to guest port ${port}`);
    const url = new URL(req.url);
    if ((req.headers.get("upgrade") ?? "").toLowerCase() === "websocket") {
      // relayed frame by frame to a WebSocket of our own to the guest's server (see _wsRelay)
      if (upgrade?.(`ws://127.0.0.1:${fwd.boundPort}${url.pathname}${url.search}`)) return null;
      return e2bError(400, "a WebSocket upgrade this listener could not take");
    }
    const headers = new Headers();
    req.headers.forEach((v, k) => {
      if (!_DROP.has(k.toLowerCase())) headers.set(k, v);
    });
    try {
      const res = await fetch(`http://127.0.0.1:${fwd.boundPort}${url.pathname}${url.search}`, {
        method: req.method,
        headers,
        body: req.method === "GET" || req.method === "HEAD" ? undefined : req.body,
        redirect: "manual",
        signal: req.signal,
        decompress: false,
      } as RequestInit);
      return new Response(res.body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } catch (e) {
      // nothing listens there yet: what E2B's proxy says for a closed port
      return e2bError(502, `the sandbox's port ${port} is not open: ${errorMessage(e)}`);
    }
  }
}
