# shellcheck shell=bash
# A tar of PARENT/NAME on stdout with NAME as its one top-level entry (a dir
# with everything under it: modes, symlinks as symlinks, empty dirs), the
# sending half of `vm cp`. Runs in the guest (over SSH) or on the host.
# DIR_ONLY=1: the path was written with a trailing / or /. and must be a dir.
# Given: PARENT, NAME, DIR_ONLY, NOT_FOUND_EXIT, NOT_DIR_EXIT.
: "${PARENT:?}" "${NAME:?}" "${DIR_ONLY:?}" "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}"
cd -- "$PARENT" 2>/dev/null || exit "$NOT_FOUND_EXIT"
[ -e "$NAME" ] || [ -L "$NAME" ] || exit "$NOT_FOUND_EXIT"
if [ "$DIR_ONLY" = 1 ] && [ ! -d "$NAME" ]; then exit "$NOT_DIR_EXIT"; fi
exec tar -c -f - -- "$NAME"
