# shellcheck shell=bash
# Session start, stage "launch" (run with bash -s): creates the state dir,
# FIFO and logs, starts the runner with `nohup bash` under setsid (so it
# outlives the SSH connection), waits for it to record the pid, and prints
# "<pid> <starttime>".
# Given: DIR (the state dir), STDIN_MODE ("pipe" makes the FIFO), RUNNER (the
# text of run.sh).
set -e
: "${DIR:?}" "${STDIN_MODE:?}" "${RUNNER:?}"
mkdir -p "$DIR"
rm -f "$DIR/pid" "$DIR/exit_code" "$DIR/stdin.pipe"
: > "$DIR/stdout.log"
: > "$DIR/stderr.log"
if [ "$STDIN_MODE" = pipe ]; then
  mkfifo -m 600 "$DIR/stdin.pipe"
fi
# 0600: the runner holds the session's env values
(umask 077 && printf '%s' "$RUNNER" > "$DIR/run.sh")
cd /
setsid nohup bash "$DIR/run.sh" < /dev/null > "$DIR/runner.log" 2>&1 &
i=0
while [ ! -s "$DIR/pid" ]; do
  i=$((i + 1))
  if [ "$i" -gt 200 ]; then
    echo "session runner did not start; runner.log:" >&2
    cat "$DIR/runner.log" >&2
    exit 1
  fi
  sleep 0.05
done
cat "$DIR/pid"
