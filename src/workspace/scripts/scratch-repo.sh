# shellcheck shell=bash
# Shared head of diff.sh and export.sh (run with bash -s): cd into the repo,
# then a throwaway index and object dir (the repo's objects as an alternate)
# holding everything in the work tree, so the guest repo is never written,
# read-only workspaces included. Leaves GITDIR, TMP and HEADC (empty: unborn
# HEAD) for the script after it.
# Given: DIR (the guest path), NO_GIT_EXIT, NOT_A_REPO_EXIT; TOP_ONLY=yes: DIR must be its repo's top (a submodule).
set -e
: "${DIR:?}" "${NO_GIT_EXIT:?}" "${NOT_A_REPO_EXIT:?}"
command -v git >/dev/null 2>&1 || { echo "git is not installed in the guest" >&2; exit "$NO_GIT_EXIT"; }
cd "$DIR" 2>/dev/null || { echo "no workspace at $DIR" >&2; exit "$NOT_A_REPO_EXIT"; }
GITDIR=$(git rev-parse --absolute-git-dir 2>/dev/null) || { echo "$DIR is not a git repository" >&2; exit "$NOT_A_REPO_EXIT"; }
# A submodule left uninitialized in the guest is an empty dir inside the superproject: git would answer for the superproject.
if [ "${TOP_ONLY:-no}" = yes ] && [ "$(git rev-parse --show-toplevel)" != "$(pwd -P)" ]; then
  echo "$DIR is not a checked-out repository" >&2
  exit "$NOT_A_REPO_EXIT"
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir "$TMP/objects"
export GIT_INDEX_FILE="$TMP/index" GIT_OBJECT_DIRECTORY="$TMP/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$GITDIR/objects"
# An unborn HEAD leaves the index empty: the diff is then against the empty tree.
HEADC=$(git rev-parse --verify -q HEAD || true)
if [ -n "$HEADC" ]; then git read-tree HEAD; fi
git add -A .
