import { describe, expect, test } from "bun:test";
import { BangerError } from "../../src/shared/errors.ts";
import { HOOK_NAMES, HookEngine, UndoStack, type HookName } from "../../src/core/hooks.ts";
import { emptyHandles } from "../../src/shared/model.ts";
import { sampleVM } from "../helpers/fakes.ts";

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
    const err = await h.run("vm:create", { vm, progress: () => {} }).catch((e) => e);
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

describe("undos", () => {
  test("returned undos are pushed as acquired and unwind LIFO exactly once", async () => {
    const h = new HookEngine();
    const undone: string[] = [];
    h.hook("first", "vm:cleanup", () => () => void undone.push("first"));
    h.hook("no-undo", "vm:cleanup", () => {});
    h.hook("second", "vm:cleanup", async () => async () => void undone.push("second"));
    h.hook("third", "vm:cleanup", () => () => void undone.push("third"), { order: "post" });
    const stack = new UndoStack();
    await h.run("vm:cleanup", payload(), stack);
    expect(stack.size).toBe(3);
    expect(undone).toEqual([]);
    expect(await stack.unwind()).toEqual([]);
    expect(undone).toEqual(["third", "second", "first"]);
    expect(stack.size).toBe(0);
    await stack.unwind();
    expect(undone).toEqual(["third", "second", "first"]);
  });

  test("undos of handlers that ran before a failure are on the stack; the failing one's are not", async () => {
    const h = new HookEngine();
    h.hook("a", "vm:cleanup", () => () => {});
    h.hook("b", "vm:cleanup", () => {
      throw new Error("x");
    });
    h.hook("c", "vm:cleanup", () => () => {});
    const stack = new UndoStack();
    await expect(h.run("vm:cleanup", payload(), stack)).rejects.toThrow("b:vm:cleanup: x");
    expect(stack.size).toBe(1);
  });

  test("without a stack, returned undos are ignored", async () => {
    const h = new HookEngine();
    let called = false;
    h.hook("a", "vm:cleanup", () => () => void (called = true));
    await h.run("vm:cleanup", payload());
    expect(called).toBe(false);
  });

  test("unwind collects failures without throwing and still runs the rest", async () => {
    const stack = new UndoStack();
    const order: string[] = [];
    stack.defer("tap", () => void order.push("tap"));
    stack.defer("loop", () => {
      order.push("loop");
      throw new Error("busy");
    });
    stack.defer("dm", async () => {
      order.push("dm");
      throw new Error("no such device");
    });
    const failures = await stack.unwind();
    expect(order).toEqual(["dm", "loop", "tap"]);
    expect(failures.map((f) => f.message)).toEqual(["undo dm: no such device", "undo loop: busy"]);
    expect(failures[0]!.cause).toBeInstanceOf(Error);
  });

  test("commit forgets the undos", async () => {
    const stack = new UndoStack();
    let ran = false;
    stack.defer("x", () => void (ran = true));
    stack.commit();
    expect(stack.size).toBe(0);
    await stack.unwind();
    expect(ran).toBe(false);
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
