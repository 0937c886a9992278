import { writeLine } from "./line.ts";

/**
 * Terminal checks and plain writes to stdout/stderr for the CLI's hot path.
 * The first touch of process.stdout or process.stderr builds Node stream
 * objects, which cost a compiled `banger vm list` about 15–20 ms of its
 * start-up (more than the command's own work); loading node:fs costs about
 * 1 ms more, so it is required only when a check or write needs it.
 * console.log/console.error write synchronously and load nothing.
 */
const _fs = () => require("node:fs") as typeof import("node:fs");

const _tty = new Map<number, boolean>();

let _onOutputError: ((e: unknown) => void) | null = null;
const _armed = new Set<number>();

/** What an error on stdout's or stderr's stream does (the CLI: exit 141 on EPIPE); set it before any stream write. */
export function onOutputError(fn: (e: unknown) => void): void {
  _onOutputError = fn;
}

/**
 * process.stdout or process.stderr, built only when a write needs the stream (see above: building them costs
 * start-up), with onOutputError's handler on it for errors that come after the write call (buffered bytes).
 */
export function outStream(fd: 1 | 2): NodeJS.WriteStream {
  const s = fd === 1 ? process.stdout : process.stderr;
  if (!_armed.has(fd)) {
    _armed.add(fd);
    s.on("error", (e) => {
      if (!_onOutputError) throw e;
      _onOutputError(e);
    });
  }
  return s;
}

/**
 * Is fd a terminal? A file or pipe is ruled out by fstat alone. A character
 * device is a terminal when /proc names a tty or pty (so /dev/null is not);
 * loading node:tty for isatty costs ~5 ms, so it is only the fallback
 * when /proc cannot tell.
 */
export function fdIsTTY(fd: 1 | 2): boolean {
  let v = _tty.get(fd);
  if (v === undefined) {
    try {
      v = _fs().fstatSync(fd).isCharacterDevice() && _charDeviceIsTTY(fd);
    } catch {
      v = false;
    }
    _tty.set(fd, v);
  }
  return v;
}

function _charDeviceIsTTY(fd: number): boolean {
  let target: string;
  try {
    target = _fs().readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return (require("node:tty") as typeof import("node:tty")).isatty(fd);
  }
  return /^\/dev\/(pts\/|tty|console$)/.test(target);
}

/**
 * Write all of data to fd synchronously, in order with other writeOut calls.
 */
export function writeOut(fd: 1 | 2, data: string | Uint8Array): void {
  if (typeof data === "string" && data.endsWith("\n")) {
    // a whole line (the usual case): the console writes it synchronously, all of it, without node:fs
    writeLine(fd, data.slice(0, -1));
    return;
  }
  writeAll(fd, data);
}

const _nonBlocking = new Map<1 | 2, number | null>();

/**
 * fd reopened non-blocking when it is a pipe (its own open file description, through /proc: the pipe's other
 * holders keep their blocking one), else null.
 */
function _nonBlockingFd(fd: 1 | 2): number | null {
  let v = _nonBlocking.get(fd);
  if (v === undefined) {
    v = null;
    try {
      const fs = _fs();
      if (_isPipe(fd)) v = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    } catch {
      v = null;
    }
    _nonBlocking.set(fd, v);
  }
  return v;
}

const _pipe = new Map<1 | 2, boolean>();

/** Is fd a pipe (fstat, once per fd)? */
function _isPipe(fd: 1 | 2): boolean {
  let v = _pipe.get(fd);
  if (v === undefined) {
    try {
      v = _fs().fstatSync(fd).isFIFO();
    } catch {
      v = false;
    }
    _pipe.set(fd, v);
  }
  return v;
}

/** How often writePaced tries a full pipe again. */
const _PACED_RETRY_MS = 2;

/**
 * All of data to fd, in order with the other writes here. A pipe that is full is waited for without blocking
 * the event loop (a Ctrl-C handler still runs): the promise settles once all is written, or rejects with the
 * write's error (EPIPE: the reader went away). A file, a terminal or a socket gets writeAll, at once.
 */
