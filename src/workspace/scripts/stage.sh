# shellcheck shell=bash
# Workspace prepare, full copy (StageCommand, run as `bash -c` with a tar
# stream on stdin; extract.sh follows): refuses a guest path that exists and
# is neither empty nor an earlier workspace, so a prepare never replaces
# someone's directory, then makes the stage dir.
# Given: DIR (the guest path), STAGE, BASE_FILE (in .git, marks a banger
# workspace), NOT_A_WORKSPACE_EXIT.
: "${DIR:?}" "${STAGE:?}" "${BASE_FILE:?}" "${NOT_A_WORKSPACE_EXIT:?}"
if [ -e "$DIR" ] || [ -L "$DIR" ]; then
  if [ ! -d "$DIR" ] || [ -L "$DIR" ]; then
    echo "$DIR exists and is not a directory" >&2
    exit "$NOT_A_WORKSPACE_EXIT"
  fi
  if [ ! -e "$DIR/.git/$BASE_FILE" ] && [ -n "$(ls -A -- "$DIR")" ]; then
    echo "$DIR exists and is not a banger workspace: remove it or pick another --guest-path" >&2
    exit "$NOT_A_WORKSPACE_EXIT"
  fi
fi
mkdir -p -- "$(dirname -- "$STAGE")" || exit 1
mkdir -- "$STAGE" || exit 1
