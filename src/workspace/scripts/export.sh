# shellcheck shell=bash
# Workspace export (after scratch-repo.sh): everything the guest has that the
# prepared-from commit (in .git/BASE_FILE; empty: none) lacks — its new
# commits, plus uncommitted work (untracked files included) as one more
# commit made from the throwaway index; the guest's HEAD, index and refs never
# move. FORMAT "patch": `git format-patch --binary` of base..tip on stdout
# (`git am` takes it). FORMAT "bundle": a git bundle of the guest's branch
# (refs/heads/NAME, or refs/heads/HEAD when detached) with base as its
# prerequisite, on stdout. Exits NOTHING_NEW_EXIT when tip is the base.
# Given: FORMAT, BASE_FILE, NOTHING_NEW_EXIT (and scratch-repo.sh's).
: "${FORMAT:?}" "${BASE_FILE:?}" "${NOTHING_NEW_EXIT:?}"
BASE=$(cat "$GITDIR/$BASE_FILE" 2>/dev/null || true)
TREE=$(git write-tree)
TIP=$HEADC
if [ -z "$HEADC" ] || [ "$TREE" != "$(git rev-parse "HEAD^{tree}")" ]; then
  GIT_AUTHOR_NAME=$(git config user.name || echo banger)
  GIT_AUTHOR_EMAIL=$(git config user.email || echo banger@localhost)
  export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
  if [ -n "$HEADC" ]; then
    TIP=$(git commit-tree "$TREE" -p "$HEADC" -m "banger: uncommitted work in $DIR")
  else
    TIP=$(git commit-tree "$TREE" -m "banger: uncommitted work in $DIR")
  fi
fi
if [ -z "$TIP" ] || [ "$TIP" = "$BASE" ]; then
  echo "nothing new in $DIR since it was prepared" >&2
  exit "$NOTHING_NEW_EXIT"
fi
if [ "$FORMAT" = patch ]; then
  if [ -n "$BASE" ]; then
    git -c core.quotepath=false format-patch --stdout --binary --no-color --no-signature --no-ext-diff "$BASE..$TIP"
  else
    git -c core.quotepath=false format-patch --stdout --binary --no-color --no-signature --no-ext-diff --root "$TIP"
  fi
else
  BR=$(git symbolic-ref -q --short HEAD || echo HEAD)
  # A scratch bare repo holds the one ref the bundle needs; objects come from the env above.
  git init -q --bare "$TMP/b"
  git --git-dir="$TMP/b" update-ref "refs/heads/$BR" "$TIP"
  if [ -n "$BASE" ]; then
    git --git-dir="$TMP/b" bundle create -q - "refs/heads/$BR" "^$BASE"
  else
    git --git-dir="$TMP/b" bundle create -q - "refs/heads/$BR"
  fi
fi
