// Pause, resume, snapshot and rollback on a real QEMU guest; one VM shared by the tests of this file.
import { afterAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, type Stats } from "node:fs";
import { basename, join } from "node:path";
import { MAX_LAYERS_UNDER_TOP } from "../../plugins/storage/chain.ts";
import { parseTempName } from "../../src/shared/temps.ts";
import { killAndWait } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 240_000;
const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");
const pick = (st: Stats) => ({ size: st.size, mtimeMs: st.mtimeMs, blocks: st.blocks });
// one line every 0.1 s of guest time
const COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";

e2e.describe("pause, resume, snapshot and rollback (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-snap-") : (null as never);
  const api = (method: string, path: string) => fetch(`http://banger${path}`, { method, body: method === "POST" ? "{}" : undefined, unix: join(h.home, "bangerd.sock") } as RequestInit);
  afterAll(async () => {
    if (!h) return;
    for (const vm of ["c1", "c2", "c3", "c4", "c5"]) h.run(["vm", "delete", vm, "--force"]);
    h.run(["vm", "delete", "snapbox", "--force", "--with-snapshots"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });
  const ok = (args: string[]) => {
    const r = h.run(args);
    if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r;
  };
  let logPath = "";
  /** The counter's last value and the guest's uptime (s), read in one exec. */
  const sample = () => {
    const out = ok(["vm", "exec", "snapbox", "--", "sh", "-c", "cut -d' ' -f1 /proc/uptime; tail -n1 \"$1\"", "x", logPath]).stdout.trim().split("\n");
    return { uptime: Number(out[0]), count: Number(out[1]) };
  };

  test("boot, start a counting session", () => {
    ok(["vm", "create", "snapbox", "--vmm", "qemu", "--start"]);
    const s = ok(["session", "start", "snapbox", "--name", "counter", "--json", "--", "bash", "-c", COUNTER]).json();
    expect(s.status).toBe("running");
    logPath = s.stdoutLogPath;
  }, BOOT);

  test("pause: the guest's clock and counter stop while the wall clock runs; resume: both go on; the round trip is timed", async () => {
    await Bun.sleep(1000);
    const tA = performance.now();
    const before = sample();
    expect(before.count).toBeGreaterThan(0);
    const t0 = performance.now();
    const paused = ok(["vm", "pause", "snapbox", "--json"]).json();
    expect(paused.runtime.state).toBe("paused");
    // refused, not hung: one line naming the way out
    const refused = h.run(["vm", "exec", "snapbox", "--", "true"]);
    expect([refused.code, refused.stderr]).toEqual([1, "banger: vm snapbox is paused: resume it with `banger vm resume snapbox`\n"]);
    await Bun.sleep(3000);
    ok(["vm", "resume", "snapbox"]);
    const wall = (performance.now() - t0) / 1000;
    const after = sample();
    const between = (performance.now() - tA) / 1000;
    const guest = after.uptime - before.uptime;
    console.log(`paused ${wall.toFixed(2)} s; between the two reads ${between.toFixed(2)} s of wall time, guest uptime advanced ${guest.toFixed(2)} s, counter ${before.count} → ${after.count}`);
    // the 3 s of pause never reached the guest (its uptime stood still)…
    expect(between - guest).toBeGreaterThan(2.5);
    // …but its wall clock was set to the host's at the resume (it was 3 s behind before that)
    const sentAt = Date.now() / 1000;
    const guestNow = Number(ok(["vm", "exec", "snapbox", "--", "date", "+%s.%N"]).stdout);
    const backAt = Date.now() / 1000;
    console.log(`guest clock after resume: ${(guestNow - sentAt).toFixed(3)} s after the exec was sent, ${(backAt - guestNow).toFixed(3)} s before it returned`);
    expect(guestNow).toBeGreaterThan(sentAt - 0.2);
    expect(guestNow).toBeLessThan(backAt + 0.2);
    expect(after.count - before.count).toBeLessThanOrEqual(Math.ceil(guest / 0.1) + 2);
    await Bun.sleep(1500);
    expect(sample().count).toBeGreaterThan(after.count);

    // P8d: pause → resume through the API, as the daemon serves it
    const rounds: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      expect((await api("POST", "/v1/vms/snapbox/pause")).status).toBe(200);
      expect((await api("POST", "/v1/vms/snapbox/resume")).status).toBe(200);
      rounds.push(performance.now() - t);
    }
    rounds.sort((a, b) => a - b);
    console.log(`pause→resume round trip (API, n=10): median ${rounds[5]!.toFixed(1)} ms, max ${rounds[9]!.toFixed(1)} ms`);
    expect(ok(["vm", "show", "snapbox", "--json"]).json().runtime.state).toBe("running");
  }, BOOT);

  test("kill -9 of the daemon while paused: the next daemon keeps it paused (same qemu), resume brings the session back, and its commands go over the guest's exec agent again (no SSH connection)", async () => {
    const pid = ok(["vm", "show", "snapbox", "--json"]).json().pid;
    ok(["vm", "pause", "snapbox"]);
    killAndWait(h.daemonPid());
    expect(ok(["vm", "show", "snapbox", "--json"]).json()).toMatchObject({ alive: true, pid, runtime: { state: "paused" } });
    ok(["vm", "resume", "snapbox"]);
    const a = sample().count;
    await Bun.sleep(1500);
    expect(sample().count).toBeGreaterThan(a);
    expect(ok(["session", "show", "snapbox", "counter", "--json"]).json().status).toBe("running");
    // the new daemon reached the exec agent rather than dial SSH: this exec's ancestors are perl's, not dropbear's
    const ancestors = 'p=$$; while [ "$p" -gt 1 ]; do cat /proc/$p/comm; p=$(cut -d" " -f4 /proc/$p/stat); done';
    const chain = ok(["vm", "exec", "snapbox", "--", "sh", "-c", ancestors]).stdout.trim().split("\n");
    expect(chain).toContain("perl");
    expect(chain).not.toContain("dropbear");
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("snapbox: its commands go over its exec agent again");
  }, BOOT);

  test("snapshot of the running VM: it runs on; a later write and the counter's progress are undone by rollback; the clock is the host's", async () => {
    ok(["vm", "exec", "snapbox", "--", "sh", "-c", "echo kept > /root/file; sync"]);
    const t0 = performance.now();
    const snap = ok(["vm", "snapshot", "snapbox", "--name", "one", "--json"]).json();
    const frozen = String(snap.disks[0]);
    console.log(`vm snapshot: ${(performance.now() - t0).toFixed(0)} ms (CLI), VM frozen ${snap.freezeMs} ms, ${(snap.sizeBytes / 1048576).toFixed(0)} MiB apparent`);
    expect(snap).toMatchObject({ vmName: "snapbox", name: "one", memory: true, state: "ready", disks: [expect.stringMatching(/^system-[0-9a-f]+b\.img$/)] });
    // the disk was not copied: the snapshot's file is the VM's raw disk (a hard link, which keeps its old name for
    // the QEMU that has it open), the VM writes to a new overlay over it, named in system.top
    const vmDir = ok(["vm", "show", "snapbox", "--json"]).json().runtime.vmDir as string;
    expect(statSync(join(snap.dir, frozen)).ino).toBe(statSync(join(vmDir, "system.img")).ino);
    const topName = readFileSync(join(vmDir, "system.top"), "utf8").trim();
    expect(topName).toMatch(/^system-[0-9a-f]+\.qcow2$/);
    expect(existsSync(join(vmDir, topName))).toBe(true);
    expect(ok(["snapshot", "list", "--json"]).json().map((x: { vmName: string; name: string }) => `${x.vmName}@${x.name}`)).toEqual(["snapbox@one"]);
    // it runs on
    const c1 = sample().count;
    await Bun.sleep(1500);
    const c2 = sample().count;
    expect(c2).toBeGreaterThan(c1);
    ok(["vm", "exec", "snapbox", "--", "sh", "-c", "echo discarded > /root/file; echo new > /root/later; sync"]);
    // a session started after the snapshot: no process of it is in the snapshot's memory
    ok(["session", "start", "snapbox", "--name", "late", "--", "sleep", "1000"]);
    // a second snapshot of the same VM works too: one layer more (the overlay frozen over the first)
    const two = ok(["vm", "snapshot", "snapbox", "--name", "two", "--json"]).json();
    console.log(`second snapshot: VM frozen ${two.freezeMs} ms`);
    expect(two.memory).toBe(true);
    expect(readdirSync(two.dir).filter((f) => f.startsWith("system")).sort()).toEqual([frozen, topName].sort());
    expect(two.disks).toEqual([topName]);

    const t1 = performance.now();
    const back = ok(["vm", "rollback", "snapbox", "one", "--json"]).json();
    console.log(`vm rollback: ${(performance.now() - t1).toFixed(0)} ms (CLI, until SSH answers and the clock is set)`);
    expect(back).toMatchObject({ alive: true, runtime: { state: "running" } });
    // put back as a new qcow2 overlay over the snapshot's chain (linked in), not a copy of it; the files only the later state needed went
    expect(readdirSync(back.runtime.vmDir).filter((f) => f.startsWith("system")).sort()).toEqual([frozen, readFileSync(join(back.runtime.vmDir, "system.top"), "utf8").trim(), "system.top"].sort());
    const h0 = Date.now() / 1000;
    const out = ok(["vm", "exec", "snapbox", "--", "sh", "-c", "cat /root/file; test -e /root/later && echo later-exists; date +%s.%N"]).stdout.trim().split("\n");
    const h1 = Date.now() / 1000;
    expect(out.slice(0, -1)).toEqual(["kept"]);
    const guestNow = Number(out.at(-1));
    console.log(`guest clock after rollback: ${(guestNow - h0).toFixed(3)} s after the exec was sent, ${(h1 - guestNow).toFixed(3)} s before it returned`);
    // how well the clock was set: the daemon's exchange with the guest bounds the error by half its round trip
    const line = readFileSync(join(h.home, "daemon.log"), "utf8").split("\n").filter((l) => l.includes("restored guest's clock moved")).at(-1)!;
    const [, moved, rtt] = /moved (-?[\d.]+) s to the host's \(round trip (\d+) ms\)/.exec(line)!;
    console.log(`clock set at restore: moved ${moved} s, round trip ${rtt} ms (error ≤ ${Number(rtt) / 2} ms)`);
    expect(Number(moved)).toBeGreaterThan(1); // it stood at the snapshot's instant, seconds ago
    expect(Number(rtt) / 2).toBeLessThanOrEqual(200);
    // and as the next exec sees it: inside its window, give or take the drift of a TCG guest's clock under load
    // (its TSC rate is calibrated at boot; ~10% slow was measured here with both cores busy)
    expect(guestNow).toBeGreaterThan(h0 - 1);
    expect(guestNow).toBeLessThan(h1 + 0.2);
    // the counting session came back with the memory: running, counting on from where the snapshot caught it
    const s = ok(["session", "show", "snapbox", "counter", "--json"]).json();
    expect(s.status).toBe("running");
    // …and the later one is over, said at once by the list (it ended with the stop), not only once someone asked the guest
    const listed = ok(["session", "list", "snapbox", "--json"]).json() as { name: string; status: string; launchMessage: string }[];
    expect(listed.filter((x) => x.name === "counter" || x.name === "late").map((x) => [x.name, x.status, x.status === "failed" ? x.launchMessage : ""]).sort()).toEqual([
      ["counter", "running", ""],
      ["late", "failed", "its vm stopped (it was rolled back to snapbox@one)"],
    ]);
    const c3 = sample().count;
    expect(c3).toBeLessThan(c2 + 20);
    await Bun.sleep(1500);
    expect(sample().count).toBeGreaterThan(c3);
    // two more rollbacks to it, each read first thing: the RNG is reseeded from host randomness at each, so the
    // snapshot's random stream is never handed out twice
    const urandom = () => {
      ok(["vm", "rollback", "snapbox", "one"]);
      return ok(["vm", "exec", "snapbox", "--", "sh", "-c", "head -c 16 /dev/urandom | od -An -tx1"]).stdout.trim();
    };
    const [r1, r2] = [urandom(), urandom()];
    expect(r1).toMatch(/^[0-9a-f ]{47}$/);
    expect(r1).not.toBe(r2);
  }, BOOT);

  test("fork into 2 clones: each has the file, its own hostname, host key, client key and RNG, the host's clock, the counting session; the parent is untouched", async () => {
    const parentKeyInfo = ok(["vm", "show", "snapbox", "--json"]).json();
    const t0 = performance.now();
    const f = ok(["vm", "fork", "snapbox", "c1", "c2", "--json"]).json();
    console.log(`vm fork into 2 clones: ${(performance.now() - t0).toFixed(0)} ms (CLI), source frozen ${f.snapshot.freezeMs} ms`);
    // snapbox runs on snapshot one's RAM file since its rollbacks: the fork saved the pages it wrote, not all its RAM
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("vm snapbox: RAM saved by delta:");
    expect(f.vms.map((v: { name: string; alive: boolean; runtime: { state: string } }) => [v.name, v.alive, v.runtime.state])).toEqual([["c1", true, "running"], ["c2", true, "running"]]);
    const read = (vm: string) => ok(["vm", "exec", vm, "--", "sh", "-c", "cat /root/file; hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo"]).stdout.trim().split("\n");
    const [pFile, pHost, pRand] = read("snapbox");
    const [f1, h1, r1] = read("c1");
    const [f2, h2, r2] = read("c2");
    expect([pFile, f1, f2]).toEqual(["kept", "kept", "kept"]);
    expect([pHost, h1, h2]).toEqual(["snapbox", "c1", "c2"]);
    expect(new Set([pRand, r1, r2]).size).toBe(3);
    // each pins its own host key; the parent's client key no longer gets in
    const hostKey = async (vm: string) => ((await (await api("GET", `/v1/vms/${vm}/ssh-info`)).json()) as { hostKey: string }).hostKey;
    const keys = [await hostKey("snapbox"), await hostKey("c1"), await hostKey("c2")];
    expect(new Set(keys).size).toBe(3);
    const c1 = ok(["vm", "show", "c1", "--json"]).json();
    const parentKey = join(parentKeyInfo.runtime.vmDir, "keys", "id_ed25519");
    const ssh = Bun.spawnSync(["ssh", "-i", parentKey, "-p", String(c1.runtime.sshPort), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "root@127.0.0.1", "true"], { stderr: "pipe" });
    expect(ssh.exitCode).toBe(255);
    expect(ssh.stderr.toString()).toContain("Permission denied");
    // given over the guest agent (its marker came with the snapshot), and served by the dropbear the parent
    // started: it reads the host key at each connection, so the clone's is served with no new dropbear
    expect([existsSync(join(f.snapshot.dir, "guest-agent")), existsSync(join(c1.runtime.vmDir, "guest-agent"))]).toEqual([true, true]);
    const listener = (vm: string) => ok(["vm", "exec", vm, "--", "cat", "/run/dropbear.pid"]).stdout.trim();
    expect(listener("c1")).toBe(listener("snapbox"));
    // a clone's commands run over the exec agent (its marker came with the snapshot); what its own dropbear
    // runs (ssh with the clone's key) sees the same environment but for SSH's own variables, cwd and shell
    expect([existsSync(join(f.snapshot.dir, "guest-exec-agent")), existsSync(join(c1.runtime.vmDir, "guest-exec-agent"))]).toEqual([true, true]);
    const probe = 'echo "$0 $PWD ${SSH_CONNECTION:-no-ssh}"; env | sort';
    const [aWhere, ...aEnv] = ok(["vm", "exec", "c1", "--", "sh", "-c", probe]).stdout.trim().split("\n");
    const viaSSH = Bun.spawnSync(["ssh", "-i", join(c1.runtime.vmDir, "keys", "id_ed25519"), "-p", String(c1.runtime.sshPort), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "root@127.0.0.1", `sh -c '${probe}'`], { stderr: "pipe", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } }); // no LANG for ssh's SendEnv
    expect(viaSSH.exitCode).toBe(0);
    const [sWhere, ...sEnv] = viaSSH.stdout.toString().trim().split("\n");
    expect(aWhere).toBe("sh /root no-ssh");
    expect(sWhere).toMatch(/^sh \/root \d/);
    expect(aEnv).toEqual(sEnv.filter((l) => !/^SSH_(CONNECTION|CLIENT|PUBKEYINFO)=/.test(l)));
    const r = h.run(["vm", "exec", "c1", "--", "sh", "-c", "printf 'out\\0bin'; echo err >&2; exit 7"]);
    expect([r.code, r.stdout, r.stderr]).toEqual([7, "out\0bin", "err\n"]);
    // clocks: set at restore with an error of at most half the exchange's round trip
    const log = readFileSync(join(h.home, "daemon.log"), "utf8");
    for (const vm of ["c1", "c2"]) {
      const m = new RegExp(`${vm}: restored guest's clock moved (-?[\\d.]+) s to the host's \\(round trip (\\d+) ms\\)`).exec(log)!;
      console.log(`${vm}: clock moved ${m[1]} s, round trip ${m[2]} ms`);
      expect(Number(m[2]) / 2).toBeLessThanOrEqual(200);
    }
    // the counting session runs on in each clone, recorded as the clone's own, and can be read and attached
    const ps = ok(["session", "show", "snapbox", "counter", "--json"]).json();
    for (const vm of ["c1", "c2"]) {
      const s = ok(["session", "show", vm, "counter", "--json"]).json();
      expect(s).toMatchObject({ name: "counter", status: "running", attachable: ps.attachable, guestPid: ps.guestPid, stdoutLogPath: ps.stdoutLogPath });
      expect(s.id).not.toBe(ps.id);
      // read with tail: `session logs` of a log that grows faster than a loaded TCG guest answers reads on and on
      const last = () => Number(ok(["vm", "exec", vm, "--", "tail", "-n1", s.stdoutLogPath]).stdout.trim());
      const a = last();
      await Bun.sleep(1500);
      expect(last()).toBeGreaterThan(a);
    }
    // the parent: same process, same session, still counting
    expect(ok(["vm", "show", "snapbox", "--json"]).json()).toMatchObject({ pid: parentKeyInfo.pid, runtime: { state: "running" } });
    const pc = sample().count;
    await Bun.sleep(1500);
    expect(sample().count).toBeGreaterThan(pc);
    // the clones run on qcow2 overlays over links to the fork's snapshot chain (in their own dirs): removing the
    // snapshot removes its dir whole while they run; memory.ram goes too (the kernel keeps it for their private mappings)
    expect(readFileSync(join(c1.runtime.vmDir, "system.top"), "utf8")).toMatch(/^system-[0-9a-f]+\.qcow2\n$/);
    expect(existsSync(join(c1.runtime.vmDir, "system.img"))).toBe(false);
    for (const layer of (f.snapshot.disks as string[])) expect(statSync(join(c1.runtime.vmDir, layer)).ino).toBe(statSync(join(f.snapshot.dir, layer)).ino);
    const forkDir = f.snapshot.dir as string;
    ok(["snapshot", "rm", `snapbox@${f.snapshot.name}`]);
    expect(existsSync(forkDir)).toBe(false);
    expect(ok(["vm", "exec", "c1", "--", "sh", "-c", "echo c1 > /root/own && sync && cat /root/own /root/file"]).stdout).toBe("c1\nkept\n");
    ok(["vm", "delete", "c1", "--force"]);
    expect(ok(["vm", "exec", "c2", "--", "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; cat /root/file"]).stdout).toBe("kept\n");
    // its snapshot removed, c2 still has the RAM file and stream it was restored from (linked into its dir): its own
    // snapshot is saved by delta, and a rollback to it brings back what c2 had
    ok(["vm", "exec", "c2", "--", "sh", "-c", "echo mine > /dev/shm/c2"]);
    ok(["vm", "snapshot", "c2", "--name", "after-rm"]);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("vm c2: RAM saved by delta:");
    ok(["vm", "exec", "c2", "--", "sh", "-c", "echo later > /dev/shm/c2"]);
    ok(["vm", "rollback", "c2", "after-rm"]);
    expect(ok(["vm", "exec", "c2", "--", "cat", "/dev/shm/c2", "/root/file"]).stdout).toBe("mine\nkept\n");
    ok(["snapshot", "rm", "c2@after-rm"]);
    ok(["vm", "delete", "c2", "--force"]);
  }, BOOT);

  test("daemon killed -9 in the freeze, right after the disk switch: the next daemon resumes the VM on its new overlay, no half snapshot, no temp; its data and later writes are whole", async () => {
    ok(["vm", "exec", "snapbox", "--", "sh", "-c", "echo before-crash > /root/crash; sync"]);
    const pid = ok(["vm", "show", "snapbox", "--json"]).json().pid;
    killAndWait(h.daemonPid()); // the next call starts a daemon with the fault armed
    const r = h.run(["vm", "snapshot", "snapbox", "--name", "crash"], { BANGER_FAULT: "snapshot:after-disks" });
    expect(r.code).not.toBe(0);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("SIGKILL at snapshot:after-disks");
    const after = ok(["vm", "show", "snapbox", "--json"]).json(); // an unarmed daemon: reconcile ran
    expect(after).toMatchObject({ alive: true, pid, runtime: { state: "running" } });
    expect(h.run(["snapshot", "show", "snapbox@crash"]).code).toBe(1);
    expect(readdirSync(h.home, { recursive: true }).map(String).filter((f) => parseTempName(basename(f)) !== null)).toEqual([]);
    expect(ok(["vm", "exec", "snapbox", "--", "sh", "-c", "echo after-crash >> /root/crash; sync; cat /root/crash"]).stdout).toBe("before-crash\nafter-crash\n");
    // and it snapshots again (the name is free)
    ok(["vm", "snapshot", "snapbox", "--name", "crash"]);
    ok(["snapshot", "rm", "snapbox@crash"]);
  }, BOOT);

  test("device-state-only snapshot: RAM in memory.ram, a clone of it has its own identity, and the file is byte-identical after the clone ran and wrote memory", async () => {
    const snap = ok(["vm", "snapshot", "snapbox", "--name", "ramfile", "--json"]).json();
    const ram = join(snap.dir, "memory.ram");
    const state = statSync(join(snap.dir, "state.mig"));
    // device state only: the guest's 256 MiB are in the RAM file, not in the stream
    expect(state.size).toBeLessThan(8 * 1048576);
    const before = { ...pick(statSync(ram)), sha: sha256(ram) };
    expect(before.size).toBe(256 * 1048576);
    const c = ok(["vm", "create", "c3", "--from", "snapbox@ramfile", "--start", "--json"]).json();
    const qemuArgv = readFileSync(`/proc/${c.pid}/cmdline`, "utf8").split("\0");
    // the snapshot's RAM file, linked into the clone's dir (a `snapshot rm` leaves it to the clone)
    const linked = join(c.runtime.vmDir, "restored.ram");
    expect(qemuArgv).toContain(`memory-backend-file,id=pc.ram,size=256M,mem-path=${linked},share=off`);
    expect(statSync(linked).ino).toBe(statSync(ram).ino);
    // the clone dirties guest memory (its page cache) and its disk
    const out = ok(["vm", "exec", "c3", "--", "sh", "-c", "head -c 40000000 /dev/urandom > /root/fill && sync && hostname && cat /root/file"]).stdout.trim().split("\n");
    expect(out).toEqual(["c3", "kept"]);
    const hostKey = async (vm: string) => ((await (await api("GET", `/v1/vms/${vm}/ssh-info`)).json()) as { hostKey: string }).hostKey;
    expect(await hostKey("c3")).not.toBe(await hostKey("snapbox"));
    expect(ok(["vm", "exec", "snapbox", "--", "hostname"]).stdout.trim()).toBe("snapbox");
    expect({ ...pick(statSync(ram)), sha: sha256(ram) }).toEqual(before);
    // a snapshot of c3, which runs on that file mapped private, saves only the pages c3 wrote (the rest are the
    // file's): what lives in RAM alone (a tmpfs file) comes back whole in a clone of it
    const sum = ok(["vm", "exec", "c3", "--", "sh", "-c", "head -c 20000000 /dev/urandom > /dev/shm/ram-only && sha256sum /dev/shm/ram-only"]).stdout.split(" ")[0];
    const s3 = ok(["vm", "snapshot", "c3", "--name", "delta", "--json"]).json();
    const saved = readFileSync(join(h.home, "daemon.log"), "utf8").split("\n").filter((l) => l.includes("vm c3: RAM saved by delta:")).at(-1);
    console.log(`snapshot of a clone: frozen ${s3.freezeMs} ms; ${saved?.split("delta: ")[1]}`);
    const pages = Number(/delta: (\d+) pages/.exec(saved ?? "")?.[1]);
    expect(pages).toBeGreaterThan(20000000 / 4096);
    expect(pages).toBeLessThan((256 * 1048576) / 4096);
    expect(statSync(join(s3.dir, "state.mig")).size).toBeLessThan(8 * 1048576);
    ok(["vm", "create", "c5", "--from", "c3@delta", "--start"]);
    expect(ok(["vm", "exec", "c5", "--", "sh", "-c", "sha256sum /dev/shm/ram-only; hostname"]).stdout.trim().split(/\s+/)).toEqual([sum, "/dev/shm/ram-only", "c5"]);
    ok(["vm", "delete", "c5", "--force"]);
    ok(["snapshot", "rm", "c3@delta"]);
    ok(["vm", "delete", "c3", "--force"]);
    ok(["snapshot", "rm", "snapbox@ramfile"]);
    expect(existsSync(snap.dir)).toBe(false);
  }, BOOT);

  test(`a checkpoint per step (${MAX_LAYERS_UNDER_TOP + 2} snapshots): the disk's chain stays short (streamed live into the top, the guest running), and every checkpoint, the oldest too, rolls back to what it held`, () => {
    const vmDir = () => ok(["vm", "show", "snapbox", "--json"]).json().runtime.vmDir as string;
    const chain = () => {
      const d = vmDir();
      const top = readFileSync(join(d, "system.top"), "utf8").trim();
      return (Bun.spawnSync(["qemu-img", "info", "-U", "--backing-chain", "--output=json", "-f", "qcow2", join(d, top)]).stdout.toString().match(/"filename"/g) ?? []).length;
    };
    const n = MAX_LAYERS_UNDER_TOP + 2;
    const took: { ms: number; shortened: boolean }[] = [];
    for (let i = 1; i <= n; i++) {
      ok(["vm", "exec", "snapbox", "--", "sh", "-c", `echo ${i} > /root/step; sync`]);
      const t = performance.now();
      const r = ok(["vm", "snapshot", "snapbox", "--name", `step${i}`]);
      took.push({ ms: Math.round(performance.now() - t), shortened: r.stderr.includes("shortening snapbox's system disk") });
    }
    console.log(`${n} snapshots: ${took.map((x) => `${x.ms}${x.shortened ? " (shortened)" : ""}`).join(", ")} ms; chain ${chain()} files`);
    expect(took.some((x) => x.shortened)).toBe(true);
    expect(chain()).toBeLessThanOrEqual(MAX_LAYERS_UNDER_TOP + 1);
    // the VM dir keeps only what its chain reads
    expect(readdirSync(vmDir()).filter((f) => /^system-.*\.(qcow2|img)$/.test(f)).length).toBe(chain());
    for (const i of [1, n, 2]) {
      ok(["vm", "rollback", "snapbox", `step${i}`]);
      expect(ok(["vm", "exec", "snapbox", "--", "cat", "/root/step", "/root/file"]).stdout).toBe(`${i}\nkept\n`);
    }
    for (let i = 1; i <= n; i++) ok(["snapshot", "rm", `snapbox@step${i}`]);
  }, BOOT);

  test("daemon killed -9 while a snapshot streams a long chain: no half snapshot, the VM runs on with its data; QEMU's job (ended or not) is taken over by the next snapshot, which leaves the chain short", () => {
    killAndWait(h.daemonPid()); // the next call starts a daemon with the fault armed
    let crashed = 0;
    for (let i = 1; i <= MAX_LAYERS_UNDER_TOP + 2 && !crashed; i++) {
      if (h.run(["vm", "snapshot", "snapbox", "--name", `cut${i}`], { BANGER_FAULT: "snapshot:streaming" }).code !== 0) crashed = i;
    }
    expect(crashed).toBeGreaterThan(0);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("SIGKILL at snapshot:streaming");
    expect(ok(["vm", "show", "snapbox", "--json"]).json()).toMatchObject({ alive: true, runtime: { state: "running" } }); // an unarmed daemon
    expect(h.run(["snapshot", "show", `snapbox@cut${crashed}`]).code).toBe(1);
    expect(readdirSync(h.home, { recursive: true }).map(String).filter((f) => parseTempName(basename(f)) !== null)).toEqual([]);
    expect(ok(["vm", "exec", "snapbox", "--", "cat", "/root/file"]).stdout).toBe("kept\n");
    // the job the dead daemon left is dismissed first (a concluded job not dismissed still holds the drive)
    ok(["vm", "snapshot", "snapbox", "--name", "after-cut"]);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toMatch(/vm snapbox: a disk job a killed daemon left \(banger-stream-disk0\) (ended|failed: .*); dismissed/);
    const d = ok(["vm", "show", "snapbox", "--json"]).json().runtime.vmDir as string;
    const files = (Bun.spawnSync(["qemu-img", "info", "-U", "--backing-chain", "--output=json", "-f", "qcow2", join(d, readFileSync(join(d, "system.top"), "utf8").trim())]).stdout.toString().match(/"filename"/g) ?? []).length;
    expect(files).toBeLessThanOrEqual(3);
    // and the VM dir no longer holds the layers the dead daemon's stream left unread
    expect(readdirSync(d).filter((f) => /^system-.*\.(qcow2|img)$/.test(f)).length).toBe(files);
    ok(["vm", "rollback", "snapbox", "after-cut"]);
    expect(ok(["vm", "exec", "snapbox", "--", "cat", "/root/file"]).stdout).toBe("kept\n");
    for (let i = 1; i < crashed; i++) ok(["snapshot", "rm", `snapbox@cut${i}`]);
    ok(["snapshot", "rm", "snapbox@after-cut"]);
  }, BOOT);

  test("snapshot rm; delete keeps the rest unless --with-snapshots", () => {
    for (const s of ok(["snapshot", "list", "--json"]).json() as { vmName: string; name: string }[]) {
      if (s.name.startsWith("fork-")) ok(["snapshot", "rm", `${s.vmName}@${s.name}`]);
    }
    expect(ok(["snapshot", "rm", "snapbox@two"]).stdout).toBe("removed snapbox@two\n");
    const gone = h.run(["snapshot", "show", "snapbox@two"]);
    expect([gone.code, gone.stderr]).toEqual([1, "banger: snapshot not found: snapbox@two\n"]);
    // stop and start of a VM on a chain of layers: it boots from its top overlay and keeps its data
    ok(["vm", "exec", "snapbox", "--", "sh", "-c", "echo persisted > /root/p; sync"]);
    const vmDir = ok(["vm", "show", "snapbox", "--json"]).json().runtime.vmDir as string;
    console.log(`snapbox's chain: ${readdirSync(vmDir).filter((f) => f.startsWith("system")).sort().join(" ")}`);
    ok(["vm", "stop", "snapbox"]);
    ok(["vm", "start", "snapbox"]);
    expect(ok(["vm", "exec", "snapbox", "--", "cat", "/root/p", "/root/file", "/root/crash"]).stdout).toBe("persisted\nkept\nbefore-crash\nafter-crash\n");
    // a cold-booted VM paused: snapshot it twice and fork it (QEMU refuses a second save of a VM stopped since its
    // last one until it has run: an instant's run first), and it stays paused throughout
    ok(["vm", "pause", "snapbox"]);
    ok(["vm", "snapshot", "snapbox", "--name", "pa"]);
    ok(["vm", "snapshot", "snapbox", "--name", "pb"]);
    const pf = ok(["vm", "fork", "snapbox", "pc", "--json"]).json();
    expect(ok(["vm", "show", "snapbox", "--json"]).json().runtime.state).toBe("paused");
    expect(ok(["vm", "exec", "pc", "--", "cat", "/root/p"]).stdout).toBe("persisted\n");
    ok(["vm", "resume", "snapbox"]);
    ok(["vm", "delete", "pc", "--force"]);
    for (const n of ["pa", "pb", pf.snapshot.name]) ok(["snapshot", "rm", `snapbox@${n}`]);
    const dir = ok(["snapshot", "show", "snapbox@one", "--json"]).json().dir;
    ok(["vm", "delete", "snapbox", "--force"]);
    expect(ok(["snapshot", "show", "snapbox@one", "--json"]).json().dir).toBe(dir);
    // the source VM is gone: its snapshot still clones (its dir holds its whole chain), and the clone outlives the snapshot
    ok(["vm", "create", "c4", "--from", "snapbox@one", "--start"]);
    expect(ok(["snapshot", "rm", "snapbox@one"]).code).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(ok(["vm", "exec", "c4", "--", "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; cat /root/file; test -e /root/later || echo no-later"]).stdout).toBe("kept\nno-later\n");
    ok(["vm", "delete", "c4", "--force"]);
    expect(ok(["snapshot", "list", "--json"]).json()).toEqual([]);
    // nothing kept for a VM that is gone
    expect(readdirSync(join(h.home, "snapshots"))).toEqual([]);
    expect(qemuPidsUnder(h.home)).toEqual([]);
  }, BOOT);
});
