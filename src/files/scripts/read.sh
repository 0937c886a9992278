# shellcheck shell=bash
# A file's bytes on stdout, exactly (cat, never a shell variable).
# Given: P, NOT_FOUND_EXIT, IS_DIR_EXIT.
: "${P:?}" "${NOT_FOUND_EXIT:?}" "${IS_DIR_EXIT:?}"
[ -e "$P" ] || exit "$NOT_FOUND_EXIT"
[ -d "$P" ] && exit "$IS_DIR_EXIT"
exec cat -- "$P"
