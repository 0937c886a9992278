import type { Engine } from "../core/engine.ts";
import { Snapshots, type WarmShape } from "../core/snapshots.ts";
import { errorMessage } from "../shared/errors.ts";
import type { VMRecord } from "../shared/model.ts";

/**
 * Warm-start templates made without being asked: after a cold `vm create
 * --start` / `vm run` of an image at a shape with no template yet, the same
 * work as `image warm` runs in the background, one at a time (each is a boot
 * and a snapshot: several at once would slow every VM on the host), after
 * the user's command has had its answer. A failure is logged and that shape
 * not tried again until the daemon restarts.
 */
export class AutoWarm {
  private readonly snapshots: Snapshots;
  private readonly queued = new Set<string>();
  private readonly failed = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private readonly stop = new AbortController();

  constructor(
    private readonly engine: Engine,
    private readonly enabled: boolean,
  ) {
    this.snapshots = new Snapshots(engine);
  }

  /** Queue a template of `vm`'s image and shape unless one exists, is queued, failed before, or cannot be cloned. */
  afterColdBoot(vm: VMRecord): void {
    if (!this.enabled || this.stop.signal.aborted) return;
    const { spec } = vm;
    // not for tap shapes: a clone of a tap VM is re-addressed and works, but a tap VM's snapshot is a whole stream with
    // no RAM file its clones could share (virtio-net's state loads only into the VM's own tap), and a template built
    // behind the user's back would hold a tap and a lease of the bridge while it is made
    if (spec.net === "tap") return;
    const key = JSON.stringify([spec.image, spec.driver, spec.net, spec.storage, spec.cpus, spec.memoryMiB, spec.diskMiB, spec.workDiskMiB]);
    if (this.queued.has(key) || this.failed.has(key) || this.snapshots.templateFor(spec)) return;
    this.queued.add(key);
    const shape: WarmShape = { cpus: spec.cpus, memoryMiB: spec.memoryMiB, diskMiB: spec.diskMiB, workDiskMiB: spec.workDiskMiB, driver: spec.driver, net: spec.net, storage: spec.storage };
    const log = this.engine.deps.log;
    this.chain = this.chain.then(async () => {
      // a macrotask later: the stream that queued this has sent its answer and closed
      await new Promise((r) => setTimeout(r, 0));
      if (this.stop.signal.aborted) return;
      // asked again meanwhile by `image warm`: nothing to do
      if (this.snapshots.templateFor(spec)) return;
      const t0 = this.engine.deps.host.clock.now().getTime();
      log.info(`auto-warm: making a warm-start template of ${spec.image} (${spec.driver}, ${spec.net}, ${spec.storage}, ${spec.cpus} cpu, ${spec.memoryMiB} MiB)`);
      try {
        const s = await this.snapshots.warm(spec.image, shape, () => {}, this.stop.signal);
        log.info(`auto-warm: template ${s.vmName}@${s.name} ready in ${this.engine.deps.host.clock.now().getTime() - t0} ms`);
      } catch (e) {
        this.failed.add(key);
        log.warn(`auto-warm: template of ${spec.image} failed (not retried until the daemon restarts): ${errorMessage(e)}`);
      } finally {
        this.queued.delete(key);
      }
    });
  }

  /** Daemon shutdown: no further template starts, and the boot of the one being made is aborted. */
  close(): void {
    this.stop.abort();
  }

  /** Resolves when every queued template is made or has failed (tests). */
  idle(): Promise<void> {
    return this.chain;
  }
}
