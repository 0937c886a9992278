# shellcheck shell=bash
# Workspace prepare, once hooks succeeded (FinalizeScript, run with bash -s,
# after list.sh): drop the old tree, keep the record the next prepare's
# guard.sh compares against (none when it cannot be made: that prepare then
# does not check) and the token; freeze the new tree when READ_ONLY
# (only now, so hooks could still write). chmod alone does not stop root, who
# is the usual guest user, so root also gets a read-only bind mount over it.
# Given: DIR (the guest path), OLD, TOKEN, SENT_FILE, TREE_FILE, REFS_FILE
# (in .git), READ_ONLY ("yes" or "no").
set -e
: "${DIR:?}" "${OLD:?}" "${TOKEN:?}" "${SENT_FILE:?}" "${TREE_FILE:?}" "${REFS_FILE:?}" "${READ_ONLY:?}"
test -d "$DIR"
if [ -e "$OLD" ]; then
  # directories only: a re-prepare's files share inodes with the new tree (hard links)
  find "$OLD" -type d -exec chmod u+w {} +
  rm -rf -- "$OLD"
fi
# temp + rename: a cut finalize leaves a whole record or the last one
if ! { _list_tree > "$DIR/.git/$TREE_FILE.tmp" && _list_refs > "$DIR/.git/$REFS_FILE.tmp" &&
  mv -f -- "$DIR/.git/$TREE_FILE.tmp" "$DIR/.git/$TREE_FILE" && mv -f -- "$DIR/.git/$REFS_FILE.tmp" "$DIR/.git/$REFS_FILE"; }; then
  rm -f -- "$DIR/.git/$TREE_FILE"* "$DIR/.git/$REFS_FILE"*
fi
# touched after it is written, so the .git dir it lands in is never newer than it
echo "$TOKEN" > "$DIR/.git/$SENT_FILE"
touch -- "$DIR/.git/$SENT_FILE"
if [ "$READ_ONLY" = yes ]; then
  chmod -R a-w "$DIR"
  if [ "$(id -u)" = 0 ]; then
    if ! { mount --bind -- "$DIR" "$DIR" && mount -o remount,bind,ro -- "$DIR"; }; then
      # || true: under set -e a failed umount (no bind mount was made) would exit before the message
      umount -- "$DIR" 2>/dev/null || true
      echo "could not make $DIR a read-only mount" >&2
      exit 1
    fi
  fi
fi
