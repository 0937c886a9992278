/**
 * Guest-side shell for sessions, as pure functions of their inputs. Every
 * value is quoted with shellQuote; scripts use real newlines, never `\n`.
 *
 * Guest state dir layout (<root>/<id>/):
 *   stdin.pipe   FIFO the process reads (stdin mode "pipe")
 *   stdout.log   stderr.log
 *   pid          "<pid> <starttime>" of the command, written atomically
 *   exit_code    the command's exit status (128+n on signal n), written atomically
 *   run.sh       the runner that holds the FIFO writer and records the exit
 *   runner.log   the runner's own output (debugging)
 */
import type { GuestSession } from "../core/model.ts";
import { shellJoin, shellQuote } from "./quote.ts";

export const BACKEND_SSH = "ssh" as const;

/** Default root of the per-session guest state dirs. */
export const DEFAULT_STATE_ROOT = "/var/lib/banger/sessions";

/** Seconds a send may block on a full or unread stdin pipe before it fails. */
export const SEND_TIMEOUT_SECONDS = 10;

/** Exit status of a send script whose write timed out (from `timeout`). */
export const SEND_TIMEOUT_EXIT = 124;
/** Exit status of a send script that found no pipe to write to. */
export const SEND_NO_PIPE_EXIT = 3;
/** Exit code of a send whose upload arrived short (the daemon died mid-upload): nothing reached the session. */
export const SEND_SHORT_EXIT = 5;

// A daemon killed mid-upload closes the channel, which reads as EOF: without
// the length check the guest would write the first half of a payload into the FIFO.
function _shortCheck(have: string, expectedBytes: number | undefined, upload: boolean): string {
  if (expectedBytes === undefined) return "";
  const rm = upload ? ' rm -f "$UPLOAD";' : "";
  return `[ "${have}" -eq ${Math.floor(expectedBytes)} ] || { echo "upload arrived short: ${have} of ${Math.floor(expectedBytes)} bytes" >&2;${rm} exit ${SEND_SHORT_EXIT}; }
`;
}

export function StateDir(id: string, root: string = DEFAULT_STATE_ROOT): string {
  return `${root.replace(/\/+$/, "")}/${id}`;
}
export function StdinPipePath(id: string, root?: string): string {
  return `${StateDir(id, root)}/stdin.pipe`;
}
export function StdoutLogPath(id: string, root?: string): string {
  return `${StateDir(id, root)}/stdout.log`;
}
export function StderrLogPath(id: string, root?: string): string {
  return `${StateDir(id, root)}/stderr.log`;
}
export function ExitCodePath(id: string, root?: string): string {
  return `${StateDir(id, root)}/exit_code`;
}
export function PIDPath(id: string, root?: string): string {
  return `${StateDir(id, root)}/pid`;
}

/** Paths of one session's guest files, from its recorded state dir. */
export function sessionPaths(stateDir: string) {
  return {
    dir: stateDir,
    pipe: `${stateDir}/stdin.pipe`,
    stdout: `${stateDir}/stdout.log`,
    stderr: `${stateDir}/stderr.log`,
    pid: `${stateDir}/pid`,
    exitCode: `${stateDir}/exit_code`,
    runner: `${stateDir}/run.sh`,
    runnerLog: `${stateDir}/runner.log`,
  };
}

/** Fails (exit 1, "missing cwd: DIR" on stderr) when DIR is not a directory. */
export function CWDPreflightScript(dir: string): string {
  return `DIR=${shellQuote(dir)}
if [ ! -d "$DIR" ]; then
  echo "missing cwd: $DIR" >&2
  exit 1
fi
`;
}

