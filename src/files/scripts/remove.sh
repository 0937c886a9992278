# shellcheck shell=bash
# Remove P: a file or symlink (never what it points at), an empty dir, or
# with RECURSIVE=1 a whole tree.
# Given: P, RECURSIVE, NOT_FOUND_EXIT, NOT_EMPTY_EXIT.
: "${P:?}" "${RECURSIVE:?}" "${NOT_FOUND_EXIT:?}" "${NOT_EMPTY_EXIT:?}"
[ -e "$P" ] || [ -L "$P" ] || exit "$NOT_FOUND_EXIT"
if [ -d "$P" ] && [ ! -L "$P" ]; then
  [ "$RECURSIVE" = 1 ] && exec rm -rf -- "$P"
  [ -z "$(find "$P" -mindepth 1 -maxdepth 1 -print -quit)" ] || exit "$NOT_EMPTY_EXIT"
  exec rmdir -- "$P"
fi
exec rm -f -- "$P"
