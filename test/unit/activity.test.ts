// trackActivity: which requests count as use of a VM, and for how long (a stream: until it ends,
// fails or its reader goes away), with a recording busy().
import { describe, expect, test } from "bun:test";
import { trackActivity } from "../../src/daemon/lifetime-routes.ts";

function recorder() {
  const events: string[] = [];
  const busy = (vm: string) => {
    events.push(`begin ${vm}`);
    return () => events.push(`end ${vm}`);
  };
  return { events, busy };
}

/** An NDJSON answer whose lines the test releases one at a time. */
function slowStream() {
  let push!: (line: string | null) => void;
  const body = new ReadableStream<Uint8Array>({
    start(ctl) {
      push = (line) => (line === null ? ctl.close() : ctl.enqueue(new TextEncoder().encode(line)));
    },
  });
  return { res: new Response(body, { headers: { "content-type": "application/x-ndjson", "x-banger-version": "v" } }), push: (l: string | null) => push(l) };
}

const req = (path: string, method = "POST") => new Request(`http://banger${path}`, { method });

describe("trackActivity", () => {
  test("exec, ssh-info, hold, sessions, workspace and files requests count; others pass through untouched", async () => {
    const { events, busy } = recorder();
    const app = trackActivity(async () => new Response("{}", { headers: { "content-type": "application/json" } }), busy);
    for (const p of ["/v1/vms/a/ssh-info", "/v1/vms/b/sessions", "/v1/vms/c/sessions/s1/send", "/v1/vms/d/workspace/export", "/v1/vms/x%20y/workspace", "/v1/vms/f1/files/write", "/v1/vms/f2/files", "/v1/vms/h1/hold"]) await app(req(p));
    for (const p of ["/v1/vms", "/v1/vms/e", "/v1/vms/f/stop", "/v1/vms/g/logs", "/v1/vms/h/lifetime", "/v1/vms/i/execx", "/v1/vms/j/filesx", "/v1/vms/k/holder", "/v1/vms/%E0%A4%A/exec"]) await app(req(p));
    expect(events).toEqual(["begin a", "end a", "begin b", "end b", "begin c", "end c", "begin d", "end d", "begin x y", "end x y", "begin f1", "end f1", "begin f2", "end f2", "begin h1", "end h1"]);
  });

  test("a raw answer still streaming out (a tar of a guest directory) keeps the VM busy until its last byte; a JSON answer ends it at once", async () => {
    const { events, busy } = recorder();
    let push!: (b: Uint8Array | null) => void;
    const tar = new ReadableStream<Uint8Array>({ start: (ctl) => void (push = (b) => (b === null ? ctl.close() : ctl.enqueue(b))) });
    const res = await trackActivity(async () => new Response(tar, { headers: { "content-type": "application/x-tar" } }), busy)(req("/v1/vms/box/files/archive", "GET"));
    expect(res.headers.get("content-type")).toBe("application/x-tar");
    const reader = res.body!.getReader();
    push(new Uint8Array([1, 2, 3]));
    expect([...(await reader.read()).value!]).toEqual([1, 2, 3]);
    expect(events).toEqual(["begin box"]);
    push(null);
    expect((await reader.read()).done).toBe(true);
    expect(events).toEqual(["begin box", "end box"]);
    await trackActivity(async () => new Response('{"size":1}', { headers: { "content-type": "application/json" } }), busy)(req("/v1/vms/two/files/stat", "GET"));
    expect(events).toEqual(["begin box", "end box", "begin two", "end two"]);
  });

  test("a stream keeps the VM busy until its last byte, with the bytes and headers unchanged", async () => {
    const { events, busy } = recorder();
    const s = slowStream();
    const res = await trackActivity(async () => s.res, busy)(req("/v1/vms/box/exec"));
    expect(res.headers.get("x-banger-version")).toBe("v");
    expect(events).toEqual(["begin box"]);
    const reader = res.body!.getReader();
    s.push('{"type":"stdout"}\n');
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('{"type":"stdout"}\n');
    expect(events).toEqual(["begin box"]);
    s.push('{"type":"exit","code":0}\n');
    await reader.read();
    s.push(null);
    expect((await reader.read()).done).toBe(true);
    expect(events).toEqual(["begin box", "end box"]);
  });

  test("a reader that goes away ends it too, once; a handler that throws ends it", async () => {
    const { events, busy } = recorder();
    const s = slowStream();
    const res = await trackActivity(async () => s.res, busy)(req("/v1/vms/box/sessions/a/logs", "GET"));
    await res.body!.cancel("client gone");
    expect(events).toEqual(["begin box", "end box"]);
    const failing = trackActivity(async () => {
      throw new Error("boom");
    }, busy);
    await expect(failing(req("/v1/vms/two/exec"))).rejects.toThrow("boom");
    expect(events).toEqual(["begin box", "end box", "begin two", "end two"]);
  });
});
