# shellcheck shell=bash
# ListDir: the records of what is under dir P, DEPTH levels down (P itself
# may be a symlink to a dir; symlinks under it are not followed).
# Given (after user.sh): P, DEPTH, NOT_FOUND_EXIT, NOT_DIR_EXIT.
: "${DEPTH:?}" "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}"
abs A "$P"
[ -e "$A" ] || [ -L "$A" ] || fail "$NOT_FOUND_EXIT" "directory not found: '$A' does not exist"
[ -d "$A" ] || fail "$NOT_DIR_EXIT" "path '$A' is not a directory"
exec find -H "$A" -mindepth 1 -maxdepth "$DEPTH" -printf '%y\0%Y\0%s\0%m\0%u\0%g\0%T@\0%l\0%p\0'
