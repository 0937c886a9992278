# shellcheck shell=bash
# Start a session and follow it on one SSH channel (StartFollowScript): does
# launch.sh's work (state dir, FIFO, logs, run.sh, `setsid nohup bash run.sh`,
# so the process outlives this channel and the daemon), then streams
# stdout.log to our stdout and stderr.log to our stderr until the process
# ends, and exits with its exit status. The first line on stderr is ours:
# "MARK pid <pid> <starttime>", or "MARK failed <reason>" when nothing runs.
# Ends early (tails killed) when our stdin closes: the caller went away.
# Builtins where a loop would start a program: each costs ~50 ms under TCG.
# Given: DIR, STDIN_MODE, RUNNER (the text of run.sh), MARK, LABEL (kept in
# DIR/label, 0600; empty: none), CLEANUP (non-empty: remove DIR once all of
# the output was streamed and the exit status is known).
: "${DIR:?}" "${STDIN_MODE:?}" "${RUNNER:?}" "${MARK:?}" "${LABEL?}" "${CLEANUP?}"
fail() {
  printf '%s failed %s\n' "$MARK" "$1" >&2
  exit 1
}
# a new session's dir: nothing of an earlier run to remove
mkdir -p "$DIR" || fail "cannot create the state dir $DIR"
{ : > "$DIR/stdout.log" && : > "$DIR/stderr.log"; } || fail "cannot create the logs in $DIR"
if [ "$STDIN_MODE" = pipe ]; then
  mkfifo -m 600 "$DIR/stdin.pipe" || fail "cannot create the stdin pipe in $DIR"
fi
# 0600: the runner holds the session's env values, the label may too
(
  umask 077
  printf '%s' "$RUNNER" > "$DIR/run.sh" || exit 1
  if [ -n "$LABEL" ]; then printf '%s' "$LABEL" > "$DIR/label" || exit 1; fi
) || fail "cannot write the runner in $DIR"
cd / || fail "cannot enter /"
# setsid alone detaches it (no controlling terminal, so no SIGHUP): no nohup to start
setsid bash "$DIR/run.sh" < /dev/null > "$DIR/runner.log" 2>&1 &
# a pipe nobody writes to: read -t on it is a sleep without sleep(1)
exec {never}<> <(:)
i=0
while [ ! -s "$DIR/pid" ]; do
  if [ -s "$DIR/exit_code" ]; then
    # the runner refused (user or directory gone) before starting anything
    IFS= read -r why < "$DIR/runner.log"
    fail "${why:-the runner exited before starting the command}"
  fi
  i=$((i + 1))
  if [ "$i" -gt 5000 ]; then fail "session runner did not start"; fi
  read -r -t 0.002 -u "$never" _
done
read -r PID START < "$DIR/pid"
printf '%s pid %s %s\n' "$MARK" "$PID" "$START" >&2
# tail notices the end within its -s interval: short, as that is latency on every command
tail -c +1 -F -s 0.02 --pid="$PID" "$DIR/stdout.log" 2> /dev/null < /dev/null &
T1=$!
tail -c +1 -F -s 0.02 --pid="$PID" "$DIR/stderr.log" >&2 2> /dev/null < /dev/null &
T2=$!
# reads until our stdin ends (builtins: a fork, not a program)
( while IFS= read -r _; do :; done; kill "$T1" "$T2" ) <&0 > /dev/null 2>&1 &
wait "$T1"
S1=$?
wait "$T2"
S2=$?
# the runner records the exit right after the process ends
i=0
while [ ! -s "$DIR/exit_code" ] && [ "$i" -lt 1000 ]; do
  read -r -t 0.003 -u "$never" _
  i=$((i + 1))
done
[ -s "$DIR/exit_code" ] || exit 255
read -r CODE < "$DIR/exit_code"
# both tails saw the process end (not killed: the caller still follows), so
# everything reached the caller: the state dir can go (in the background,
# its output away from the channel, which then closes at once)
if [ -n "$CLEANUP" ] && [ "$S1" = 0 ] && [ "$S2" = 0 ]; then
  rm -rf -- "$DIR" > /dev/null 2>&1 &
fi
exit "$CODE"
