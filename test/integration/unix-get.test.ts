// The early read's transport against real listeners on unix sockets: a
// Bun.serve daemon stand-in, a raw listener that answers what HTTP allows but
// the early reader does not take (then DaemonClient's copy of the read is
// asked again with fetch), and no listener at all.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { answerHeader, EARLY_UNREAD, unixGet } from "../../src/host/unix-get.ts";
import { sendEarly, takeEarly } from "../../src/client/early.ts";
import { withEnv } from "../helpers/env.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-unix-get-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HOSTILE = "x'; $(touch /tmp/pwned) \"é\u2713";

describe("unixGet", () => {
  test("a GET with its headers; the answer whole, UTF-8 and big alike", async () => {
    const sock = join(dir, "serve.sock");
    const seen: string[] = [];
    const big = { vms: Array.from({ length: 3000 }, (_, i) => ({ name: `vm-${i}`, note: HOSTILE.repeat(5) })) };
    const server = Bun.serve({
      unix: sock,
      fetch(req) {
        seen.push(`${req.method} ${new URL(req.url).pathname} ${req.headers.get("x-banger-version")} ${req.headers.get("connection")}`);
        return Response.json(new URL(req.url).pathname === "/v1/big" ? big : { note: HOSTILE }, { status: 200, headers: { "x-banger-version": "v1+abc" } });
      },
    });
    try {
      const a = await unixGet(sock, "/v1/vms", [["x-banger-version", "v1+abc"]]);
      expect(a.status).toBe(200);
      expect(answerHeader(a, "x-banger-version")).toBe("v1+abc");
      expect(JSON.parse(a.body)).toEqual({ note: HOSTILE });
      const b = await unixGet(sock, "/v1/big");
      expect(b.body.length).toBeGreaterThan(300_000);
      expect(JSON.parse(b.body)).toEqual(big);
      expect(seen).toEqual(["GET /v1/vms v1+abc close", "GET /v1/big null close"]);
    } finally {
      await server.stop(true);
    }
  });

  test("nothing listening: the connect error, with its code", async () => {
    await expect(unixGet(join(dir, "missing.sock"), "/v1/vms")).rejects.toMatchObject({ code: "ENOENT" });
    const file = join(dir, "not-a-socket");
    writeFileSync(file, "");
    await expect(unixGet(file, "/v1/vms")).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  test("a listener that hangs up, or answers in chunks: refused as unread", async () => {
    const sock = join(dir, "raw.sock");
    let answer = "";
    const listener = Bun.listen({
      unix: sock,
      socket: {
        data(s) {
          if (answer) s.write(answer);
          s.end();
        },
      },
    });
    try {
      await expect(unixGet(sock, "/v1/vms")).rejects.toMatchObject({ code: EARLY_UNREAD });
      answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
      await expect(unixGet(sock, "/v1/vms")).rejects.toMatchObject({ code: EARLY_UNREAD });
    } finally {
      listener.stop(true);
    }
  });
});

test("an early read the reader does not take is asked again with fetch when DaemonClient takes it", async () => {
  const home = join(dir, "home");
  const sock = join(home, "bangerd.sock");
  await Bun.$`mkdir -p ${home}`.quiet();
  let asked = 0;
  // a stream: Bun.serve sends it chunked, which the early reader leaves to fetch
  const server = Bun.serve({
    unix: sock,
    fetch() {
      asked++;
      const parts = ['{"vms":', "[]}"];
      // a pause between the parts: Bun.serve must send the first before it knows the length
      const body = new ReadableStream<string>({ pull: async (c) => (parts.length ? c.enqueue(parts.shift()!) : c.close(), await Bun.sleep(20)) });
      return new Response(body, { headers: { "x-banger-version": "x", "content-type": "application/json" } });
    },
  });
  withEnv({ BANGER_HOME: home }, () => sendEarly("/v1/vms", true));
  try {
    const e = takeEarly(sock, "GET", "/v1/vms");
    expect(e).not.toBeNull();
    await e!.owner;
    const res = await e!.res;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ vms: [] });
    expect(asked).toBe(2);
  } finally {
    await server.stop(true);
  }
});
