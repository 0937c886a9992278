/**
 * Guest-side shell for sessions, as pure functions of their inputs. Each
 * script is a `.sh` file in ./scripts/, given its values by renderScript
 * (quoted `NAME='value'` lines before it); scripts use real newlines, never `\n`.
 *
 * Guest state dir layout (<root>/<id>/):
 *   stdin.pipe   FIFO the process reads (stdin mode "pipe")
 *   stdout.log   stderr.log
 *   pid          "<pid> <starttime>" of the command, written atomically
 *   exit_code    the command's exit status (128+n on signal n), written atomically
 *   run.sh       the runner that holds the FIFO writer and records the exit
 *   runner.pid   the runner's "<pid> <starttime>" (SIGUSR1 closes the stdin pipe's writer)
 *   runner.log   the runner's own output (debugging)
 *   label        what the starter kept with the session (StartFollowScript's label), 0600
 */
import type { GuestSession } from "../shared/model.ts";
import { renderScript, shellQuote } from "../shared/quote.ts";
import { TIMEOUT_EXIT, type ExecOptions } from "../shared/exec-options.ts";
import { secondsArg } from "./exec.ts";
import TIMEOUT_SH from "./scripts/timeout.sh" with { type: "text" };
import RUN_AS_SH from "./scripts/run-as.sh" with { type: "text" };
import GETENT_SH from "./scripts/getent.sh" with { type: "text" };
import USER_PREFLIGHT_SH from "./scripts/user-preflight.sh" with { type: "text" };
import ALIVE_SH from "./scripts/alive.sh" with { type: "text" };
import ATTACH_INPUT_SH from "./scripts/attach-input.sh" with { type: "text" };
import ATTACH_TAIL_SH from "./scripts/attach-tail.sh" with { type: "text" };
import COMMAND_PREFLIGHT_SH from "./scripts/command-preflight.sh" with { type: "text" };
import CWD_PREFLIGHT_SH from "./scripts/cwd-preflight.sh" with { type: "text" };
import FAST_SEND_SH from "./scripts/fast-send.sh" with { type: "text" };
import LAUNCH_SH from "./scripts/launch.sh" with { type: "text" };
import LOG_READ_SH from "./scripts/log-read.sh" with { type: "text" };
import REMOVE_SH from "./scripts/remove.sh" with { type: "text" };
import RUNNER_SH from "./scripts/runner.sh" with { type: "text" };
import SEND_SH from "./scripts/send.sh" with { type: "text" };
import STATUS_SH from "./scripts/status.sh" with { type: "text" };
import STATUS_REPORT_SH from "./scripts/status-report.sh" with { type: "text" };
import STATUSES_SH from "./scripts/statuses.sh" with { type: "text" };
import STOP_SH from "./scripts/stop.sh" with { type: "text" };
import START_FOLLOW_SH from "./scripts/start-follow.sh" with { type: "text" };
import SIGNAL_SH from "./scripts/signal.sh" with { type: "text" };
import CLOSE_STDIN_SH from "./scripts/close-stdin.sh" with { type: "text" };
import RESIZE_SH from "./scripts/resize.sh" with { type: "text" };
import LABEL_READ_SH from "./scripts/label-read.sh" with { type: "text" };
import LOG_SIZES_SH from "./scripts/log-sizes.sh" with { type: "text" };

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

