import { defineCommand } from "./define.ts";
import { resolveHome } from "../shared/paths.ts";
import { nowMs } from "../host/clock.ts";
import { environ } from "../host/config.ts";
import { createProcs } from "../host/procs.ts";
import { DaemonClient } from "../client/daemon-client.ts";
import { jsonArg, out, writeChunk } from "./context.ts";

const status = defineCommand({
  meta: { name: "status", description: "Is the daemon running? (exit 1 if not)" },
  args: { ...jsonArg },
  async run({ args }) {
    const h = await new DaemonClient(resolveHome(environ())).health();
    out(h ? { running: true, ...h } : { running: false }, !!args.json, () => (h ? `daemon running: pid ${h.pid}, version ${h.version}, since ${h.startedAt}` : "daemon not running"));
    if (!h) process.exit(1);
  },
});

const stop = defineCommand({
  meta: { name: "stop", description: "Stop the daemon (running VMs keep running)" },
  args: { ...jsonArg },
  async run({ args }) {
    const c = new DaemonClient(resolveHome(environ()));
    const h = await c.health();
    let gone = true;
    if (h) {
      await c.shutdown();
      const deadline = nowMs() + 15_000;
      while (nowMs() < deadline && (await c.health())) await Bun.sleep(50);
      // it stops answering at once, then lets the requests in flight finish (up to 5 s): "stopped" once its process is gone
      const procs = createProcs();
      while (nowMs() < deadline && (await procs.info(h.pid))) await Bun.sleep(50);
      gone = !(await procs.info(h.pid));
    }
    out({ stopped: !!h && gone, pid: h?.pid ?? 0 }, !!args.json, () => (!h ? "daemon was not running" : gone ? `daemon ${h.pid} stopped` : `daemon ${h.pid} is still finishing its requests (it answers no new ones)`));
  },
});

const logs = defineCommand({
  meta: { name: "logs", description: "Print the daemon log (--json: {path, data})" },
  args: { follow: { type: "boolean", alias: "f", description: "Keep printing" }, ...jsonArg },
  async run({ args }) {
    const path = new DaemonClient(resolveHome(environ())).paths.log;
    const f = Bun.file(path);
    if (args.json && !args.follow) {
      out({ path, data: (await f.exists()) ? await f.text() : "" }, true, () => "");
      return;
    }
    let pos = 0;
    for (;;) {
      const size = (await f.exists()) ? f.size : 0;
      if (size > pos) {
        writeChunk(1, new Uint8Array(await f.slice(pos, size).arrayBuffer()));
        pos = size;
      }
      if (!args.follow) break;
      await Bun.sleep(250);
    }
  },
});

const SUBS = { status, stop, logs };

export default defineCommand({
  meta: { name: "daemon", description: "Run the daemon in the foreground (bangerd); status|stop|logs manage it" },
  args: { plugin: { type: "string", description: "Load a plugin file (repeatable via BANGER_PLUGINS=a:b)" } },
  subCommands: SUBS,
  async run({ rawArgs, args }) {
    // citty runs the parent's run after a subcommand; only the bare `banger daemon` serves.
    if (rawArgs.some((a) => a in SUBS)) return;
    // the binary starts with the JIT held back for short commands (scripts/build.sh); a daemon runs for long: normal policy
    Bun.unsafe.setJITPolicy(1);
    const { runDaemon } = await import("../daemon/main.ts");
    await runDaemon({ plugins: args.plugin ? [String(args.plugin)] : [] });
  },
});
