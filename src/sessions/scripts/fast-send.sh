# shellcheck shell=bash
# One send (FastSendScript), run with exec under bash, payload on stdin
# (NUL-free: bash variables cannot hold NUL): send.sh's protocol (upload to
# UPLOAD, write into the FIFO, rm -f) with bash builtins instead of
# cat/timeout/dd, as under TCG every guest process costs ~40-70 ms, a fork
# ~8 ms. The timeout is a coproc watchdog whose `read -t` expires and signals
# us; SIGALRM interrupts an open() blocked on a FIFO without a reader or a
# write() blocked on a full pipe.
# Given: as send.sh.
: "${UPLOAD:?}" "${PIPE:?}" "${TIMEOUT:?}" "${EXPECTED?}" "${NO_PIPE_EXIT:?}" "${SHORT_EXIT:?}" "${TIMEOUT_EXIT:?}"
LC_ALL=C
if [ ! -p "$PIPE" ]; then
  echo "no stdin pipe at $PIPE" >&2
  exit "$NO_PIPE_EXIT"
fi
umask 077
IFS= read -r -d '' DATA
# A daemon killed mid-upload closes the channel, which reads as EOF: nothing
# of a payload that arrived short may reach the FIFO.
if [ -n "$EXPECTED" ] && [ "${#DATA}" -ne "$EXPECTED" ]; then
  echo "upload arrived short: ${#DATA} of $EXPECTED bytes" >&2
  exit "$SHORT_EXIT"
fi
printf '%s' "$DATA" > "$UPLOAD" || { rc=$?; rm -f "$UPLOAD"; exit "$rc"; }
trap 'rm -f "$UPLOAD"; echo "timed out after ${TIMEOUT}s writing to $PIPE: the session is not reading its stdin" >&2; exit "$TIMEOUT_EXIT"' ALRM
# shellcheck disable=SC2034 # coproc sets WATCHDOG_PID, used below
coproc WATCHDOG { read -r -t "$TIMEOUT"; kill -ALRM "$$"; }
printf '%s' "$DATA" > "$PIPE"
rc=$?
kill "$WATCHDOG_PID" 2>/dev/null
rm -f "$UPLOAD"
exit "$rc"
