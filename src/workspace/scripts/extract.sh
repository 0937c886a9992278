# shellcheck shell=bash
# Untar stdin into STAGE (after stage.sh or delta-stage.sh; `-i` because the
# stream is two archives back to back: the files, then .git/config and the
# base marker). When tar fails, exit DISK_FULL_EXIT if the stage's filesystem
# is out of blocks (under 256 KiB available) or inodes. Checked before the
# stage is removed, so the fs is still as full as tar found it; tar's own
# message cannot be relied on: a short write is reported as "Wrote only 512
# of 10240 bytes", without the errno. The parent is asked, as the stage may
# be what could not be created; filesystems without an inode count (btrfs
# reports 0 total) never count as out of inodes.
# Given: STAGE, DISK_FULL_EXIT.
: "${STAGE:?}" "${DISK_FULL_EXIT:?}"
tar -x -i --no-same-owner -f - -C "$STAGE" && exit 0
RC=$?
P=$(dirname -- "$STAGE")
if df -Pk -- "$P" 2>/dev/null | awk 'NR == 2 && $4 < 256 { f = 1 } END { exit !f }' ||
  df -Pi -- "$P" 2>/dev/null | awk 'NR == 2 && $2 > 0 && $4 == 0 { f = 1 } END { exit !f }'; then
  exit "$DISK_FULL_EXIT"
fi
exit "$RC"
