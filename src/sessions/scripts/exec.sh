# shellcheck shell=bash
# vm exec with options, run as `bash -c SCRIPT`: stdin, stdout and stderr are
# the command's. A user or directory that does not exist is one line,
# REFUSED_MARK then the reason, on stderr and exit REFUSED_EXIT (the daemon
# turns it into an error). With TIMEOUT (seconds, may be fractional; empty:
# none) the command runs in its own session and, when the time is up, its
# whole process tree is killed and we exit TIMEOUT_EXIT.
# Given: CMD (array), RUN_USER, RUN_CWD, RUN_ENV (see run-as.sh), TIMEOUT,
# TIMEOUT_EXIT, REFUSED_MARK, REFUSED_EXIT.
# shellcheck disable=SC2317 # called by run_as_prepare (run-as.sh)
refuse() {
  printf '%s%s\n' "$REFUSED_MARK" "$1" >&2
  exit "$REFUSED_EXIT"
}
run_as_prepare
if [ -z "$TIMEOUT" ]; then exec "${AS[@]}" "${CMD[@]}"; fi
# an async command's stdin is /dev/null unless redirected: hand it ours via fd 3
exec 3<&0
# setsid: its own session, so kill_tree finds all of it (we are no group leader here, so setsid does not fork)
setsid "${AS[@]}" "${CMD[@]}" <&3 3<&- &
CHILD=$!
exec 3<&-
await_child "$CHILD"
exit "$STATUS"
