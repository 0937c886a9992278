# shellcheck shell=bash
# Undo a prepare (RollbackScript, run with bash -s). Before activation
# (ACTIVATED=no) only the stage, if any, goes. Once activation started: if the
# stage is gone it was moved onto DIR, so DIR is ours to remove; if the old
# tree was moved aside, it goes back; a stage still present is removed last.
# Succeeds when no stage is left.
# Given: DIR (the guest path), STAGE, OLD, ACTIVATED ("yes" or "no").
: "${DIR:?}" "${STAGE:?}" "${OLD:?}" "${ACTIVATED:?}"
# Remove a tree we made: unmount a read-only bind mount, make frozen dirs writable.
_rm() {
  if [ -e "$1" ] || [ -L "$1" ]; then
    if mountpoint -q -- "$1" 2>/dev/null; then umount -- "$1"; fi
    find "$1" -type d -exec chmod u+w {} + 2>/dev/null
    rm -rf -- "$1"
  fi
}
if [ "$ACTIVATED" = yes ]; then
  if [ -e "$OLD" ]; then
    _rm "$DIR"
    mv -T -- "$OLD" "$DIR"
  elif [ ! -e "$STAGE" ]; then
    _rm "$DIR"
  fi
fi
_rm "$STAGE"
[ ! -e "$STAGE" ]
