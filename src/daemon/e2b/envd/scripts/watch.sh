# shellcheck shell=bash
# WatchDir: dir P's absolute path (NUL-terminated), then inotifywait's
# events under it (RECURSIVE=1: at any depth) as NUL-terminated pairs:
# events (comma-separated, e.g. CREATE,ISDIR) and path. inotifywait says
# "Watches established." on stderr once it is set. Runs until its stdin
# ends (the daemon holds it open while the watch is wanted) or inotifywait
# stops (the dir went away).
# Given (after user.sh): P, RECURSIVE, NOT_FOUND_EXIT, NOT_DIR_EXIT, NO_INOTIFY_EXIT.
: "${RECURSIVE:?}" "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}" "${NO_INOTIFY_EXIT:?}"
abs A "$P"
[ -e "$A" ] || [ -L "$A" ] || fail "$NOT_FOUND_EXIT" "directory not found: '$A' does not exist"
[ -d "$A" ] || fail "$NOT_DIR_EXIT" "path '$A' is not a directory"
command -v inotifywait > /dev/null || fail "$NO_INOTIFY_EXIT" "watching a directory needs inotifywait in the guest: install inotify-tools in the image"
R=()
[ "$RECURSIVE" = 1 ] && R=(-r)
printf '%s\0' "$A"
inotifywait -m "${R[@]}" -e create,modify,attrib,delete,moved_from,moved_to,delete_self,move_self \
  --format '%e%0%w%f%0' --no-newline -- "$A" < /dev/null &
W=$!
# the pause is a read of stdin: its EOF (the watch ended, or the channel
# went) ends the loop at once, as does inotifywait stopping by itself
while kill -0 "$W" 2> /dev/null; do
  if read -r -t 1 _; then :; elif [ $? -le 128 ]; then break; fi
done
kill "$W" 2> /dev/null
wait "$W" 2> /dev/null
exit 0