/** Fails (exit 1, one "missing command: X" line per missing one) unless every command resolves. */
export function CommandPreflightScript(commands: string[], cwd?: string): string {
  const lines = [
    `check_command() {`,
    `  if ! command -v "$1" >/dev/null 2>&1; then`,
    `    echo "missing command: $1" >&2`,
    `    missing=1`,
    `  fi`,
    `}`,
    `missing=0`,
  ];
  // Relative paths such as ./agent resolve against the session's cwd.
  if (cwd) lines.push(`cd ${shellQuote(cwd)} || exit 1`);
  for (const c of commands) lines.push(`check_command ${shellQuote(c)}`);
  lines.push(`exit "$missing"`, "");
  return lines.join("\n");
}

/**
 * Shell function `_alive`: reads the pid file into PID/START and succeeds
 * only when that exact process (same /proc starttime, not a zombie) lives.
 */
function _aliveFn(pidFile: string): string {
  return `_alive() {
  [ -s ${pidFile} ] || return 1
  read -r PID START < ${pidFile} || return 1
  STAT=$(cat "/proc/$PID/stat" 2>/dev/null) || return 1
  REST=\${STAT##*) }
  set -- $REST
  [ "$1" != Z ] && [ "\${20}" = "$START" ]
}`;
}

/** The runner: holds the FIFO writer, starts the command in its own session, records pid and exit. */
export function RunnerScript(session: Pick<GuestSession, "guestStateDir" | "command" | "args" | "cwd" | "stdinMode">): string {
  const p = sessionPaths(session.guestStateDir);
  const q = {
    dir: shellQuote(p.dir),
    pipe: shellQuote(p.pipe),
    stdout: shellQuote(p.stdout),
    stderr: shellQuote(p.stderr),
    pid: shellQuote(p.pid),
    exitCode: shellQuote(p.exitCode),
  };
  const lines = [`#!/bin/bash`, `# banger session runner`];
  const record = (code: string) => [
    `echo ${code} > ${shellQuote(p.exitCode + ".tmp")}`,
    `mv -f ${shellQuote(p.exitCode + ".tmp")} ${q.exitCode}`,
  ];
  if (session.cwd) {
    lines.push(`cd ${shellQuote(session.cwd)} || {`, ...record("127").map((l) => "  " + l), `  exit 0`, `}`);
  }
  let stdin = "/dev/null";
  if (session.stdinMode === "pipe") {
    // Hold the FIFO open read-write: the command never sees EOF between sends,
    // and opening it for reading below does not block.
    lines.push(`exec 3<>${q.pipe}`);
    stdin = q.pipe;
  }
  lines.push(
    // setsid: the command leads its own process group, so stop can signal all of it.
    `setsid ${shellJoin([session.command, ...session.args])} < ${stdin} >> ${q.stdout} 2>> ${q.stderr} 3>&- &`,
    `CHILD=$!`,
    `STAT=$(cat "/proc/$CHILD/stat")`,
    `REST=\${STAT##*) }`,
    `set -- $REST`,
    `echo "$CHILD \${20}" > ${shellQuote(p.pid + ".tmp")}`,
    `mv -f ${shellQuote(p.pid + ".tmp")} ${q.pid}`,
    `wait "$CHILD"`,
    `CODE=$?`,
    ...record(`"$CODE"`),
    "",
  );
  return lines.join("\n");
}

/**
 * Creates the state dir, FIFO and logs, starts the runner with `nohup bash`
 * under setsid (so it outlives the SSH connection), waits for it to record
 * the pid, and prints "<pid> <starttime>".
 */
