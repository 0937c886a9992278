// The early read's HTTP answer reader (src/host/unix-get.ts): it takes a plain
// answer whole, and anything else it refuses with E_EARLY_UNREAD (the caller
// then asks again with fetch), never a half-read answer.
import { describe, expect, test } from "bun:test";
import { answerHeader, answerResponse, EARLY_UNREAD, parseAnswer } from "../../src/host/unix-get.ts";

const bytes = (s: string) => new TextEncoder().encode(s).length;
const parse = (s: string) => parseAnswer(s, bytes(s));
const unread = (s: string, n = bytes(s)) => {
  let err: unknown;
  try {
    parseAnswer(s, n);
  } catch (e) {
    err = e;
  }
  expect((err as { code?: string } | undefined)?.code).toBe(EARLY_UNREAD);
};

describe("parseAnswer", () => {
  test("a plain answer: status, headers by lower-case name, the body as sent", () => {
    const body = '{"vms":[{"name":"é-ü-✓"}]}';
    const a = parse(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Banger-Version:  0.1.0+abc \r\nContent-Length: ${bytes(body)}\r\n\r\n${body}`);
    expect(a.status).toBe(200);
    expect(a.statusText).toBe("OK");
    expect(answerHeader(a, "x-banger-version")).toBe("0.1.0+abc");
    expect(answerHeader(a, "content-type")).toBe("application/json");
    expect(answerHeader(a, "nope")).toBeNull();
    expect(a.body).toBe(body);
  });

  test("an error status and an empty body", () => {
    const a = parse("HTTP/1.1 409 Conflict\r\ncontent-length: 0\r\n\r\n");
    expect([a.status, a.statusText, a.body]).toEqual([409, "Conflict", ""]);
    expect(parse("HTTP/1.0 500\r\ncontent-length: 2\r\n\r\n{}").status).toBe(500);
  });

  test("as a Response: the same status, headers and body", async () => {
    const res = answerResponse(parse('HTTP/1.1 404 Not Found\r\nx-banger-version: v\r\ncontent-length: 11\r\n\r\n{"error":1}'));
    expect(res.status).toBe(404);
    expect(res.statusText).toBe("Not Found");
    expect(res.headers.get("X-Banger-Version")).toBe("v");
    expect(await res.json()).toEqual({ error: 1 });
    expect(answerResponse(parse("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")).body).toBeNull();
  });

  test("anything but a plain, whole answer is refused, not half-read", () => {
    unread(""); // closed before a word
    unread("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"); // cut in the head
    unread("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}"); // cut in the body
    unread("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{}"); // more than declared
    unread("HTTP/1.1 200 OK\r\n\r\n{}"); // no length
    unread("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 7\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    for (const len of ["-1", "1e1", "0x2", " ", "2 2", "99999999999999999"]) unread(`HTTP/1.1 200 OK\r\ncontent-length: ${len}\r\n\r\n{}`);
    for (const line of ["HTTP/2 200 OK", "HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "HTTP/1.1 +20 OK", "http/1.1 200 OK", "SSH-2.0-dropbear", "HTTP/1.1 099 x"]) {
      unread(`${line}\r\ncontent-length: 0\r\n\r\n`);
    }
    unread("HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n");
    unread("HTTP/1.1 200 OK\r\n: empty name\r\ncontent-length: 0\r\n\r\n");
    // a head that is not ASCII: its byte count is not its length, so the body's cannot be checked
    unread("HTTP/1.1 200 OK\r\nx-name: é\r\ncontent-length: 2\r\n\r\n{}");
    // a byte that is not UTF-8 in the head: one byte, one replacement character, and still refused
    unread("HTTP/1.1 200 OK\r\nx-name: \uFFFD\r\ncontent-length: 2\r\n\r\n{}", bytes("HTTP/1.1 200 OK\r\nx-name: \r\ncontent-length: 2\r\n\r\n{}") + 1);
    // the byte count of what arrived decides, not the length of the text
    unread("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\né", bytes("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n") + 1);
  });
});
