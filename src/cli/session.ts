import { defineCommand } from "./define.ts";
import { log } from "./log.ts";
import { BangerError } from "../shared/errors.ts";
import { readableCommand } from "../shared/quote.ts";
import type { GuestSession } from "../shared/model.ts";
import { completeUtf8Prefix, utf8OrNull } from "../shared/utf8.ts";
import { daemon, fail, intArg, isTTY, jsonArg, out, passthrough, readStdinUpTo, usage, writeChunk, writeStreamed } from "./context.ts";
import { onReaderGone } from "../host/stdio.ts";
import { table } from "./table.ts";
import { MAX_SESSION_SEND_BYTES } from "../shared/routes.ts";
import { execArgs, execOptions } from "./exec-args.ts";

const vmArg = { vm: { type: "positional", required: true, description: "VM name" } } as const;
const sArgs = { ...vmArg, session: { type: "positional", required: true, description: "Session name or id" } } as const;
/** Ctrl-]: leaves an attach without touching the session (as telnet does). */
const DETACH_KEY = 0x1d;

function describe(s: GuestSession): string {
  const lines = [
    `session:  ${s.name} (${s.id})`,
    `status:   ${s.status}${s.exitCode !== null ? ` (exit ${s.exitCode})` : ""}`,
    `command:  ${readableCommand([s.command, ...s.args])}`,
    `cwd:      ${s.cwd || "-"}`,
    `stdin:    ${s.stdinMode}`,
    `pid:      ${s.guestPid || "-"}`,
    `started:  ${s.startedAt || "-"}`,
  ];
  if (s.endedAt) lines.push(`ended:    ${s.endedAt}`);
  if (s.launchStage) lines.push(`failed at stage ${s.launchStage}: ${s.launchMessage}`);
  // an end the daemon recorded (its vm stopped, its process vanished): the why was in --json only
  else if (s.launchMessage) lines.push(`why:      ${s.launchMessage}`);
  return lines.join("\n");
}

/** --require may repeat; citty keeps only the last, so read them from argv. */
function repeated(flag: string): string[] {
  const argv = process.argv;
  const out: string[] = [];
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    const a = argv[i]!;
    if (a === `--${flag}` && argv[i + 1] !== undefined) out.push(argv[++i]!);
    else if (a.startsWith(`--${flag}=`)) out.push(a.slice(flag.length + 3));
  }
  return out.flatMap((v) => v.split(",")).filter(Boolean);
}

