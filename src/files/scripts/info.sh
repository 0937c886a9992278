# shellcheck shell=bash
# Describe P (DEPTH 0: P itself, a symlink as a symlink) or what is under it
# (DEPTH n: entries up to n levels down, a symlinked dir followed). One record
# per path, every field NUL-terminated, so any byte but NUL may be in a name:
# type (find's %y), size, octal mode, mtime (epoch seconds), link target, path.
# Given: P, DEPTH, NOT_FOUND_EXIT, NOT_DIR_EXIT.
: "${P:?}" "${DEPTH:?}" "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}"
[ -e "$P" ] || [ -L "$P" ] || exit "$NOT_FOUND_EXIT"
if [ "$DEPTH" -eq 0 ]; then
  exec find "$P" -maxdepth 0 -printf '%y\0%s\0%m\0%T@\0%l\0%p\0'
fi
[ -d "$P" ] || exit "$NOT_DIR_EXIT"
exec find -H "$P" -mindepth 1 -maxdepth "$DEPTH" -printf '%y\0%s\0%m\0%T@\0%l\0%p\0'
