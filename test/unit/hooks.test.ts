import { describe, expect, test } from "bun:test";
import { BangerError, hostDiskFull } from "../../src/shared/errors.ts";
import { HOOK_NAMES, HookEngine, type HookName } from "../../src/core/hooks.ts";
import { emptyHandles } from "../../src/shared/model.ts";
import { runOperation } from "../../src/core/operation.ts";
import { caught, fakeHost, recordingOp, sampleVM, testLogger } from "../helpers/fakes.ts";

const vm = sampleVM();
const payload = () => ({ vm, handles: emptyHandles() });

describe("HookEngine ordering", () => {
  test("pre, then normal, then post; registration order within each group", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    h.hook("a", "vm:cleanup", () => void seen.push("a-normal"));
    h.hook("b", "vm:cleanup", () => void seen.push("b-post"), { order: "post" });
    h.hook("c", "vm:cleanup", () => void seen.push("c-pre"), { order: "pre" });
    h.hook("d", "vm:cleanup", () => void seen.push("d-normal"));
    h.hook("e", "vm:cleanup", () => void seen.push("e-pre"), { order: "pre" });
    h.hook("f", "vm:cleanup", () => void seen.push("f-post"), { order: "post" });
    await h.run("vm:cleanup", payload());
    expect(seen).toEqual(["c-pre", "e-pre", "a-normal", "d-normal", "b-post", "f-post"]);
  });

  test("handlers run serially: an async handler finishes before the next starts", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    h.hook("slow", "vm:cleanup", async () => {
      seen.push("slow:start");
      await Bun.sleep(5);
      seen.push("slow:end");
    });
    h.hook("fast", "vm:cleanup", () => void seen.push("fast"));
    await h.run("vm:cleanup", payload());
    expect(seen).toEqual(["slow:start", "slow:end", "fast"]);
  });

  test("hooks with no handlers are a no-op", async () => {
    const h = new HookEngine();
    await h.run("vm:delete", { vm });
    expect(await h.runAll("vm:delete", { vm })).toEqual([]);
    expect(h.count("vm:delete")).toBe(0);
  });
});

describe("HookEngine: providers' handlers", () => {
  test("run only for the VM that chose the provider, after pre and before normal handlers (storage, then net), in runAll too", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    h.hook("plain", "vm:cleanup", () => void seen.push("normal"));
    h.hookFor("disks", { kind: "storage", name: "copy" }, "vm:cleanup", () => void seen.push("copy"));
    h.hookFor("dm", { kind: "storage", name: "dm" }, "vm:cleanup", () => void seen.push("dm"));
    h.hookFor("tapper", { kind: "net", name: "tap" }, "vm:cleanup", () => void seen.push("tap"));
    h.hook("early", "vm:cleanup", () => void seen.push("pre"), { order: "pre" });
    h.hook("late", "vm:cleanup", () => void seen.push("post"), { order: "post" });
    const dmTap = sampleVM({ storage: "dm", net: "tap" });
    await h.run("vm:cleanup", { vm: dmTap, handles: emptyHandles() });
    expect(seen.splice(0)).toEqual(["pre", "dm", "tap", "normal", "post"]);
    expect(await h.runAll("vm:cleanup", { vm: sampleVM({ storage: "copy", net: "user" }), handles: emptyHandles() })).toEqual([]);
    expect(seen).toEqual(["pre", "copy", "normal", "post"]);
  });

  test("a provider's failure is attributed to its plugin; a hook that names no VM takes no provider handler", async () => {
    const h = new HookEngine();
    h.hookFor("disks", { kind: "storage", name: "copy" }, "vm:delete", () => {
      throw new Error("busy");
    });
    expect((await caught(h.run("vm:delete", { vm: sampleVM() }))).message).toBe("disks:vm:delete: busy");
    const err = (() => {
      try {
        h.hookFor("disks", { kind: "storage", name: "copy" }, "image:build", () => {});
      } catch (e) {
        return e as BangerError;
      }
      throw new Error("expected a throw");
    })();
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toContain('storage provider "copy" cannot handle "image:build"');
  });
});

