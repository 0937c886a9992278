# shellcheck shell=bash
# Workspace prepare, the swap (ActivateScript, run with bash -s): the stage
# moves into place and the old tree aside, then the path is marked safe for
# git: it is owned by another uid than a guest user may run git as.
# Given: DIR (the guest path), STAGE, OLD, NO_GIT_EXIT.
set -e
: "${DIR:?}" "${STAGE:?}" "${OLD:?}" "${NO_GIT_EXIT:?}"
command -v git >/dev/null 2>&1 || { echo "git is not installed in the guest" >&2; exit "$NO_GIT_EXIT"; }
# an earlier read-only prepare left a read-only bind mount on DIR: a mount point cannot be renamed
if mountpoint -q -- "$DIR" 2>/dev/null; then umount -- "$DIR"; fi
if [ -e "$DIR" ]; then mv -T -- "$DIR" "$OLD"; fi
mv -T -- "$STAGE" "$DIR"
# --add appends: skip when present so repeated prepares don't grow ~/.gitconfig.
if ! git config --global --get-all safe.directory 2>/dev/null | grep -qxF -- "$DIR"; then
  git config --global --add safe.directory "$DIR"
fi
