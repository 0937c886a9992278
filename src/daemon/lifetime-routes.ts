import type { Engine } from "../core/engine.ts";
import { checkTTLAction, type Lifetimes } from "../core/lifetimes.ts";
import { vmView } from "./app.ts";
import type { HandlersFor } from "./router.ts";
import type { Clock } from "../host/types.ts";

/** POST /v1/vms/:vm/lifetime: set or clear a VM's TTL (from now) and idle timeout; GET /v1/vms/:vm/hold: hold it in use. */
export function createLifetimeRoutes(d: { engine: Engine; lifetimes: Lifetimes; clock: Pick<Clock, "now"> }): HandlersFor<"lifetime"> {
  return {
    // trackActivity marks the VM busy for as long as this stream is open: all it does is stay open, until the
    // client goes or the VMM halts the guest (the shell it holds for can answer nothing then: the error tells it why)
    lifetimeHold: async ({ params, ndjson }) => {
      const vm = d.engine.getVM(params.vm);
      const since = d.clock.now().getTime();
      return ndjson(async (emit) => {
        emit.progress(`holding ${vm.name} in use`);
        const watch = d.engine.watchHalt(vm, emit.signal);
        try {
          if (!watch.signal.aborted) await new Promise((resolve) => watch.signal.addEventListener("abort", resolve, { once: true }));
        } finally {
          watch.stop();
        }
        if (!emit.signal.aborted) throw watch.signal.reason;
        return { type: "result", data: { heldMs: d.clock.now().getTime() - since } };
      });
    },
    lifetimeSet: async ({ params, body }) => {
      const vm = d.engine.getVM(params.vm);
      d.lifetimes.set(vm, { ttlMs: body.ttlMs, ttlAction: checkTTLAction(body.ttlAction), idleTimeoutMs: body.idleTimeoutMs, idleAction: checkTTLAction(body.idleAction, "idle action") });
      return vmView(d.engine, d.engine.getVM(vm.id));
    },
  };
}

/**
 * The requests that are use of a VM: they keep it from going idle while they run (an answer streamed: until its
 * last byte). `hold` is an interactive `vm ssh`'s, open as long as its shell.
 */
const ACTIVITY = /^\/v1\/vms\/([^/]+)\/(?:exec|ssh-info|hold|sessions|workspace|files)(?:\/|$)/;

/** Wrap the daemon's handler so exec, ssh, session, workspace and file requests mark their VM busy. */
export function trackActivity(app: (req: Request) => Promise<Response>, busy: (vm: string) => () => void): (req: Request) => Promise<Response> {
  return async (req) => {
    const m = ACTIVITY.exec(new URL(req.url).pathname);
    let vm: string | null = null;
    try {
      vm = m ? decodeURIComponent(m[1]!) : null;
    } catch {
      vm = null; // a malformed name: the router refuses it
    }
    if (vm === null) return app(req);
    const done = busy(vm);
    let ended = false;
    // a cancelled stream can also see its pending read fail: end the activity once
    const end = () => {
      if (!ended) done();
      ended = true;
    };
    let res: Response;
    try {
      res = await app(req);
    } catch (e) {
      end();
      throw e;
    }
    // an answer in JSON is whole; any other (NDJSON, a tar of a guest directory) may still be streaming out
    if (!res.body || (res.headers.get("content-type") ?? "").startsWith("application/json")) {
      end();
      return res;
    }
    return new Response(_untilEnd(res.body, end), { status: res.status, headers: res.headers });
  };
}

/** The same bytes, calling end once when the stream finishes, fails or the client goes away. */
function _untilEnd(body: ReadableStream<Uint8Array>, end: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          end();
          ctl.close();
        } else ctl.enqueue(value);
      } catch (e) {
        end();
        ctl.error(e);
      }
    },
    async cancel(reason) {
      end();
      await reader.cancel(reason);
    },
  });
}