export function LaunchScript(session: Pick<GuestSession, "guestStateDir" | "command" | "args" | "cwd" | "stdinMode">): string {
  const p = sessionPaths(session.guestStateDir);
  const lines = [
    `set -e`,
    `DIR=${shellQuote(p.dir)}`,
    `mkdir -p "$DIR"`,
    `rm -f "$DIR/pid" "$DIR/exit_code" "$DIR/stdin.pipe"`,
    `: > "$DIR/stdout.log"`,
    `: > "$DIR/stderr.log"`,
  ];
  if (session.stdinMode === "pipe") lines.push(`mkfifo -m 600 "$DIR/stdin.pipe"`);
  lines.push(
    `printf '%s' ${shellQuote(RunnerScript(session))} > "$DIR/run.sh"`,
    `cd /`,
    `setsid nohup bash "$DIR/run.sh" < /dev/null > "$DIR/runner.log" 2>&1 &`,
    `i=0`,
    `while [ ! -s "$DIR/pid" ]; do`,
    `  i=$((i + 1))`,
    `  if [ "$i" -gt 200 ]; then`,
    `    echo "session runner did not start; runner.log:" >&2`,
    `    cat "$DIR/runner.log" >&2`,
    `    exit 1`,
    `  fi`,
    `  sleep 0.05`,
    `done`,
    `cat "$DIR/pid"`,
    "",
  );
  return lines.join("\n");
}

/**
 * One round trip per send: the payload arrives on this script's stdin and is
 * uploaded to `uploadPath` first (so a connection dropped mid-transfer never
 * leaves half a message in the FIFO), then copied into the FIFO and removed.
 * dd opens the FIFO itself, inside `timeout`, so a pipe with no reader fails
 * after `timeoutSeconds` instead of hanging. Run it with exec (`sh -c`), not
 * runScript: stdin carries the payload.
 */
export function SendScript(uploadPath: string, pipePath: string, timeoutSeconds: number = SEND_TIMEOUT_SECONDS, expectedBytes?: number): string {
  return `UPLOAD=${shellQuote(uploadPath)}
PIPE=${shellQuote(pipePath)}
if [ ! -p "$PIPE" ]; then
  echo "no stdin pipe at $PIPE" >&2
  exit ${SEND_NO_PIPE_EXIT}
fi
umask 077
cat > "$UPLOAD" || { rc=$?; rm -f "$UPLOAD"; exit "$rc"; }
${_shortCheck('$(stat -c %s "$UPLOAD")', expectedBytes, true)}timeout ${Math.max(1, Math.floor(timeoutSeconds))} dd if="$UPLOAD" of="$PIPE" bs=65536 conv=notrunc status=none
rc=$?
rm -f "$UPLOAD"
if [ "$rc" -eq ${SEND_TIMEOUT_EXIT} ]; then
  echo "timed out after ${timeoutSeconds}s writing to $PIPE: the session is not reading its stdin" >&2
fi
exit "$rc"
`;
}

/** Payloads up to this size without NUL bytes take the builtin-only send (bash reads stdin a byte per syscall). */
export const FAST_SEND_MAX_BYTES = 16384;

/** Can this payload take FastSendScript? (bash variables cannot hold NUL.) */
export function fastSendable(payload: Uint8Array): boolean {
  return payload.length <= FAST_SEND_MAX_BYTES && !payload.includes(0);
}

/**
 * SendScript's protocol (upload to `uploadPath`, write into the FIFO, rm -f)
 * with bash builtins instead of cat/timeout/dd: under TCG every guest process
 * costs ~40-70 ms, a fork ~8 ms. The timeout is a coproc watchdog whose
 * `read -t` expires and signals us; SIGALRM interrupts an open() blocked on a
 * FIFO without a reader or a write() blocked on a full pipe. Run with exec
 * (payload on stdin, NUL-free, see fastSendable) under bash.
 */
export function FastSendScript(uploadPath: string, pipePath: string, timeoutSeconds: number = SEND_TIMEOUT_SECONDS, expectedBytes?: number): string {
  const t = Math.max(1, Math.floor(timeoutSeconds));
  return `LC_ALL=C
UPLOAD=${shellQuote(uploadPath)}
PIPE=${shellQuote(pipePath)}
if [ ! -p "$PIPE" ]; then
  echo "no stdin pipe at $PIPE" >&2
  exit ${SEND_NO_PIPE_EXIT}
fi
umask 077
IFS= read -r -d '' DATA
${_shortCheck("${#DATA}", expectedBytes, false)}printf '%s' "$DATA" > "$UPLOAD" || { rc=$?; rm -f "$UPLOAD"; exit "$rc"; }
trap 'rm -f "$UPLOAD"; echo "timed out after ${t}s writing to $PIPE: the session is not reading its stdin" >&2; exit ${SEND_TIMEOUT_EXIT}' ALRM
coproc WATCHDOG { read -t ${t}; kill -ALRM "$$"; }
printf '%s' "$DATA" > "$PIPE"
rc=$?
kill "$WATCHDOG_PID" 2>/dev/null
rm -f "$UPLOAD"
exit "$rc"
`;
}

