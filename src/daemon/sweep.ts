import { join } from "node:path";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../core/plugin.ts";
import { parseTempName } from "../shared/temps.ts";
import type { Clock, DirEntry, FS, ProcInfo, Procs } from "../host/types.ts";
import { sameProcess } from "../host/procs.ts";
import { mountPoints, pathUnder } from "../host/mounts.ts";

/**
 * Startup sweep: what a daemon killed mid-operation leaves under
 * $BANGER_HOME, removed by the next daemon before it serves anything.
 *
 * - temps named by src/core/temps.ts (atomic-write temp files, image
 *   build/import dirs, the seed and initrd temps) in the home, images/,
 *   images/<name>/, vms/, vms/<id>/, vms/<id>/keys/ and vms/<id>/workspaces/;
 * - VM dirs (vms/<id>) and image dirs (images/<name>) that no store row owns.
 *
 * Never removed: a temp whose maker (the pid in its name) still runs; a
 * path with a mount under it (an rm -rf would cross into it); anything
 * reached through a symlink (a symlink itself may go, never what it points
 * at). A process left working in a leftover (an image build's mmdebstrap
 * outlives the daemon that ran it) is killed first: nobody will ever use
 * what it writes, unless it is a VM the reconcile just adopted: a VM still
 * running on a leftover's files (a clone of a snapshot removed while it ran
 * maps the snapshot's RAM file) keeps the leftover, never killed. The daemon
 * runs this holding the home's lock and before it
 * listens, so no other daemon and no request of its own is at work; the CLI
 * writes nothing under the home.
 */
export interface SweepDeps {
  paths: { home: string; imagesDir: string; vmsDir: string };
  fs: Pick<FS, "list" | "rmrf" | "readText">;
  procs: Procs;
  clock: Clock;
  log: Logger;
  /** Every VM row (its id and dir own vms/<id>). */
  vms: Iterable<{ id: string; runtime: { vmDir: string } }>;
  /** Every image row (its dir owns images/<name>). */
  images: Iterable<{ dir: string }>;
  /** Every snapshot row (its dir owns snapshots/<id>); absent: snapshots/ is not looked at. */
  snapshots?: Iterable<{ dir: string }>;
  /** The VMs the reconcile adopted, by their process: never killed, and what they work in stays. */
  vmProcesses?: Iterable<{ name: string; pid: number }>;
  selfPid?: number;
  /** Where mount points are read from (tests pass their own). */
  mountinfo?: string;
  /** How long a killed leftover process may take to go. */
  killWaitMs?: number;
}

export interface SweepItem {
  path: string;
  why: string;
  /** The process that made it, when its name says so. */
  pid?: number;
  /** Set when it was left in place, and why. */
  kept?: string;
}

const _POLL_MS = 50;

/** Does this process name the path in its argv (as an argument, `--opt=path`, or a path under it)? */
function _names(p: ProcInfo, path: string): boolean {
  return p.cmdline.some((a) => a === path || a.endsWith("=" + path) || a.includes(path + "/"));
}

async function _findLeftovers(d: SweepDeps): Promise<SweepItem[]> {
  const found: SweepItem[] = [];
  const temps = (dir: string, entries: DirEntry[]) => {
    for (const e of entries) {
      const t = parseTempName(e.name);
      if (!t) continue;
      const what = t.kind === "build" ? "image build dir" : t.kind === "import" ? "image import dir" : `temp file of ${t.target}`;
      found.push({ path: join(dir, e.name), why: what, ...(t.pid ? { pid: t.pid } : {}) });
    }
  };
  const top = await d.fs.list(d.paths.home);
  temps(d.paths.home, top);
  const isRealDir = (path: string) => {
    const e = top.find((x) => join(d.paths.home, x.name) === path);
    return !e || e.type === "dir"; // images/ and vms/ may live elsewhere only if the user made them so: never followed when a symlink
  };

  const imageRows = new Set([...d.images].map((i) => i.dir));
  if (isRealDir(d.paths.imagesDir)) {
    const images = await d.fs.list(d.paths.imagesDir);
    temps(d.paths.imagesDir, images);
    for (const e of images) {
      if (parseTempName(e.name) || e.name.startsWith(".")) continue;
      const p = join(d.paths.imagesDir, e.name);
      if (imageRows.has(p)) {
        if (e.type === "dir") temps(p, await d.fs.list(p));
      } else if (e.type === "dir") {
        found.push({ path: p, why: "image dir with no row" });
      }
    }
  } else d.log.warn(`sweep: ${d.paths.imagesDir} is not a plain dir; not swept`);

  const vmRows = new Set<string>();
  for (const vm of d.vms) vmRows.add(vm.runtime.vmDir).add(join(d.paths.vmsDir, vm.id));
  if (isRealDir(d.paths.vmsDir)) {
    const vms = await d.fs.list(d.paths.vmsDir);
    temps(d.paths.vmsDir, vms);
    for (const e of vms) {
      if (parseTempName(e.name)) continue;
      const p = join(d.paths.vmsDir, e.name);
      if (vmRows.has(p)) {
        if (e.type !== "dir") continue;
        const inside = await d.fs.list(p);
        temps(p, inside);
        for (const sub of ["keys", "workspaces"]) {
          if (inside.some((x) => x.name === sub && x.type === "dir")) temps(join(p, sub), await d.fs.list(join(p, sub)));
        }
      } else if (e.type === "dir" || e.type === "symlink") {
        found.push({ path: p, why: "VM dir with no row" });
      }
    }
  } else d.log.warn(`sweep: ${d.paths.vmsDir} is not a plain dir; not swept`);
  const snapsDir = join(d.paths.home, "snapshots");
  if (d.snapshots && isRealDir(snapsDir)) {
    const snapRows = new Set([...d.snapshots].map((s) => s.dir));
    const snaps = await d.fs.list(snapsDir);
    temps(snapsDir, snaps);
    for (const e of snaps) {
      if (parseTempName(e.name) || e.name.startsWith(".")) continue;
      const p = join(snapsDir, e.name);
      if (!snapRows.has(p) && (e.type === "dir" || e.type === "symlink")) found.push({ path: p, why: "snapshot dir with no row" });
    }
  }
  return found;
}

