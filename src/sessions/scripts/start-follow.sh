# shellcheck shell=bash
# Start a session and follow it on one SSH channel (StartFollowScript): does
# launch.sh's work (state dir, FIFO, logs, run.sh, a detached runner that
# outlives this channel and the daemon), then streams stdout.log to our
# stdout and stderr.log to our stderr until the process ends, and exits with
# its exit status. The first line on stderr is ours: "MARK pid <pid>
# <starttime>", or "MARK failed <reason>" when nothing runs. Ends early when
# our stdin closes: the caller went away (the process runs on).
# Under TCG every program costs 90-180 ms (exec + dynamic linking), so the
# critical path starts only mkdir (and mkfifo for a stdin pipe): the runner
# is a fork of this shell, not `setsid bash run.sh`, and the logs are
# followed by bash's own reads, not by two tails.
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
# 0600: the runner holds the session's env values, the label may too (umask here: a subshell would be a fork)
MASK=$(umask)
umask 077
{ printf '%s' "$RUNNER" > "$DIR/run.sh" && { [ -z "$LABEL" ] || printf '%s' "$LABEL" > "$DIR/label"; }; } || fail "cannot write the runner in $DIR"
umask "$MASK"
# A pipe (opened read-write: no program, and a write never finds it without
# a reader): read -t on it is a sleep without sleep(1) that the runner cuts
# short by writing a line when it recorded the pid and the exit (WAKE). So
# the waits below need not poll often: on one guest CPU, polling takes time
# from the command itself.
exec {never}<> <(:)
# The runner: a fork of this shell running run.sh's text (what `bash run.sh`
# would run, without starting bash again). Its stdio is not the channel's, so
# the channel closing (a daemon killed -9) does not touch it; it starts the
# command in a process group of its own (set -m in runner.sh).
(
  cd / || exit 1
  unset -f fail
  # shellcheck disable=SC2034 # WAKE is for the runner's text, eval'd below
  WAKE=$never
  eval "$RUNNER"
) < /dev/null > "$DIR/runner.log" 2>&1 &
i=0
while [ ! -s "$DIR/pid" ]; do
  if [ -s "$DIR/exit_code" ]; then
    # the runner refused (user or directory gone) before starting anything
    IFS= read -r why < "$DIR/runner.log"
    fail "${why:-the runner exited before starting the command}"
  fi
  i=$((i + 1))
  if [ "$i" -gt 1000 ]; then fail "session runner did not start"; fi
  read -r -t 0.01 -u "$never" _
done
read -r PID START < "$DIR/pid"
printf '%s pid %s %s\n' "$MARK" "$PID" "$START" >&2
# Our stdin ending means the caller went away: stop following (a fork reading
# with builtins; it ends us, never the runner, which is not our child's group)
ME=$BASHPID
( while IFS= read -r _; do :; done; kill "$ME" ) <&0 > /dev/null 2>&1 &
exec {OUT}< "$DIR/stdout.log" {ERR}< "$DIR/stderr.log" < /dev/null
# pump FD TO: copy what FD has to TO from where the last call stopped; fails
# when there was nothing. Byte-exact: read -d '' stops at each NUL, which is
# written back when it was read (a chunk shorter than asked for with read
# succeeding). A full chunk means a lot of output: cat takes the rest at once
# (it reads from the same file offset).
pump() {
  local c s n=0
  while :; do
    IFS= read -r -d '' -n 65536 -u "$1" c
    s=$?
    if [ "$s" = 0 ] && [ "${#c}" -lt 65536 ]; then
      printf '%s\0' "$c" >&"$2"
    else
      printf '%s' "$c" >&"$2"
    fi
    n=$((n + ${#c}))
    [ "$s" = 0 ] || break
    if [ "${#c}" = 65536 ]; then
      cat <&"$1" >&"$2"
      return 0
    fi
  done
  [ "$n" -gt 0 ] || [ "$s" = 0 ]
}
# Follow until the runner recorded the exit (it wakes us then), then take
# what is left. Output is looked for every 50 ms, every 100 ms after ~2 s
# without any (a long quiet process costs little). A process that is gone
# with no exit recorded (its runner was killed) ends the follow after a few
# seconds: 255.
wait_s=0.05
polls=0
gone=0
CODE=""
while :; do
  moved=""
  pump "$OUT" 1 && moved=1
  pump "$ERR" 2 && moved=1
  if [ -n "$moved" ]; then
    polls=0
    wait_s=0.05
    continue
  fi
  if [ -n "$CODE" ]; then break; fi
  if [ -s "$DIR/exit_code" ]; then
    read -r CODE < "$DIR/exit_code"
    # one more pass: what the process wrote just before it ended
    continue
  fi
  if [ ! -d "/proc/$PID" ]; then
    gone=$((gone + 1))
    if [ "$gone" -gt 50 ]; then exit 255; fi
  fi
  read -r -t "$wait_s" -u "$never" _
  polls=$((polls + 1))
  if [ "$polls" = 40 ]; then wait_s=0.1; fi
done
kill "$!" 2> /dev/null
# everything reached the caller: the state dir can go (in the background,
# its output away from the channel, which then closes at once)
if [ -n "$CLEANUP" ]; then
  rm -rf -- "$DIR" > /dev/null 2>&1 &
fi
exit "$CODE"
