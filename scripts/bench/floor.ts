/**
 * P1's floor: the least `banger vm list --json` can do as banger does it, and
 * nothing else: check the socket's owner (an async stat) beside one GET that
 * carries the version header, sent on the main thread as banger's early read
 * is (Bun.connect, src/host/unix-get.ts), check the answer's version, print
 * the list. Compiled with banger's flags (scripts/build.sh --compile); what
 * banger takes beyond this is its own code: loading, parsing, checking,
 * rendering. Usage: floor SOCKET VERSION
 */
const [sock, version] = process.argv.slice(2) as [string, string];
const owner = Bun.file(sock).stat();
const decoder = new TextDecoder();
let text = "";
const { promise: closed, resolve, reject } = Promise.withResolvers<void>();
Bun.connect({
  unix: sock,
  socket: {
    binaryType: "uint8array",
    open: (s) => void s.write(`GET /v1/vms HTTP/1.1\r\nhost: banger\r\nconnection: close\r\nx-banger-version: ${version}\r\n\r\n`),
    data: (_s, d) => void (text += decoder.decode(d, { stream: true })),
    close: () => resolve(),
    error: (_s, e) => reject(e),
  },
}).catch(reject);
if ((await owner).uid !== process.getuid?.()) throw new Error(`${sock} is not ours`);
await closed;
const end = text.indexOf("\r\n\r\n");
const theirs = text.slice(0, end).toLowerCase().split("\r\nx-banger-version: ")[1]?.split("\r\n")[0];
if (!text.startsWith("HTTP/1.1 200 ") || theirs !== version.toLowerCase()) throw new Error(`answered ${text.slice(0, 12)} by ${theirs}`);
console.log(JSON.stringify((JSON.parse(text.slice(end + 4)) as { vms: unknown }).vms, null, 2));
export {};