const start = defineCommand({
  meta: { name: "start", description: "Start a long-lived guest process: banger session start VM [--name N] -- CMD ARGS" },
  args: {
    ...vmArg,
    name: { type: "string", description: "Session name (default: generated)" },
    ...execArgs,
    stdin: { type: "string", description: "pipe (default: send/attach write to it) or closed (/dev/null)" },
    require: { type: "string", description: "A command that must exist in the guest (repeatable)" },
    ...jsonArg,
  },
  async run({ args }) {
    const [command, ...rest] = passthrough.argv;
    if (!command) usage("a command is required after --, e.g. `banger session start VM --name agent -- pi --mode rpc`");
    if (args.stdin !== undefined && args.stdin !== "pipe" && args.stdin !== "closed") usage(`--stdin must be pipe or closed, not ${JSON.stringify(args.stdin)}`);
    const { cwd, ...launch } = await execOptions(args);
    const s = await (await daemon()).call("sessionStart", {
      params: { vm: args.vm },
      body: {
        name: args.name,
        command,
        args: rest,
        cwd,
        stdinMode: args.stdin,
        requiredCommands: repeated("require"),
        ...launch,
      },
    });
    out(s, !!args.json, () => `started session ${s.name} (pid ${s.guestPid})`);
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List a VM's sessions" },
  args: { ...vmArg, ...jsonArg },
  async run({ args }) {
    const { sessions } = await (await daemon()).call("sessionList", { params: { vm: args.vm } });
    out(sessions, !!args.json, () =>
      sessions.length === 0 ? "no sessions" : table([["NAME", "STATUS", "STDIN", "COMMAND"], ...sessions.map((s) => [s.name, s.status, s.stdinMode, readableCommand([s.command, ...s.args])])]),
    );
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Show a session (status refreshed from the guest)" },
  args: { ...sArgs, ...jsonArg },
  async run({ args }) {
    const s = await (await daemon()).call("sessionShow", { params: { vm: args.vm, session: args.session } });
    out(s, !!args.json, () => describe(s));
  },
});

async function readPayload(file: string | undefined): Promise<Uint8Array> {
  if (file === undefined || file === "-") return readStdinUpTo(MAX_SESSION_SEND_BYTES, "session send", "one send is written whole: send more in several, or from a file in the VM");
  try {
    const { createFS } = await import("../host/fs.ts");
    return await createFS().readBytes(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : (e as Error).message;
    throw new BangerError("E_USAGE", `cannot read ${file}: ${why}`);
  }
}

async function sendBytes(vm: string, session: string, payload: Uint8Array) {
  const req = { params: { vm, session }, raw: payload };
  try {
    return await (await daemon()).call("sessionSend", req);
  } catch (e) {
    // Refused or no socket: the request never left, so restarting the daemon and sending once
    // more cannot double it. A reset mid-request may have been delivered: never retried.
    if (!(e instanceof BangerError && /not reachable.*(ECONNREFUSED|ENOENT)/.test(e.message))) throw e;
    return await (await daemon(true)).call("sessionSend", req);
  }
}

const send = defineCommand({
  meta: { name: "send", description: "Write bytes to a session's stdin pipe: --file F, or stdin (-); --eof then closes it (the command reads EOF)" },
  args: {
    ...sArgs,
    file: { type: "string", description: "Read the payload from this file (- for stdin, the default)" },
    eof: { type: "boolean", description: "After the payload, close the session's stdin so its command reads EOF (with a terminal on stdin and no --file: nothing is sent first). Later sends still reach it, each ending in EOF" },
    ...jsonArg,
  },
  async run({ args }) {
    // --eof alone at a terminal: only the close (reading the terminal would wait for a payload nobody types)
    const payload = args.eof && args.file === undefined && process.stdin.isTTY ? new Uint8Array(0) : await readPayload(args.file);
    const r = payload.length || !args.eof ? await sendBytes(args.vm, args.session, payload) : null;
    if (!args.eof) return out({ bytesWritten: r!.bytesWritten, session: r!.session }, !!args.json, () => `sent ${r!.bytesWritten} bytes`);
    const c = await (await daemon()).call("sessionCloseStdin", { params: { vm: args.vm, session: args.session } });
    if (!c.closed) throw new BangerError("E_STATE", `session ${args.session}: its stdin was not closed: its runner is gone`);
    const sent = r?.bytesWritten ?? 0;
    out({ bytesWritten: sent, closed: true, session: c.session }, !!args.json, () => (sent ? `sent ${sent} bytes; stdin closed` : "stdin closed"));
  },
});

/** Where a log print stopped: the offset to continue from, and (a follow the session's end ended) the session as it ended. */
interface PumpEnd {
  offset: number;
  session?: GuestSession;
}

/**
 * Print a session log from an offset; with follow, until the session ends or
 * we are interrupted. A daemon that dies mid-stream (even kill -9) is
 * restarted and the stream resumes from the last byte offset printed, so
 * nothing is lost or printed twice.
 */
async function pump(
  vm: string,
  session: string,
  opts: { stream: "stdout" | "stderr"; offset: number; follow: boolean; signal?: AbortSignal; onChunk?: (data: Buffer, nextOffset: number) => void },
): Promise<PumpEnd> {
  let at = opts.offset;
  const fd = !opts.onChunk && opts.stream === "stderr" ? 2 : 1;
  // as streamCall's: the next chunk is read once this one is written, and a full pipe does not block a Ctrl-C
  const write = opts.onChunk ?? ((data: Buffer) => writeStreamed(fd, data));
  // a follow of a quiet session ends with its reader (`| grep -m1 ready`), as at a write's EPIPE
  const stopWatch = opts.follow ? onReaderGone(fd, () => process.exit(141)) : null;
  try {
    for (let attempt = 0; ; attempt++) {
      const c = await daemon(attempt > 0);
      const query = { stream: opts.stream, offset: at, follow: opts.follow };
      try {
        const ev = await c.stream("sessionLogs", { params: { vm, session }, query }, (e) => {
          if (e.type === "stdout" || e.type === "stderr") {
            if (e.offset !== undefined) at = e.offset;
            return write(Buffer.from(e.data, "base64"), at);
          }
        }, opts.signal);
        return { offset: ev.data.offset, session: ev.data.session };
      } catch (e) {
        if (opts.signal?.aborted) return { offset: at };
        const daemonGone = !(e instanceof BangerError) || e.code === "E_DAEMON";
        if (!opts.follow || !daemonGone || attempt >= 20) throw e;
        await Bun.sleep(200);
      }
    }
  } finally {
    stopWatch?.();
  }
}

/** One `--json` record of log bytes: `data` is their text, or (bytes that are not UTF-8) base64 with `encoding: "base64"`. */
function _logRecord(data: Buffer, offset: number): { data: string; encoding?: "base64"; offset: number; nextOffset: number } {
  const text = utf8OrNull(data);
  const nextOffset = offset + data.length;
  return text !== null ? { data: text, offset, nextOffset } : { data: data.toString("base64"), encoding: "base64", offset, nextOffset };
}

const logs = defineCommand({
  meta: {
    name: "logs",
    description: "Print a session's stdout (or --stderr) from a byte offset; -f follows. --json: {data, offset, nextOffset} (with -f: one such line per chunk; bytes that are not UTF-8: data in base64 with encoding: base64)",
  },
  args: {
    ...sArgs,
    follow: { type: "boolean", alias: "f", description: "Keep printing until the session ends" },
    stderr: { type: "boolean", description: "The stderr log instead of stdout" },
    offset: { type: "string", description: "Start at this byte offset (default 0)" },
    ...jsonArg,
  },
  async run({ args }) {
    const offset = intArg(args.offset, "--offset") ?? 0;
    const stream = args.stderr ? "stderr" : "stdout";
    if (!args.json) {
      await pump(args.vm, args.session, { stream, offset, follow: !!args.follow });
      return;
    }
    // JSON: text plus byte offsets, so a script can resume exactly where it stopped
    const chunks: Buffer[] = [];
    let carry: Buffer = Buffer.alloc(0);
    const { offset: next } = await pump(args.vm, args.session, {
      stream,
      offset,
      follow: !!args.follow,
      onChunk: (data, nextOffset) => {
        if (!args.follow) return void chunks.push(data);
        // a character cut between two chunks waits for its rest: no line holds half of one
        const all = carry.length ? Buffer.concat([carry, data]) : data;
        const n = completeUtf8Prefix(all);
        carry = all.subarray(n);
        if (n > 0) writeChunk(1, JSON.stringify(_logRecord(all.subarray(0, n), nextOffset - all.length)) + "\n");
      },
    });
    if (carry.length) writeChunk(1, JSON.stringify(_logRecord(carry, next - carry.length)) + "\n");
    if (!args.follow) out(_logRecord(Buffer.concat(chunks), offset), true, () => "");
  },
});

// an ended session that recorded no exit code (it failed: its VM stopped, its process vanished): 255, as ssh exits when the remote status is unknown
const _NO_EXIT_CODE = 255;

/** An attach's exit code once its session ended: the session's own (128+n when signal n ended it, as the runner records). */
function _attachExitCode(s: GuestSession): number {
  return s.exitCode ?? _NO_EXIT_CODE;
}

/** How an attached session ended, in words: "exited (exit 7)", "stopped (exit 143)", "failed: its vm stopped". */
function _howEnded(s: GuestSession): string {
  const code = s.exitCode !== null ? ` (exit ${s.exitCode})` : "";
  if (s.status !== "failed") return `${s.status}${code}`;
  const why = s.launchStage ? `at stage ${s.launchStage}: ${s.launchMessage}` : s.launchMessage;
  return why ? `failed${code}: ${why}` : `failed${code}`;
}

/** Is the session over? A send it refused is then its end showing, which the attach's output pump reports. */
async function _sessionOver(vm: string, session: string): Promise<boolean> {
  const s = await (await daemon()).call("sessionShow", { params: { vm, session } });
  return s.status !== "starting" && s.status !== "running";
}

/** An attach's last line: to stderr (raw, as the terminal is), or with --json one record on stdout. */
function _attachSays(json: boolean, human: string, record: Record<string, unknown>): void {
  if (json) writeChunk(1, JSON.stringify(record) + "\n");
  else log().withTag("raw").info(isTTY() ? `\r\n${human}\r\n` : `${human}\n`);
}

const attach = defineCommand({
  meta: {
    name: "attach",
    description: `Live stdin + stdout/stderr of a session until it ends; exits with its exit code (${_NO_EXIT_CODE} if it failed without one). Ctrl-] detaches (exit 0, the session keeps running). --json: a last line {nextOffset, status, exitCode}`,
  },
  args: { ...sArgs, offset: { type: "string", description: "Replay stdout from this byte offset (default 0)" }, ...jsonArg },
  async run({ args }) {
    const stop = new AbortController();
    const offset = intArg(args.offset, "--offset") ?? 0;
    const outP = pump(args.vm, args.session, { stream: "stdout", offset, follow: true, signal: stop.signal });
    const errP = pump(args.vm, args.session, { stream: "stderr", offset: 0, follow: true, signal: stop.signal });
    const stdin = process.stdin;
    const tty = !!stdin.isTTY;
    if (tty) stdin.setRawMode(true);
    let over = false;
    let sending = Promise.resolve();
    const refused = async (e: unknown) => {
      // The daemon died mid-send: that input may or may not have arrived. Say so, keep attaching.
      if (e instanceof BangerError && e.code === "E_DAEMON") return log().warn(`${e.message}; the last input may not have been delivered`);
      // a session that ended refuses input: its end is reported with its last output, not as this send's error
      if (over || (await _sessionOver(args.vm, args.session).catch(() => false))) return;
      fail(e, !!args.json);
    };
    const onData = (buf: Buffer) => {
      const cut = buf.indexOf(DETACH_KEY);
      const payload = cut >= 0 ? buf.subarray(0, cut) : buf;
      if (payload.length) sending = sending.then(() => sendBytes(args.vm, args.session, payload).then(() => {}, refused));
      if (cut >= 0) stop.abort();
    };
    stdin.on("data", onData);
    stdin.on("end", () => {}); // stdin closing does not end the attach; the session's stdin stays open
    let out: PumpEnd;
    try {
      out = await outP;
      // ended, not detached: stderr's follow ends with the session too, once it printed all of it
      if (out.session) over = true;
      else stop.abort();
      await errP.catch(() => {});
      // input still on its way to an ended session cannot be read: it would only wait out the send's timeout
      if (!over) await sending;
    } finally {
      // the follow failed too (its VM stopped): the terminal is the user's again either way
      stop.abort();
      stdin.off("data", onData);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
    }
    const s = out.session;
    const next = out.offset;
    const reattach = `banger session attach ${args.vm} ${args.session} --offset ${next}`;
    if (!s) {
      _attachSays(!!args.json, `detached at stdout offset ${next}; reattach with: ${reattach}`, { nextOffset: next });
      process.exit(0);
    }
    if (s.status === "starting" || s.status === "running") {
      // the daemon could not learn the end from the guest: the session may run on
      _attachSays(!!args.json, `the follow of session ${s.name} ended while it still shows ${s.status}; reattach with: ${reattach}`, { nextOffset: next, status: s.status, exitCode: null });
      process.exit(1);
    }
    const why = s.status === "failed" && s.launchMessage ? { why: s.launchMessage } : {};
    _attachSays(!!args.json, `session ${s.name} ${_howEnded(s)}`, { nextOffset: next, status: s.status, exitCode: s.exitCode, ...why });
    process.exit(_attachExitCode(s));
  },
});

function ender(action: "stop" | "kill") {
  return defineCommand({
    meta: { name: action, description: action === "stop" ? "TERM the session, KILL after the grace period; records the exit" : "KILL the session now" },
    args: { ...sArgs, ...(action === "stop" ? { grace: { type: "string", description: "Seconds before KILL (default 5)" } } : {}), ...jsonArg },
    async run({ args }) {
      const g = intArg((args as { grace?: string }).grace, "--grace");
      const s = await (await daemon()).call(action === "stop" ? "sessionStop" : "sessionKill", { params: { vm: args.vm, session: args.session }, body: action === "stop" && g !== undefined ? { graceMs: g * 1000 } : {} });
      out(s, !!args.json, () => `session ${s.name} ${s.status}${s.exitCode !== null ? ` (exit ${s.exitCode})` : ""}`);
    },
  });
}

const rm = defineCommand({
  meta: { name: "rm", description: "Remove a session and its guest state (--force if it still runs)" },
  args: { ...sArgs, force: { type: "boolean", description: "Kill it first if it still runs" }, ...jsonArg },
  async run({ args }) {
    const r = await (await daemon()).call("sessionRemove", { params: { vm: args.vm, session: args.session }, query: { force: !!args.force } });
    out(r, !!args.json, () => `removed session ${r.deleted}`);
  },
});

export default defineCommand({
  meta: { name: "session", description: "Long-lived guest processes: start, send, logs, attach, stop" },
  subCommands: { start, list, show, send, logs, attach, stop: ender("stop"), kill: ender("kill"), rm },
});