/** Streams our stdin into the session's FIFO (live attach input). */
export function AttachInputCommand(id: string, root?: string): string {
  return AttachInputCommandForPipe(StdinPipePath(id, root));
}
export function AttachInputCommandForPipe(pipePath: string): string {
  return `exec cat > ${shellQuote(pipePath)}`;
}

/**
 * Follows a log from a byte offset (0-based). With a pid, ends once that
 * process is gone; in any case ends when our stdin closes, so a dropped
 * SSH channel never leaves a tail behind.
 */
export function AttachTailCommand(path: string, offset: number = 0, pid: number = 0): string {
  const start = Math.max(0, Math.floor(offset)) + 1;
  const pidArg = pid > 0 ? ` --pid=${Math.floor(pid)}` : "";
  return `tail -c +${start} -F -s 0.2${pidArg} ${shellQuote(path)} 2>/dev/null &
T=$!
( cat > /dev/null; kill "$T" 2>/dev/null ) <&0 > /dev/null 2>&1 &
wait "$T"
`;
}

/** Prints at most `limit` bytes of a log from a byte offset (0-based); nothing when the file is missing. */
export function LogReadCommand(path: string, offset: number, limit: number): string {
  const start = Math.max(0, Math.floor(offset)) + 1;
  return `tail -c +${start} ${shellQuote(path)} 2>/dev/null | head -c ${Math.max(0, Math.floor(limit))}`;
}

/**
 * One line: "running <pid> <starttime>", "exited <code>", "gone" (no
 * process and no exit code: killed with its runner, or the guest rebooted),
 * or "missing" (never started).
 */
export function StatusScript(stateDir: string): string {
  const p = sessionPaths(stateDir);
  return `${_aliveFn(shellQuote(p.pid))}
EXIT=${shellQuote(p.exitCode)}
_report() {
  if [ -s "$EXIT" ]; then
    echo "exited $(cat "$EXIT") $(stat -c %Y "$EXIT")"
    return 0
  fi
  if [ ! -s ${shellQuote(p.pid)} ]; then
    echo missing
    return 0
  fi
  if _alive; then
    echo "running $PID $START"
    return 0
  fi
  return 1
}
# A process that just ended needs a moment for its runner to record the exit.
i=0
while [ "$i" -lt 20 ]; do
  _report && exit 0
  sleep 0.1
  i=$((i + 1))
done
echo gone
`;
}

/** TERM the session's process group, KILL it after the grace period, then report like StatusScript. */
export function StopScript(stateDir: string, graceMs: number): string {
  const p = sessionPaths(stateDir);
  const tenths = Math.max(0, Math.ceil(graceMs / 100));
  return `${_aliveFn(shellQuote(p.pid))}
if _alive; then
  if [ ${tenths} -gt 0 ]; then
    kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null
    i=0
    while [ "$i" -lt ${tenths} ] && _alive; do
      sleep 0.1
      i=$((i + 1))
    done
  fi
  if _alive; then
    kill -KILL -- "-$PID" 2>/dev/null || kill -KILL "$PID" 2>/dev/null
  fi
fi
${StatusScript(stateDir)}`;
}

/** Removes a session's guest state dir. */
export function RemoveScript(stateDir: string): string {
  return `rm -rf -- ${shellQuote(stateDir)}\n`;
}
