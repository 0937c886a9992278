/**
 * `image-own` (issue 16): a derived image (+2 small packages) vs a full
 * `image build`, the same derived build again (a cache hit), and a boot of
 * an OCI-imported busybox image vs the default image.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BUSYBOX_CONFIG, busyboxLayers, writeOciLayout } from "../../test/helpers/oci.ts";
import type { Bench } from "./run.ts";
import { fmtMs, formatTable, ratio, summarize, summaryRow } from "./stats.ts";
import type { BenchVMs } from "./vm.ts";

export async function imageOwnSection(b: Bench, vms: BenchVMs, o: { derive: number; hit: number; boot: number }): Promise<void> {
  await vms.image();
  const derive = ["image", "build", "benchtools", "--from", "default", "--packages", "jq,make", "--run", "echo built > /etc/tools-stamp"];
  // the full build's baseline is timed once (minutes under load); the derived one n times with --force
  console.log("  timing a full `banger image build --name benchfull`…");
  const full = await b.time(b.banger("image", "build", "--name", "benchfull"));
  const derived: number[] = [];
  for (let i = 0; i < o.derive; i++) derived.push(await b.time(b.banger(...derive, "--force")));
  const hits: number[] = [];
  for (let i = 0; i < o.hit; i++) hits.push(await b.time(b.banger(...derive)));
  const s = { full: summarize([full]), derived: summarize(derived), hit: summarize(hits) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs full build"], [
    summaryRow("image build --from default --packages jq,make --run …", s.derived, { baseline: s.full }),
    summaryRow("same build again (cache hit)", s.hit, { baseline: s.full }),
    summaryRow("image build (full, baseline)", s.full, { baseline: s.full }),
  ]));
  b.note("image-own", "derived build (+2 packages) / full image build", ratio(s.derived.median, s.full.median));
  b.row({ id: "I1", section: "image-own", measure: "image build --from default --packages jq,make --run (derived)", stats: s.derived, baseline: { name: "full banger image build", stats: s.full }, goal: { on: "ratio", max: 0.3, text: "≤ 0.3× a full build" } });
  b.row({ id: "I2", section: "image-own", measure: "the same derived build again (cache hit)", stats: s.hit, goal: { on: "value", max: 1000, text: "≤ 1 s" }, note: `median ${fmtMs(s.hit.median)}` });

  const work = join(b.tmp, "oci");
  mkdirSync(work, { recursive: true });
  writeOciLayout(join(work, "layout"), busyboxLayers(join(work, "bb")), BUSYBOX_CONFIG);
  await b.must(b.banger("image", "import", "benchbb", "--oci", join(work, "layout")));
  let i = 0;
  let j = 0;
  const boots = await b.interleaved(
    {
      oci: () => b.time(b.banger("vm", "run", "--vmm", "qemu", "--image", "benchbb", "--name", `o${i++}`, "--rm", "--", "true")),
      def: () => b.time(b.banger("vm", "run", "--vmm", "qemu", "--name", `d${j++}`, "--rm", "--", "true")),
    },
    { oci: o.boot, def: o.boot },
    "boots",
  );
  const bs = { oci: summarize(boots.oci), def: summarize(boots.def) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs default"], [
    summaryRow("vm run --rm -- true, OCI busybox image", bs.oci, { baseline: bs.def }),
    summaryRow("vm run --rm -- true, default image", bs.def, { baseline: bs.def }),
  ]));
  b.note("image-own", "boot of an OCI-imported image / the default image", ratio(bs.oci.median, bs.def.median));
  b.row({ id: "I3", section: "image-own", measure: "vm run --rm -- true of an OCI-imported busybox image", stats: bs.oci, baseline: { name: "the default image", stats: bs.def }, goal: { on: "ratio", max: 1.1, text: "≤ 1.1× the default image" } });
}
