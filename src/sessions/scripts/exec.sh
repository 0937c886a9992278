# shellcheck shell=bash
# vm exec with options, run as `bash -c SCRIPT`: stdin, stdout and stderr are
# the command's. A user or directory that does not exist is one line,
# REFUSED_MARK then the reason, on stderr and exit REFUSED_EXIT (the daemon
# turns it into an error). With TIMEOUT (seconds, may be fractional; empty:
# none) the command runs in its own process group and, when the time is up, its
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
# job control: the command gets a process group of its own, which kill_tree
# kills whole (set -m rather than setsid(1): one program less to start).
set -m
# the command gets our stdin (an async command's would be /dev/null) and
# stderr; ours goes to /dev/null: from here it would carry only bash's job
# reports ("[1]+ Exit 7 …"), never meant for the command's stderr
exec 3<&0 4>&2 2> /dev/null
"${AS[@]}" "${CMD[@]}" <&3 2>&4 3<&- 4>&- &
CHILD=$!
set +m
exec 3<&- 4>&-
# a signal sent to our group (`vm exec`'s Ctrl-C, forwarded) is for the
# command, whose group is its own: pass it on, and wait on (see wait_child)
for sig in INT TERM HUP; do
  # shellcheck disable=SC2064 # the signal's name, now; the child's pid, when it fires
  trap "TRAPPED=1; kill -$sig -- -\$CHILD 2> /dev/null" "$sig"
done
await_child "$CHILD"
exit "$STATUS"
