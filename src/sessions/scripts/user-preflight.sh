# shellcheck shell=bash
# Session start, stage "user" (run with bash -s after run-as.sh): fails with
# exit 1 and "no such user in the guest: X" (or group) on stderr unless
# RUN_USER resolves.
refuse() {
  echo "$1" >&2
  exit 1
}
run_as_prepare