/** A session's guest state dir: `<root>/<id>`. */
export function StateDir(id: string, root: string = DEFAULT_STATE_ROOT): string {
  return `${root.replace(/\/+$/, "")}/${id}`;
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

type _SessionSpec = Pick<GuestSession, "guestStateDir" | "command" | "args" | "cwd" | "stdinMode">;

/** Fails (exit 1, "missing cwd: DIR" on stderr) when DIR is not a directory. */
export function CWDPreflightScript(dir: string): string {
  return renderScript(CWD_PREFLIGHT_SH, { DIR: dir });
}

/** Fails (exit 1, one "missing command: X" line per missing one) unless every command resolves; relative ones against `cwd`. */
export function CommandPreflightScript(commands: string[], cwd?: string): string {
  return renderScript(COMMAND_PREFLIGHT_SH, { COMMANDS: commands, CWD: cwd ?? "" });
}

/** Fails (exit 1, "no such user in the guest: X" or "no such group …" on stderr) unless `user` resolves in the guest. */
export function UserPreflightScript(user: string): string {
  return renderScript([GETENT_SH, RUN_AS_SH, USER_PREFLIGHT_SH], { RUN_USER: user, RUN_CWD: "", RUN_ENV: [] });
}

/** A terminal for the command: its size in columns and rows. */
export interface PtySize {
  cols: number;
  rows: number;
}

/** How a session's process is launched beyond its row: env, user, timeout and a pty (not recorded: env may hold secrets). */
export type LaunchOptions = Pick<ExecOptions, "env" | "user" | "timeoutMs"> & {
  pty?: PtySize;
  /** Without a cwd, start in the user's home (as a login does) rather than /. */
  cwdHome?: boolean;
  /** `user` is a default nobody asked for: a guest without that account runs the command as root (E2B's default user). */
  userOptional?: boolean;
};

function _dim(n: number): number {
  return Math.min(65535, Math.max(1, Math.floor(n)));
}

/** Comment and blank lines out of a script file (before values are put in: theirs are kept as they are). */
function _compact(sh: string): string {
  return (
    sh
      .split("\n")
      .filter((l) => !/^\s*(#.*)?$/.test(l))
      .join("\n") + "\n"
  );
}

/** The runner (DIR/run.sh): holds the FIFO writer, starts the command in its own session, records pid and exit. */
function _runnerScript(session: _SessionSpec, o: LaunchOptions, compact = false): string {
  const parts = compact ? [GETENT_SH, RUN_AS_SH, TIMEOUT_SH, RUNNER_SH].map(_compact) : [GETENT_SH, RUN_AS_SH, TIMEOUT_SH, RUNNER_SH];
  // functions first: bash runs the file top to bottom (it is started as `bash run.sh`, no #! needed)
  return renderScript(parts, {
    DIR: session.guestStateDir,
    CMD: [session.command, ...session.args],
    RUN_CWD: session.cwd,
    RUN_USER: o.user ?? "",
    RUN_ENV: o.env ?? [],
    TIMEOUT: o.timeoutMs !== undefined ? secondsArg(o.timeoutMs) : "",
    TIMEOUT_EXIT,
    STDIN_MODE: session.stdinMode,
    RUN_CWD_HOME: o.cwdHome ? "1" : "",
    RUN_USER_OPTIONAL: o.userOptional ? "1" : "",
    PTY_COLS: o.pty ? _dim(o.pty.cols) : "",
    PTY_ROWS: o.pty ? _dim(o.pty.rows) : "",
  });
}

/**
 * Creates the state dir, FIFO and logs, starts the runner with `nohup bash`
 * under setsid (so it outlives the SSH connection), waits for it to record
 * the pid, and prints "<pid> <starttime>".
 */
export function LaunchScript(session: _SessionSpec, o: LaunchOptions = {}): string {
  return renderScript(LAUNCH_SH, { DIR: session.guestStateDir, STDIN_MODE: session.stdinMode, RUNNER: _runnerScript(session, o) });
}

function _sendVars(uploadPath: string, pipePath: string, timeoutSeconds: number, expectedBytes: number | undefined) {
  return {
    UPLOAD: uploadPath,
    PIPE: pipePath,
    TIMEOUT: Math.max(1, Math.floor(timeoutSeconds)),
    EXPECTED: expectedBytes === undefined ? "" : Math.floor(expectedBytes),
    NO_PIPE_EXIT: SEND_NO_PIPE_EXIT,
    SHORT_EXIT: SEND_SHORT_EXIT,
    TIMEOUT_EXIT: SEND_TIMEOUT_EXIT,
  };
}

/**
 * One round trip per send: the payload arrives on this script's stdin and is
 * uploaded to `uploadPath` first (so a connection dropped mid-transfer never
 * leaves half a message in the FIFO), then copied into the FIFO and removed.
 * dd opens the FIFO itself, inside `timeout`, so a pipe with no reader fails
 * after `timeoutSeconds` instead of hanging. With `expectedBytes`, an upload
 * that arrived short exits SEND_SHORT_EXIT and writes nothing. Run it with
 * exec (`sh -c`), not runScript: stdin carries the payload.
 */
export function SendScript(uploadPath: string, pipePath: string, timeoutSeconds: number = SEND_TIMEOUT_SECONDS, expectedBytes?: number): string {
  return renderScript(SEND_SH, _sendVars(uploadPath, pipePath, timeoutSeconds, expectedBytes));
}

// Payloads up to this size without NUL bytes take the builtin-only send (bash reads stdin a byte per syscall).
const FAST_SEND_MAX_BYTES = 16384;

/** Can this payload take FastSendScript? (bash variables cannot hold NUL.) */
export function fastSendable(payload: Uint8Array): boolean {
  return payload.length <= FAST_SEND_MAX_BYTES && !payload.includes(0);
}

/**
 * SendScript's protocol with bash builtins instead of cat/timeout/dd: under
 * TCG every guest process costs ~40-70 ms, a fork ~8 ms (see fast-send.sh).
 * Run with exec (payload on stdin, NUL-free, see fastSendable) under bash.
 */
export function FastSendScript(uploadPath: string, pipePath: string, timeoutSeconds: number = SEND_TIMEOUT_SECONDS, expectedBytes?: number): string {
  return renderScript(FAST_SEND_SH, _sendVars(uploadPath, pipePath, timeoutSeconds, expectedBytes));
}

/** Streams our stdin into the session's FIFO (live attach input). */
export function AttachInputCommandForPipe(pipePath: string): string {
  return renderScript(ATTACH_INPUT_SH, { PIPE: pipePath });
}

/**
 * Follows a log from a byte offset (0-based). With a pid, ends once that
 * process is gone; in any case ends when our stdin closes, so a dropped
 * SSH channel never leaves a tail behind.
 */
export function AttachTailCommand(path: string, offset: number = 0, pid: number = 0): string {
  return renderScript(ATTACH_TAIL_SH, { LOG: path, START: Math.max(0, Math.floor(offset)) + 1, PID: pid > 0 ? Math.floor(pid) : 0 });
}

/** Prints at most `limit` bytes of a log from a byte offset (0-based); nothing when the file is missing. */
export function LogReadCommand(path: string, offset: number, limit: number): string {
  return renderScript(LOG_READ_SH, { LOG: path, START: Math.max(0, Math.floor(offset)) + 1, LIMIT: Math.max(0, Math.floor(limit)) });
}

/**
 * One line: "running <pid> <starttime>", "exited <code> <mtime>", "gone" (no
 * process and no exit code: killed with its runner, or the guest rebooted),
 * or "missing" (never started).
 */
export function StatusScript(stateDir: string): string {
  return renderScript([ALIVE_SH, STATUS_REPORT_SH, STATUS_SH], { DIR: stateDir });
}

/** StatusScript's line for each of several state dirs (at least one), in their order: one round trip for a VM's sessions. */
export function StatusesScript(stateDirs: readonly string[]): string {
  return renderScript([ALIVE_SH, STATUS_REPORT_SH, STATUSES_SH], { DIRS: stateDirs });
}

/** TERM the session's process group, KILL it after the grace period, then report like StatusScript. */
export function StopScript(stateDir: string, graceMs: number): string {
  return renderScript([ALIVE_SH, STOP_SH, STATUS_REPORT_SH, STATUS_SH], { DIR: stateDir, TENTHS: Math.max(0, Math.ceil(graceMs / 100)) });
}

/** Removes a session's guest state dir. */
export function RemoveScript(stateDir: string): string {
  return renderScript(REMOVE_SH, { DIR: stateDir });
}

/**
 * Launch (as LaunchScript) and follow on one channel: see start-follow.sh.
 * Run it with `bootstrap` (it keeps the channel's stdin free: closing it ends
 * the follow, never the process).
 */
export function StartFollowScript(session: _SessionSpec, o: LaunchOptions, mark: string, label = "", cleanup = false): string {
  // compact: the guest's bash reads this a byte at a time (see bootstrapCommand)
  return renderScript(_compact(START_FOLLOW_SH), {
    DIR: session.guestStateDir,
    STDIN_MODE: session.stdinMode,
    RUNNER: _runnerScript(session, o, true),
    MARK: mark,
    LABEL: label,
    CLEANUP: cleanup ? "1" : "",
  });
}

/**
 * The SSH command line that reads a bash script of `bytes` bytes from stdin
 * and runs it, leaving the rest of stdin to the script. Under a login shell
 * other than bash it hands over to bash first.
 */
export function bootstrapCommand(bytes: number): string {
  const boot = `LC_ALL=C; IFS= read -r -N ${Math.floor(bytes)} S || exit 125; eval "$S"`;
  return `case "\${BASH_VERSION-}" in '') exec bash -c ${shellQuote(boot)} ;; esac\n${boot}`;
}

/** Sends a signal (by name: TERM, KILL, …) to the session's process group; prints "sent" or "gone". */
export function SignalScript(stateDir: string, signal: string): string {
  return renderScript([ALIVE_SH, SIGNAL_SH], { DIR: stateDir, SIG: signal });
}

/** Closes the session's stdin pipe (its runner's writer); prints "closed" or "gone". */
export function CloseStdinScript(stateDir: string): string {
  return renderScript(CLOSE_STDIN_SH, { DIR: stateDir });
}

/** Resizes a pty session's terminal; prints "resized", "gone" or "no terminal". */
export function ResizeScript(stateDir: string, size: PtySize): string {
  return renderScript([ALIVE_SH, RESIZE_SH], { DIR: stateDir, COLS: _dim(size.cols), ROWS: _dim(size.rows) });
}

/** Prints the session's label (nothing when it has none). */
export function LabelReadCommand(stateDir: string): string {
  return renderScript(LABEL_READ_SH, { DIR: stateDir });
}

/** Prints "<stdout bytes> <stderr bytes>" of the session's logs. */
export function LogSizesCommand(stateDir: string): string {
  return renderScript(LOG_SIZES_SH, { DIR: stateDir });
}
