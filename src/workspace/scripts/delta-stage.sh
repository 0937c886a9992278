# shellcheck shell=bash
# Workspace re-prepare that sends only what changed (DeltaStageCommand, run
# as `bash -c`): check the guest tree is the one the manifest describes (same
# token, nothing in it newer than the token file), hard-link it into a new
# stage (cheap; unchanged files share inodes), and remove from the stage the
# NUL-separated paths on stdin (changed ones too, so the tar writes new inodes
# instead of writing through links into the live tree). Exits STALE_EXIT
# when the tree cannot be reused.
# Given: DIR (the guest path), STAGE, TOKEN, SENT_FILE (in .git, holds the
# token), STALE_EXIT.
: "${DIR:?}" "${STAGE:?}" "${TOKEN:?}" "${SENT_FILE:?}" "${STALE_EXIT:?}"
M=$DIR/.git/$SENT_FILE
if [ ! -d "$DIR" ] || [ -L "$DIR" ] || [ "$(cat -- "$M" 2>/dev/null)" != "$TOKEN" ]; then
  exit "$STALE_EXIT"
fi
if [ -n "$(find "$DIR" -newer "$M" -print -quit 2>/dev/null)" ]; then
  exit "$STALE_EXIT"
fi
# a read-only bind mount would make the links cross mounts (EXDEV)
if mountpoint -q -- "$DIR" 2>/dev/null; then
  umount -- "$DIR" || exit "$STALE_EXIT"
fi
cp -al -- "$DIR" "$STAGE" 2>/dev/null || exit "$STALE_EXIT"
cd -- "$STAGE" && rm -f -- ".git/$SENT_FILE" && xargs -0 -r rm -rf --
