// A guest's SSH server that refuses an exec request (dropbear does, now and
// then, while it reaps a channel that just ended): nothing ran, so the
// connection asks again, a bounded number of times, and a server that keeps
// refusing is still the one-line error. The server is ssh2's own on 127.0.0.1.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Server, utils } from "ssh2";
import { createSSHDialer, EXEC_REFUSAL_RETRIES } from "../../src/host/ssh.ts";

const host = utils.generateKeyPairSync("ed25519");
const client = utils.generateKeyPairSync("ed25519");
let refuseNext = 0;
const asked: string[] = [];
let server: Server;
let port = 0;

beforeAll(async () => {
  server = new Server({ hostKeys: [host.private] }, (conn) => {
    conn.on("authentication", (ctx) => (ctx.method === "publickey" ? ctx.accept() : ctx.reject(["publickey"])));
    conn.on("session", (accept) => {
      const session = accept();
      session.on("exec", (acceptExec, rejectExec, info) => {
        asked.push(info.command);
        if (refuseNext > 0) {
          refuseNext--;
          rejectExec();
          return;
        }
        const ch = acceptExec();
        ch.write(`ran ${info.command}\n`);
        ch.exit(0);
        ch.end();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as { port: number }).port;
});

afterAll(() => server?.close());

const dial = () => createSSHDialer().dial({ host: "127.0.0.1", port, user: "root", privateKey: client.private, hostKey: host.public });

test("an exec refused before it started is asked again and then runs once", async () => {
  const conn = await dial();
  asked.length = 0;
  refuseNext = 2;
  const out: Uint8Array[] = [];
  expect(await conn.exec("echo hi", { onStdout: (c) => out.push(c.slice()) })).toBe(0);
  expect(Buffer.concat(out).toString()).toBe("ran echo hi\n");
  expect(asked).toEqual(["echo hi", "echo hi", "echo hi"]);
  conn.close();
});

test("a server that keeps refusing: the one-line error after the bounded retries", async () => {
  const conn = await dial();
  asked.length = 0;
  refuseNext = 100;
  const err = await conn.exec("true").catch((e: unknown) => e as Error);
  expect(err).toBeInstanceOf(Error);
  expect((err as Error).message).toBe(`ssh exec on root@127.0.0.1:${port} failed: Unable to exec`);
  expect(asked.length).toBe(EXEC_REFUSAL_RETRIES + 1);
  refuseNext = 0;
  conn.close();
});
