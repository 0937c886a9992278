/**
 * `image`: the guest image's size on disk (allocated blocks: rootfs.ext4 is
 * sparse) and, with BANGER_BENCH_IMAGE_BUILD=1, a full timed `image build`.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import type { Bench } from "./run.ts";
import { fmtBytes, fmtMs, formatTable, summarize } from "./stats.ts";
import type { BenchVMs } from "./vm.ts";

function sizes(dir: string): string[][] {
  const rows: string[][] = [];
  let alloc = 0;
  let apparent = 0;
  for (const f of ["rootfs.ext4", "vmlinuz", "initrd.img"]) {
    try {
      const st = statSync(join(dir, f));
      // st.blocks counts 512-byte units whatever the filesystem's block size
      const a = st.blocks * 512;
      alloc += a;
      apparent += st.size;
      rows.push([f, fmtBytes(st.size), fmtBytes(a)]);
    } catch {
      rows.push([f, "missing", "-"]);
    }
  }
  rows.push(["total", fmtBytes(apparent), fmtBytes(alloc)]);
  return rows;
}

export async function imageSection(b: Bench, vms: BenchVMs): Promise<void> {
  const dir = await vms.image();
  console.log(`  ${dir}`);
  console.log(formatTable(["file", "apparent", "allocated"], sizes(dir)));
  if (process.env.BANGER_BENCH_IMAGE_BUILD !== "1") {
    console.log("  image build not timed (set BANGER_BENCH_IMAGE_BUILD=1 to time a full `image build --name benchimg`)");
    return;
  }
  console.log("  timing a full `banger image build --name benchimg` (about a minute)…");
  const ms = await b.time(b.banger("image", "build", "--name", "benchimg"));
  const built = join(b.home, "images", "benchimg");
  console.log(formatTable(["variant", "n", "time"], [["banger image build --name benchimg", "1", fmtMs(ms)]]));
  console.log(formatTable(["file", "apparent", "allocated"], sizes(built)));
  b.note("image", "image build --name benchimg (n=1, no baseline)", fmtMs(ms));
  b.row({ id: "image", section: "image", measure: "banger image build (no baseline)", stats: summarize([ms]) });
}
