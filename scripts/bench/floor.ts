/**
 * P1's floor: the least `banger vm list --json` can do as banger does it, and
 * nothing else: check the socket's owner (an async stat) beside one GET that
 * carries the version header, check the answer's version, print the list.
 * Compiled with banger's flags (scripts/build.sh --compile); what banger
 * takes beyond this is its own code: loading, parsing, checking, rendering.
 * Usage: floor SOCKET VERSION
 */
const [sock, version] = process.argv.slice(2) as [string, string];
const owner = Bun.file(sock).stat();
const res = fetch("http://banger/v1/vms", { unix: sock, headers: { "x-banger-version": version } } as RequestInit);
if ((await owner).uid !== process.getuid?.()) throw new Error(`${sock} is not ours`);
const r = await res;
if (r.status !== 200 || r.headers.get("x-banger-version") !== version) throw new Error(`answered ${r.status} by ${r.headers.get("x-banger-version")}`);
console.log(JSON.stringify((JSON.parse(await r.text()) as { vms: unknown }).vms, null, 2));
export {};
