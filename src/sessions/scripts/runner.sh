# shellcheck shell=bash
# banger session runner, saved as DIR/run.sh by launch.sh and run with
# `nohup bash` (or run by a fork of start-follow.sh's bash): holds the FIFO
# writer, starts the command in a process group of its own, records "<pid>
# <starttime>" in DIR/pid and its exit status in DIR/exit_code (127 when the
# cwd is gone), each one line written by one write(2) with its newline: a
# reader that sees the file non-empty (test -s) reads all of it.
# Given: DIR (the state dir), CMD (array: command and args), STDIN_MODE
# ("pipe": read DIR/stdin.pipe; otherwise /dev/null), RUN_USER, RUN_CWD,
# RUN_ENV (see run-as.sh), TIMEOUT (seconds; empty: none) and TIMEOUT_EXIT
# (recorded when the time ran out and the process tree was killed),
# PTY_COLS/PTY_ROWS (empty: no terminal; else the command runs on a new pty
# of that size under script(1), whose output is the terminal's).
# SIGUSR1 closes the stdin pipe's writer (close stdin: the command reads EOF
# once no send is writing); DIR/runner.pid says whom to signal ("<pid>
# <starttime>": the pid alone would not say it is still this runner).
: "${DIR:?}" "${RUN_CWD?}" "${STDIN_MODE:?}" "${PTY_COLS?}" "${PTY_ROWS?}"
record_exit() {
  echo "$1" > "$DIR/exit_code"
  wake
}
# wake: a line on fd WAKE (set by start-follow.sh: its follower waits on it), so it sees the pid or the exit now, not at its next poll
wake() {
  if [ -n "${WAKE-}" ]; then { echo >&"$WAKE"; } 2> /dev/null; fi
}
# starttime PID: sets ST to PID's /proc starttime (field 22; read, not $(cat): a program less)
starttime() {
  local stat rest
  IFS= read -r stat < "/proc/$1/stat"
  rest=${stat##*) }
  # shellcheck disable=SC2086 # split on purpose: the fields after "(comm) "; ${20} is the starttime
  set -- $rest
  ST=${20}
}
# preflight checked user and cwd; one gone since then ends the session as "not found"
refuse() {
  echo "$1" >&2
  record_exit 127
  exit 0
}
run_as_prepare
# $BASHPID, not $$: run by a fork of start-follow.sh's bash, $$ is that bash
starttime "$BASHPID"
echo "$BASHPID $ST" > "$DIR/runner.pid"
if [ -n "$PTY_COLS" ]; then
  # script(1) gives the command a pty (our stdin a FIFO, our stdout a file);
  # the size is set on the pty from inside, before the command starts
  printf -v INNER '%q ' "${CMD[@]}"
  CMD=(env SHELL=/bin/bash script -q -f -e -c "stty cols $PTY_COLS rows $PTY_ROWS 2>/dev/null; exec $INNER" /dev/null)
fi
IN=/dev/null
if [ "$STDIN_MODE" = pipe ]; then
  # Hold the FIFO open read-write: the command never sees EOF between sends,
  # and opening it for reading below does not block.
  exec 3<>"$DIR/stdin.pipe"
  IN=$DIR/stdin.pipe
  # shellcheck disable=SC2034 # TRAPPED is read by wait_child (timeout.sh)
  trap 'exec 3>&-; TRAPPED=1' USR1
fi
# Job control: the command leads its own process group (as setsid would make
# it, without starting setsid), so stop can signal all of it. Job reports go
# to our stderr, runner.log.
set -m
# a hangup of the group that started us is not for us: a handler, not an
# ignore, so the command does not inherit it (wait_child waits on after it)
trap 'TRAPPED=1' HUP
# exec: always a program (never a builtin or one of our functions), in the job's one fork
# (the follower's wake pipe is not the command's to hold)
(
  if [ -n "${WAKE-}" ]; then exec {WAKE}>&-; fi
  exec "${AS[@]}" "${CMD[@]}"
) < "$IN" >> "$DIR/stdout.log" 2>> "$DIR/stderr.log" 3>&- &
CHILD=$!
starttime "$CHILD"
echo "$CHILD $ST" > "$DIR/pid"
wake
if [ -z "$TIMEOUT" ]; then
  # not a bare wait: USR1 (close stdin) would end it early (see wait_child)
  wait_child "$CHILD"
  record_exit "$STATUS"
  exit 0
fi
await_child "$CHILD"
record_exit "$STATUS"
