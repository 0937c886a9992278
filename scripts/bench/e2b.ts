/**
 * `e2b` (issue 19): the E2B SDK against banger's E2B endpoint, vs the same
 * through the banger CLI, on the same image with a warm-start template:
 * `Sandbox.create` (SDK → listener → the daemon's create → warm clone) vs
 * `banger vm create --start`, each until it returns (the clone runs and
 * answers); and a control-plane round trip (`Sandbox.getInfo`) vs `banger
 * vm show --json`; and what a `commands.run('true')` (envd's process
 * service: a guest session started and followed on one SSH channel) adds
 * over `banger vm exec -- true` (one SSH exec, plus a CLI process). As root:
 * the `default` image has no user `user`. Interleaved, so load hits both alike.
 */
import type { Bench } from "./run.ts";
import { formatTable, summarize, summaryRow } from "./stats.ts";
import type { BenchVMs } from "./vm.ts";

export async function e2bSection(b: Bench, vms: BenchVMs, o: { creates: number; infos: number; runs: number }): Promise<void> {
  await vms.image();
  console.log("  warm-start template of default (image warm default)…");
  await b.must(b.banger("image", "warm", "default"));
  await b.must(b.banger("e2b", "serve", "--listen", "127.0.0.1:0"));
  const env = await b.must(b.banger("e2b", "env"));
  const vars = Object.fromEntries([...env.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
  const opts = { apiUrl: vars.E2B_API_URL!, sandboxUrl: vars.E2B_SANDBOX_URL!, apiKey: vars.E2B_API_KEY! };
  const { Sandbox } = await import("e2b");
  const sdk: number[] = [];
  const cli: number[] = [];
  let keep = "";
  for (let i = 0; i < o.creates; i++) {
    let t = performance.now();
    const sb = await Sandbox.create("default", { ...opts, timeoutMs: 600_000 });
    sdk.push(performance.now() - t);
    if (i === 0) keep = sb.sandboxId;
    else await Sandbox.kill(sb.sandboxId, opts);
    const name = `bx-e${i}`;
    t = performance.now();
    await b.must(b.banger("vm", "create", name, "--start"));
    cli.push(performance.now() - t);
    await b.must(b.banger("vm", "delete", name, "--force"));
  }
  const info: number[] = [];
  const show: number[] = [];
  for (let i = 0; i < o.infos; i++) {
    const t = performance.now();
    await Sandbox.getInfo(keep, opts);
    info.push(performance.now() - t);
    show.push(await b.time(b.banger("vm", "show", keep, "--json")));
  }
  // commands.run: the SDK sends `/bin/bash -l -c CMD`, so `vm exec -- bash -l -c true` is the same guest work over a plain exec
  const sb = await Sandbox.connect(keep, opts);
  const cmd: number[] = [];
  const exec: number[] = [];
  const execLogin: number[] = [];
  await sb.commands.run("true", { user: "root" });
  for (let i = 0; i < o.runs; i++) {
    const t = performance.now();
    await sb.commands.run("true", { user: "root" });
    cmd.push(performance.now() - t);
    exec.push(await b.time(b.banger("vm", "exec", keep, "--", "true")));
    execLogin.push(await b.time(b.banger("vm", "exec", keep, "--", "bash", "-l", "-c", "true")));
  }
  await Sandbox.kill(keep, opts);
  await b.must(b.banger("e2b", "stop"));
  const s = { sdk: summarize(sdk), cli: summarize(cli), info: summarize(info), show: summarize(show), cmd: summarize(cmd), exec: summarize(exec), execLogin: summarize(execLogin) };
  const added = s.cmd.median - s.exec.median;
  console.log(formatTable(["measure", "n", "min", "median", "max"], [
    summaryRow("Sandbox.create (SDK, warm clone)", s.sdk),
    summaryRow("banger vm create --start (CLI, warm clone)", s.cli),
    summaryRow("Sandbox.getInfo (SDK, in-process client)", s.info),
    summaryRow("banger vm show --json (CLI process)", s.show),
    summaryRow("sandbox.commands.run('true') (SDK, root)", s.cmd),
    summaryRow("banger vm exec -- true (CLI process)", s.exec),
    summaryRow("banger vm exec -- bash -l -c true (CLI process)", s.execLogin),
  ]));
  console.log(`  added latency per commands.run vs vm exec (medians): ${added.toFixed(0)} ms`);
  b.row({ id: "E1", section: "e2b", measure: "Sandbox.create (e2b SDK → E2B endpoint), warm template", stats: s.sdk, baseline: { name: "banger vm create --start (CLI), same warm template", stats: s.cli } });
  b.row({ id: "E2", section: "e2b", measure: "Sandbox.getInfo round trip (control plane)", stats: s.info, baseline: { name: "banger vm show --json (a CLI process)", stats: s.show } });
  b.row({
    id: "E3",
    section: "e2b",
    measure: "added latency per commands.run('true') vs vm exec: sandbox.commands.run('true') (SDK, root)",
    stats: s.cmd,
    baseline: { name: "banger vm exec -- true (CLI process)", stats: s.exec },
    note: `median added ${added.toFixed(0)} ms; the SDK runs bash -l -c: vm exec -- bash -l -c true is ${s.execLogin.median.toFixed(0)} ms`,
  });
}
