# shellcheck shell=bash
# banger session runner, saved as DIR/run.sh by launch.sh and run with
# `nohup bash`: holds the FIFO writer, starts the command in its own session,
# records "<pid> <starttime>" in DIR/pid and its exit status in DIR/exit_code
# (127 when the cwd is gone), each written atomically.
# Given: DIR (the state dir), CMD (array: command and args), STDIN_MODE
# ("pipe": read DIR/stdin.pipe; otherwise /dev/null), RUN_USER, RUN_CWD,
# RUN_ENV (see run-as.sh), TIMEOUT (seconds; empty: none) and TIMEOUT_EXIT
# (recorded when the time ran out and the process tree was killed),
# PTY_COLS/PTY_ROWS (empty: no terminal; else the command runs on a new pty
# of that size under script(1), whose output is the terminal's).
# SIGUSR1 closes the stdin pipe's writer (close stdin: the command reads EOF
# once no send is writing); DIR/runner.pid says whom to signal.
: "${DIR:?}" "${RUN_CWD?}" "${STDIN_MODE:?}" "${PTY_COLS?}" "${PTY_ROWS?}"
record_exit() {
  echo "$1" > "$DIR/exit_code.tmp"
  mv -f "$DIR/exit_code.tmp" "$DIR/exit_code"
}
# preflight checked user and cwd; one gone since then ends the session as "not found"
refuse() {
  echo "$1" >&2
  record_exit 127
  exit 0
}
run_as_prepare
echo "$$" > "$DIR/runner.pid"
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
# setsid: the command leads its own process group, so stop can signal all of it.
setsid "${AS[@]}" "${CMD[@]}" < "$IN" >> "$DIR/stdout.log" 2>> "$DIR/stderr.log" 3>&- &
CHILD=$!
# read, not $(cat): one program less to start (each costs ~50 ms under TCG)
IFS= read -r STAT < "/proc/$CHILD/stat"
REST=${STAT##*) }
# shellcheck disable=SC2086 # split on purpose: the fields after "(comm) "; ${20} is the starttime
set -- $REST
echo "$CHILD ${20}" > "$DIR/pid.tmp"
mv -f "$DIR/pid.tmp" "$DIR/pid"
if [ -z "$TIMEOUT" ]; then
  # not a bare wait: USR1 (close stdin) would end it early (see wait_child)
  wait_child "$CHILD"
  record_exit "$STATUS"
  exit 0
fi
await_child "$CHILD"
record_exit "$STATUS"
