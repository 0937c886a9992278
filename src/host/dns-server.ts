// A DNS server on one address, UDP and TCP (exported to plugins by
// src/plugin-api.ts): net-tap's resolver on the bridge. It only frames
// messages; `answer` decides, told the asker's address (the VM it is).
import { createSocket } from "node:dgram";
import { createServer, type Socket } from "node:net";

export type DnsAnswerer = (query: Uint8Array, from: string) => Promise<Uint8Array>;

export interface DnsServer {
  close(): Promise<void>;
}

/** Plain UDP DNS without EDNS: longer answers are cut to the header with TC set, so the asker retries over TCP. */
const UDP_MAX = 512;

function _truncated(a: Uint8Array): Uint8Array {
  if (a.length <= UDP_MAX) return a;
  // the header and the question (resolvers match an answer to their question), no records, TC set
  let end = 12;
  while (end < a.length && a[end] !== 0) end += a[end]! + 1;
  end = Math.min(a.length, end + 5);
  const h = Buffer.from(a.subarray(0, end));
  h[2] = h[2]! | 0x02;
  h.writeUInt16BE(0, 6);
  h.writeUInt16BE(0, 8);
  h.writeUInt16BE(0, 10);
  return h;
}

/** Listen on addr:port (UDP and TCP); a failed answer sends nothing (the asker times out). */
export async function serveDns(addr: string, port: number, answer: DnsAnswerer): Promise<DnsServer> {
  const udp = createSocket({ type: "udp4" });
  udp.on("message", (msg, r) => {
    answer(new Uint8Array(msg), r.address).then(
      (a) => udp.send(_truncated(a), r.port, r.address),
      () => {},
    );
  });
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(port, addr, () => {
      udp.off("error", reject);
      resolve();
    });
  });
  udp.on("error", () => {});
  const open = new Set<Socket>();
  const tcp = createServer((s) => {
    open.add(s);
    s.on("close", () => open.delete(s));
    s.on("error", () => {});
    let buf = Buffer.alloc(0);
    let busy = Promise.resolve();
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + msg.length);
        // answers go out in question order
        busy = busy.then(async () => {
          const a = await answer(msg, s.remoteAddress?.replace(/^::ffff:/, "") ?? "").catch(() => null);
          if (!a || s.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(a.length);
          s.write(Buffer.concat([len, Buffer.from(a)]));
        });
      }
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen(port, addr, () => resolve());
    });
  } catch (e) {
    udp.close();
    throw e;
  }
  return {
    async close() {
      for (const s of open) s.destroy();
      udp.close();
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}
