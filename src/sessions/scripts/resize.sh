# shellcheck shell=bash
# Resize a pty session's terminal (after alive.sh): the command under
# script(1) has the pty as its stdin; setting the size there signals
# SIGWINCH to its foreground. Prints "resized", "gone", or "no terminal".
# Given: DIR, COLS, ROWS.
: "${COLS:?}" "${ROWS:?}"
if ! _alive; then
  echo gone
  exit 0
fi
for f in "/proc/$PID/task/"*/children; do
  read -r -a KIDS < "$f"
  for k in "${KIDS[@]}"; do
    T=$(readlink "/proc/$k/fd/0") || continue
    case $T in
      /dev/pts/*)
        stty -F "$T" cols "$COLS" rows "$ROWS" && echo resized
        exit 0
        ;;
    esac
  done
done
echo "no terminal"
