# shellcheck shell=bash
# Watch dir P by polling (the guest image has no inotify tools): every
# INTERVAL seconds list what is under it (RECURSIVE=1: at any depth, else
# its entries) and report what appeared, changed (type, mtime or size) or
# went; banger's own temps (a write's or a copy's, renamed into place when
# done) are not reported: their rename is, as a create. Records on stdout, every field NUL-terminated: op, type (find's %y),
# path. A first `ready` record says the watch is set. The loop ends when its
# stdin ends, when P goes away (after its `gone` record), or when a write
# fails (a `ping` every ~10 polls makes a closed channel show up).
# Given: P, RECURSIVE, INTERVAL, NOT_FOUND_EXIT, NOT_DIR_EXIT.
: "${P:?}" "${RECURSIVE:?}" "${INTERVAL:?}" "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}"
if [ ! -d "$P" ]; then
  { [ -e "$P" ] || [ -L "$P" ]; } && exit "$NOT_DIR_EXIT"
  exit "$NOT_FOUND_EXIT"
fi
DEPTH=(-maxdepth 1)
[ "$RECURSIVE" = 1 ] && DEPTH=()
declare -A PREV=() CUR=()
snap() {
  local p s
  CUR=()
  while IFS= read -r -d '' p && IFS= read -r -d '' s; do CUR["$p"]=$s; done < <(find -H "$P" -mindepth 1 "${DEPTH[@]}" \( -name '.banger-write-*' -o -name '.banger-cp-*' \) -prune -o -printf '%p\0%y %T@ %s\0' 2>/dev/null)
}
emit() { printf '%s\0%s\0%s\0' "$1" "$2" "$3" || exit 0; }
keep() {
  local k
  PREV=()
  for k in "${!CUR[@]}"; do PREV["$k"]=${CUR[$k]}; done
}
snap
keep
emit ready d "$P"
N=0
while :; do
  # the pause between polls is a read of stdin, held open by the daemon for as
  # long as the watch is wanted: its EOF (the watch ended, or the channel
  # went away) ends the loop at once; sshd and dropbear alike close it
  if read -r -t "$INTERVAL" _; then :; elif [ $? -le 128 ]; then exit 0; fi
  if [ ! -d "$P" ]; then
    emit gone d "$P"
    exit 0
  fi
  snap
  for k in "${!CUR[@]}"; do
    if [ -z "${PREV[$k]+x}" ]; then
      emit create "${CUR[$k]%% *}" "$k"
    elif [ "${PREV[$k]}" != "${CUR[$k]}" ]; then
      emit write "${CUR[$k]%% *}" "$k"
    fi
  done
  for k in "${!PREV[@]}"; do
    [ -n "${CUR[$k]+x}" ] || emit remove "${PREV[$k]%% *}" "$k"
  done
  keep
  N=$((N + 1))
  [ $((N % 10)) -eq 0 ] && emit ping d "$P"
done