describe("HookEngine registration", () => {
  test("hook() returns its own unregister function", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    const offA = h.hook("a", "vm:cleanup", () => void seen.push("a"));
    h.hook("b", "vm:cleanup", () => void seen.push("b"));
    expect(h.count("vm:cleanup")).toBe(2);
    offA();
    expect(h.count("vm:cleanup")).toBe(1);
    await h.run("vm:cleanup", payload());
    expect(seen).toEqual(["b"]);
    offA(); // a second call is harmless and removes nothing else
    expect(h.count("vm:cleanup")).toBe(1);
  });

  test("unknown hook name throws E_PLUGIN naming the known ones", () => {
    const h = new HookEngine();
    let err: unknown;
    try {
      h.hook("mine", "vm:explode" as HookName, () => {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BangerError);
    expect((err as BangerError).code).toBe("E_PLUGIN");
    const msg = (err as Error).message;
    expect(msg).toContain("vm:explode");
    expect(msg).toContain("mine");
    for (const n of HOOK_NAMES) expect(msg).toContain(n);
  });
});

describe("HookEngine errors", () => {
  test("first throw stops the chain; the error names plugin:hook", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    h.hook("ok-one", "vm:cleanup", () => void seen.push("one"));
    h.hook("net-tap", "vm:cleanup", () => {
      throw new Error("tap busy");
    });
    h.hook("never", "vm:cleanup", () => void seen.push("never"));
    const err = await h.run("vm:cleanup", payload()).then(
      () => null,
      (e) => e,
    );
    expect(seen).toEqual(["one"]);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_PLUGIN");
    expect(err.message).toBe("net-tap:vm:cleanup: tap busy");
    expect(err.cause).toBeInstanceOf(Error);
  });

  test("a BangerError's code is preserved, message prefixed with plugin:hook", async () => {
    const h = new HookEngine();
    h.hook("quota", "vm:create", () => {
      throw new BangerError("E_CONFLICT", "no free port");
    });
    const err = await h.run("vm:create", { vm, progress: () => {}, op: recordingOp() }).catch((e) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_CONFLICT");
    expect(err.message).toBe("quota:vm:create: no free port");
  });

  test("non-Error throws are still attributed", async () => {
    const h = new HookEngine();
    h.hook("weird", "vm:delete", () => {
      throw "a string";
    });
    const err = await h.run("vm:delete", { vm }).catch((e) => e);
    expect(err.message).toBe("weird:vm:delete: a string");
  });

  test("rejected promises are attributed like throws", async () => {
    const h = new HookEngine();
    h.hook("async-p", "vm:delete", async () => {
      await Bun.sleep(1);
      throw new Error("late");
    });
    await expect(h.run("vm:delete", { vm })).rejects.toThrow("async-p:vm:delete: late");
  });
});

describe("undos on the operation", () => {
  const create = (op: ReturnType<typeof recordingOp>) => ({ vm, progress: op.progress, op });

  test("returned undos are deferred as acquired, labelled plugin:hook, and unwind LIFO exactly once", async () => {
    const h = new HookEngine();
    const undone: string[] = [];
    h.hook("first", "vm:create", () => () => void undone.push("first"));
    h.hook("no-undo", "vm:create", () => {});
    h.hook("second", "vm:create", async () => async () => void undone.push("second"));
    h.hook("third", "vm:create", () => () => void undone.push("third"), { order: "post" });
    const op = recordingOp();
    await h.run("vm:create", create(op));
    expect(op.deferred).toEqual(["first:vm:create", "second:vm:create", "third:vm:create"]);
    expect(undone).toEqual([]);
    expect(await op.unwind()).toEqual([]);
    expect(undone).toEqual(["third", "second", "first"]);
    await op.unwind();
    expect(undone).toEqual(["third", "second", "first"]);
  });

  test("a handler defers before it fails: that undo is on the stack, a returned one of the failing handler is not", async () => {
    const h = new HookEngine();
    h.hook("a", "vm:create", () => () => {});
    h.hook("b", "vm:create", ({ op }) => {
      op.defer("half-made tap", () => {});
      throw new Error("x");
    });
    h.hook("c", "vm:create", () => () => {});
    const op = recordingOp();
    await expect(h.run("vm:create", create(op))).rejects.toThrow("b:vm:create: x");
    expect(op.deferred).toEqual(["a:vm:create", "b:vm:create: half-made tap"]);
  });

  test("a hook without an operation ignores returned undos", async () => {
    const h = new HookEngine();
    let called = false;
    h.hook("a", "vm:cleanup", () => () => void (called = true));
    await h.run("vm:cleanup", payload());
    expect(called).toBe(false);
  });
});

describe("runOperation", () => {
  const opts = (log = testLogger()) => ({ name: "vm start box", host: fakeHost(), log });

  test("success drops the undos: none runs", async () => {
    let ran = false;
    const out = await runOperation(opts(), async (op) => {
      op.defer("x", () => void (ran = true));
      return 42;
    });
    expect(out).toBe(42);
    expect(ran).toBe(false);
  });

  test("failure runs every undo once, in reverse; a failing undo is logged and kept, never thrown, the rest still run", async () => {
    const log = testLogger();
    const order: string[] = [];
    const first = new BangerError("E_STATE", "launch failed");
    const err = await runOperation(opts(log), async (op) => {
      op.defer("tap", () => void order.push("tap"));
      op.defer("loop", () => {
        order.push("loop");
        throw new Error("busy");
      });
      op.defer("dm", async () => {
        order.push("dm");
        throw new Error("no such device\nsecond line");
      });
      throw first;
    }).catch((e) => e);
    expect(order).toEqual(["dm", "loop", "tap"]);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_STATE");
    expect(err.message).toBe("launch failed");
    expect(err.undoFailures).toEqual(["dm: no such device", "loop: busy"]);
    expect(err.cause).toBe(first);
    expect(log.of("warn")).toEqual(["vm start box: undo dm: no such device", "vm start box: undo loop: busy"]);
  });

  test("with no undo failure the first error is thrown as it is; a plain Error with undo failures becomes E_INTERNAL", async () => {
    const first = new Error("boom");
    expect(await runOperation(opts(), async () => Promise.reject(first)).catch((e) => e)).toBe(first);
    const err = await runOperation(opts(), async (op) => {
      op.defer("x", () => {
        throw new Error("stuck");
      });
      throw first;
    }).catch((e) => e);
    expect(err.code).toBe("E_INTERNAL");
    expect(err.message).toBe("boom");
    expect(err.undoFailures).toEqual(["x: stuck"]);
  });

  test("a failure after its requester went away (signal aborted) is logged, since nobody reads the error; otherwise not", async () => {
    const log = testLogger();
    const ac = new AbortController();
    await runOperation({ ...opts(log), signal: ac.signal }, async () => {
      ac.abort();
      throw new BangerError("E_CANCELLED", "mmdebstrap was stopped: its request was cancelled\nmore");
    }).catch(() => {});
    expect(log.of("info")).toEqual(["vm start box: stopped, its requester went away (mmdebstrap was stopped: its request was cancelled); undoing it"]);
    const quiet = testLogger();
    await runOperation(opts(quiet), async () => Promise.reject(new Error("boom"))).catch(() => {});
    expect(quiet.of("info")).toEqual([]);
  });

  test("a failure because the host's disk filled is said as that (E_NO_SPACE), naming the operation and whether it was undone; a guest's or any other failure is left as it was", async () => {
    const tool = new BangerError("E_INTERNAL", "cp failed (exit 1): cp: error writing '/h/snapshots/x/memory.ram': No space left on device");
    const clean = await runOperation(opts(testLogger()), async () => Promise.reject(tool)).catch((e) => e);
    expect([clean.code, clean.message, clean.exitCode]).toEqual(["E_NO_SPACE", "vm start box: the host's disk is full (cp failed (exit 1): cp: error writing '/h/snapshots/x/memory.ram': No space left on device); what it did was undone: free space on it and try again", 1]);
    expect(clean.cause).toBe(tool);
    const stuck = await runOperation(opts(testLogger()), async (op) => {
      op.defer("x", () => Promise.reject(new Error("stuck")));
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    }).catch((e) => e);
    expect([stuck.code, stuck.undoFailures]).toEqual(["E_NO_SPACE", ["x: stuck"]]);
    expect(stuck.message).toBe("vm start box: the host's disk is full (ENOSPC: no space left on device, write); it was undone as far as it could be: free space on it and try again");
    // the guest's disk: its callers say so (E_STATE), and "No space left" in a guest's words is not the host's
    for (const other of [new BangerError("E_STATE", "vm box: workspace /w: the guest's disk is full (no space left on device under /w)"), new BangerError("E_STATE", "upload to box:/x failed (exit 1): No space left on device"), new Error("boom")]) {
      expect(await runOperation(opts(testLogger()), async () => Promise.reject(other)).catch((e) => e)).toBe(other);
    }
    // the store's own
    expect(hostDiskFull(new Error("database or disk is full"))?.message).toBe("the host's disk is full (database or disk is full): free space on it and try again");
    expect(hostDiskFull(clean)).toBe(clean);
  });

  test("a defer after the operation ended is refused with a warning, not run later", async () => {
    const log = testLogger();
    let late: ((l: string, fn: () => void) => void) | null = null;
    await runOperation(opts(log), async (op) => {
      late = (l, fn) => op.defer(l, fn);
    });
    late!("stray", () => {});
    expect(log.of("warn")[0]).toContain('undo "stray" deferred after the operation ended');
  });
});

describe("runAll", () => {
  test("runs every handler and collects errors naming plugin:hook", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    h.hook("a", "vm:cleanup", () => {
      seen.push("a");
      throw new Error("tap gone");
    });
    h.hook("b", "vm:cleanup", () => void seen.push("b"));
    h.hook("c", "vm:cleanup", async () => {
      seen.push("c");
      throw new BangerError("E_INTERNAL", "dmsetup failed");
    });
    const errors = await h.runAll("vm:cleanup", payload());
    expect(seen).toEqual(["a", "b", "c"]);
    expect(errors.map((e) => e.message)).toEqual(["a:vm:cleanup: tap gone", "c:vm:cleanup: dmsetup failed"]);
  });

  test("a handler that unregisters itself mid-run doesn't skip the next", async () => {
    const h = new HookEngine();
    const seen: string[] = [];
    const off = h.hook("once", "vm:cleanup", () => {
      seen.push("once");
      off();
    });
    h.hook("after", "vm:cleanup", () => void seen.push("after"));
    await h.run("vm:cleanup", payload());
    await h.run("vm:cleanup", payload());
    expect(seen).toEqual(["once", "after", "after"]);
  });
});