export function writePaced(fd: 1 | 2, data: Uint8Array): Promise<void> | undefined {
  const nb = _nonBlockingFd(fd);
  if (nb === null) return void writeAll(fd, data);
  const { writeSync } = _fs();
  let off = 0;
  const more = (): boolean => {
    while (off < data.length) {
      try {
        off += writeSync(nb, data, off);
      } catch (e) {
        if ((e as { code?: string }).code !== "EAGAIN") throw e;
        return true;
      }
    }
    return false;
  };
  if (!more()) return undefined;
  return new Promise<void>((resolve, reject) => {
    const again = () => {
      try {
        if (more()) setTimeout(again, _PACED_RETRY_MS);
        else resolve();
      } catch (e) {
        reject(e);
      }
    };
    setTimeout(again, _PACED_RETRY_MS);
  });
}

/** How long writeAll waits before it tries a full non-blocking pipe again. */
const _FULL_PIPE_RETRY_MS = 1;

/**
 * All of data to fd now, synchronously; errors (EPIPE: the reader went away) thrown. A full pipe blocks us, as
 * it blocks any writer: a non-blocking one (EAGAIN) is tried again every millisecond until it takes the rest.
 * Never through the Node stream, whose buffer grows without bound behind a slow reader (a `vm exec … | slow`
 * grew the CLI by ~45 MB/s) and whose last bytes process.exit drops (a `vm exec … | wc -c` lost 32-280 KiB
 * of 200 MiB one run in three).
 */
export function writeAll(fd: 1 | 2, data: string | Uint8Array): void {
  const { writeSync } = _fs();
  const buf = typeof data === "string" ? Buffer.from(data) : data;
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as { code?: string }).code !== "EAGAIN") throw e;
      Bun.sleepSync(_FULL_PIPE_RETRY_MS);
    }
  }
}

/** poll(2)'s POLLERR: on a pipe's write end, set once no reader is left. */
const _POLLERR = 0x008;

/**
 * Calls onGone once fd's reader has gone, when fd is a pipe (anything else: never), looked at every `everyMs`
 * from `afterMs` on (a command done sooner loads nothing for this). A follow that writes nothing for a while
 * (`vm logs box -f | grep -m1 login:`) would otherwise learn it only at its next write, which may never come.
 * As GNU tail -f does: poll(2) asking for no event reports POLLERR on a pipe with no reader, by libc's poll
 * through bun:ffi. Returns the stop; its timers keep no process alive.
 */
export function onReaderGone(fd: 1 | 2, onGone: () => void, o: { afterMs?: number; everyMs?: number } = {}): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (!_isPipe(fd)) return () => {};
  const start = async () => {
    const poll = await _pollFd();
    if (!poll || stopped) return;
    const look = () => {
      if (stopped) return;
      if (poll(fd) & _POLLERR) {
        stopped = true;
        onGone();
        return;
      }
      timer = setTimeout(look, o.everyMs ?? 250);
      timer.unref();
    };
    look();
  };
  // start's one await (_pollFd) never rejects: a libc without poll is null
  timer = setTimeout(() => void start().catch(() => {}), o.afterMs ?? 1000);
  timer.unref();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

let _poll: Promise<((fd: number) => number) | null> | undefined;

/** One fd's revents from poll(2) with no event asked and no wait; null where libc's poll cannot be called. */
function _pollFd(): Promise<((fd: number) => number) | null> {
  _poll ??= import("bun:ffi")
    .then(({ dlopen, FFIType, ptr }) => {
      const libc = dlopen("libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
      // struct pollfd { int fd; short events; short revents; }
      const pfd = new DataView(new ArrayBuffer(8));
      const at = ptr(pfd);
      return (fd: number) => {
        pfd.setInt32(0, fd, true);
        pfd.setInt16(4, 0, true);
        pfd.setInt16(6, 0, true);
        return libc.symbols.poll(at, 1n, 0) > 0 ? pfd.getInt16(6, true) : 0;
      };
    })
    .catch(() => null);
  return _poll;
}
