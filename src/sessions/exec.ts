/**
 * `vm exec` with options (env, cwd, user, timeout): the guest command line
 * that runs argv that way, and the watch on its stderr that turns the
 * guest's "no such user/directory" answer into an error instead of output.
 * Without options the command stays the bare quoted argv (no wrapper, no
 * extra cost).
 */
import { hasExecOptions, TIMEOUT_EXIT, type ExecOptions } from "../shared/exec-options.ts";
import { renderScript, shellJoin, shellQuote } from "../shared/quote.ts";
import EXEC_SH from "./scripts/exec.sh" with { type: "text" };
import TIMEOUT_SH from "./scripts/timeout.sh" with { type: "text" };
import RUN_AS_SH from "./scripts/run-as.sh" with { type: "text" };
import GETENT_SH from "./scripts/getent.sh" with { type: "text" };

/** Exit status of the wrapper when the guest has no such user, group or directory (nothing ran). */
export const REFUSED_EXIT = 125;
/** Starts the one stderr line the wrapper writes then, with a token per exec after it: no command can print it by accident or on purpose. */
export const REFUSED_MARK = "banger-refused-";

/** The mark for one exec: REFUSED_MARK, the token, ": ". */
function _mark(token: string): string {
  return `${REFUSED_MARK}${token}: `;
}

/** Seconds for sleep(1): exact to the millisecond, no float noise. */
export function secondsArg(ms: number): string {
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}`;
}

/** The guest's SSH server may refuse longer command lines (dropbear's MAX_CMD_LEN is 9000 bytes). */
const SHORT_ENOUGH = 8000;

/** Comment and blank lines and indentation out: the command line has a size limit (see SHORT_ENOUGH). None of our scripts has a multi-line string. */
function _compact(sh: string): string {
  return sh
    .split("\n")
    .filter((l) => !/^\s*(#.*)?$/.test(l))
    .map((l) => l.trimStart())
    .join("\n") + "\n";
}
const _PARTS = [_compact(GETENT_SH), _compact(RUN_AS_SH), _compact(TIMEOUT_SH), _compact(EXEC_SH)];

/** The SSH command line that runs argv with these options (the bare quoted argv when there are none). */
export function execCommandLine(argv: string[], o: ExecOptions, token: string): string {
  if (!hasExecOptions(o)) return shellJoin(argv);
  const script = renderScript(_PARTS, {
    CMD: argv,
    RUN_USER: o.user ?? "",
    RUN_CWD: o.cwd ?? "",
    // another user starts in their home, not in root's (which they cannot read), unless an image's workdir was entered
    RUN_CWD_HOME: o.user ? "login" : "",
    RUN_ENV: o.env ?? [],
    TIMEOUT: o.timeoutMs !== undefined ? secondsArg(o.timeoutMs) : "",
    TIMEOUT_EXIT,
    REFUSED_MARK: _mark(token),
    REFUSED_EXIT,
  });
  const viaBash = `exec bash -c ${shellQuote(script)}`;
  // SSH runs this with the user's login shell: bash (Debian's root) runs the
  // script itself, saving a bash start (~0.4 s under TCG); any other shell
  // reads only the first line (shells parse -c text a command at a time) and
  // hands the script to bash. That holds the script twice: when too long, only the hand-over.
  const direct = `case "\${BASH_VERSION-}" in '') ${viaBash} ;; esac\n${script}`;
  return Buffer.byteLength(direct) <= SHORT_ENOUGH ? direct : viaBash;
}

/**
 * Passes stderr through, except a first line starting with this exec's mark,
 * which it holds back: if the command then ends with REFUSED_EXIT, `refusal`
 * is that line's reason (and nothing of it was shown); otherwise it is let
 * through at the end. Only the first bytes of stderr are ever held.
 */
export function refusalWatch(onStderr: (chunk: Uint8Array) => void, token: string): { onStderr(chunk: Uint8Array): void; finish(code: number): string | null } {
  const markText = _mark(token);
  const mark = new TextEncoder().encode(markText);
  let held: Uint8Array[] | null = [];
  let heldBytes = 0;
  const release = () => {
    for (const c of held ?? []) onStderr(c);
    held = null;
  };
  const startsLikeMark = (): boolean => {
    const all = Buffer.concat(held!);
    const n = Math.min(all.length, mark.length);
    return Buffer.compare(all.subarray(0, n), Buffer.from(mark.subarray(0, n))) === 0;
  };
  return {
    onStderr(chunk) {
      if (held === null) return onStderr(chunk);
      held.push(chunk.slice());
      heldBytes += chunk.length;
      // the wrapper's line is short: anything long, or not starting like the mark, is the command's own
      if (!startsLikeMark() || heldBytes > 4096) release();
    },
    finish(code) {
      if (held === null) return null;
      const text = Buffer.concat(held).toString("utf8");
      if (code === REFUSED_EXIT && text.startsWith(markText)) {
        held = null;
        return text.slice(markText.length).split("\n")[0]!.trim();
      }
      release();
      return null;
    },
  };
}