/** Remove what a crash left under the home (see SweepDeps); logs one line per removal. Never throws. */
export async function sweepHome(d: SweepDeps): Promise<SweepItem[]> {
  const self = d.selfPid ?? process.pid;
  let items: SweepItem[];
  try {
    items = await _findLeftovers(d);
  } catch (e) {
    d.log.warn(`sweep: cannot list ${d.paths.home}: ${errorMessage(e)}`);
    return [];
  }
  if (items.length === 0) return [];

  const mounts = await mountPoints(d.fs, d.mountinfo);
  const procs = (await d.procs.find()).filter((p) => p.pid !== self);
  const vmOf = new Map([...(d.vmProcesses ?? [])].map((v) => [v.pid, v.name] as const));

  for (const item of items) {
    try {
      if (item.pid && item.pid !== self && (await d.procs.info(item.pid))) {
        item.kept = `its maker, pid ${item.pid}, still runs`;
        continue;
      }
      const mounted = mounts.filter((m) => pathUnder(m, item.path));
      if (mounted.length) {
        item.kept = `mounted under it: ${mounted.join(", ")} (unmount, then restart the daemon)`;
        continue;
      }
      const workers = procs.filter((p) => _names(p, item.path));
      const vm = workers.find((w) => vmOf.has(w.pid));
      if (vm) {
        item.kept = `vm ${vmOf.get(vm.pid)} (pid ${vm.pid}) runs on it`;
        continue;
      }
      for (const w of workers) {
        // start-time guard: a pid reused since the scan is a stranger and is left alone
        if (!(await sameProcess(d.procs, w.pid, w.startTime))) continue;
        d.procs.kill(w.pid, "SIGKILL");
        d.log.info(`sweep: killed pid ${w.pid} (${_brief(w.cmdline)}) still working in ${item.path}`);
      }
      if (workers.length && !(await _allGone(d, workers))) {
        item.kept = `pid(s) ${workers.map((w) => w.pid).join(", ")} did not exit`;
        continue;
      }
      await d.fs.rmrf(item.path);
      d.log.info(`sweep: removed ${item.path} (${item.why}${item.pid ? ` of pid ${item.pid}, gone` : ""})`);
    } catch (e) {
      item.kept = `removing failed: ${errorMessage(e)}`;
    }
  }
  for (const item of items) if (item.kept) d.log.warn(`sweep: left ${item.path} (${item.why}): ${item.kept}`);
  return items;
}

async function _allGone(d: SweepDeps, ps: ProcInfo[]): Promise<boolean> {
  const deadline = d.clock.now().getTime() + (d.killWaitMs ?? 3000);
  for (;;) {
    let left = 0;
    for (const p of ps) {
      if (await sameProcess(d.procs, p.pid, p.startTime)) left++;
    }
    if (left === 0) return true;
    if (d.clock.now().getTime() >= deadline) return false;
    await d.clock.sleep(_POLL_MS);
  }
}

/** A process's first words for a log line: a `bash -c SCRIPT`'s script is a hundred lines, its first one says enough. */
function _brief(cmdline: readonly string[]): string {
  return cmdline
    .slice(0, 3)
    .map((a) => {
      const line = a.split("\n")[0]!;
      return line.length > 60 || line !== a ? `${line.slice(0, 60)}…` : line;
    })
    .join(" ");
}
