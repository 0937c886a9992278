import { describe, expect, test } from "bun:test";
import { BangerError } from "../../src/shared/errors.ts";
import { briefValue, MAX_JSON_BODY_BYTES, parseBody } from "../../src/daemon/http.ts";
import { shellJoin, shellQuote } from "../../src/shared/quote.ts";
import { caught } from "../helpers/fakes.ts";

const post = (body: string, headers: Record<string, string> = {}) => new Request("http://x/v1/vms", { method: "POST", body, headers });
const schema = { name: { type: "string" as const, required: true } };

describe("parseBody", () => {
  test.each(["__proto__", "constructor", "toString", "hasOwnProperty"])("an own %s key is an unknown field, not a pass", async (key) => {
    const err = await caught(parseBody(post(`{"name":"a",${JSON.stringify(key)}:{"x":1}}`), schema));
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_BAD_REQUEST");
    expect(err.message).toContain(`unknown field "${key}"`);
  });

  test("over the cap is E_TOO_LARGE (413, exit 2), by header before reading and by length after", async () => {
    const big = `{"name":"${"a".repeat(MAX_JSON_BODY_BYTES)}"}`;
    const byLength = await caught(parseBody(post(big), schema));
    expect(byLength.code).toBe("E_TOO_LARGE");
    expect(byLength.httpStatus).toBe(413);
    expect(byLength.exitCode).toBe(2);
    const byHeader = await caught(parseBody(post("{}", { "content-length": String(MAX_JSON_BODY_BYTES + 1) }), schema));
    expect(byHeader.code).toBe("E_TOO_LARGE");
    // a route may allow more
    expect(await parseBody<{ name: string }>(post(big), schema, 4 * MAX_JSON_BODY_BYTES)).toEqual({ name: "a".repeat(MAX_JSON_BODY_BYTES) });
  });

  test("a wrong-typed huge or multi-line value is cut short in the message", async () => {
    const err = await caught(parseBody(post(JSON.stringify({ name: ["x\n".repeat(10_000)] })), schema));
    expect(err.message.length).toBeLessThan(200);
    expect(err.message).not.toContain("\n");
    expect(briefValue("a".repeat(100))).toBe(`"${"a".repeat(59)}… (102 chars)`);
  });
});

describe("shell quoting refuses NUL", () => {
  test("a NUL anywhere is E_BAD_REQUEST; everything else still quotes", () => {
    expect(() => shellQuote("a\0b")).toThrow(/NUL byte/);
    expect(() => shellJoin(["ok", "x\0"])).toThrow(BangerError);
    expect(shellJoin(["it's", "$(x)", "a\nb"])).toBe(`'it'\\''s' '$(x)' 'a\nb'`);
  });
});
