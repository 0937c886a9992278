# shellcheck shell=bash
# Make dir P (PARENTS=1: and its parents). Exits EXISTS_EXIT when P is
# already a dir, NOT_DIR_EXIT when something else is there. Prints P's info
# record (as info.sh).
# Given: P, PARENT, PARENTS, EXISTS_EXIT, NOT_DIR_EXIT, NOT_FOUND_EXIT.
: "${P:?}" "${PARENT:?}" "${PARENTS:?}" "${EXISTS_EXIT:?}" "${NOT_DIR_EXIT:?}" "${NOT_FOUND_EXIT:?}"
[ -d "$P" ] && exit "$EXISTS_EXIT"
{ [ -e "$P" ] || [ -L "$P" ]; } && exit "$NOT_DIR_EXIT"
if [ "$PARENTS" = 1 ]; then
  mkdir -p -- "$P" || exit 1
else
  [ -d "$PARENT" ] || exit "$NOT_FOUND_EXIT"
  mkdir -- "$P" || exit 1
fi
exec find "$P" -maxdepth 0 -printf '%y\0%s\0%m\0%T@\0%l\0%p\0'
