# shellcheck shell=bash
# The status of several sessions in one round trip (after alive.sh and
# status-report.sh; run with bash -s): one line per state dir of DIRS, in
# their order, each as status.sh prints it.
# Given: DIRS (array of state dirs).
: "${DIRS[0]?}"
OUT=()
pending=("${!DIRS[@]}")
# A process that just ended needs a moment for its runner to record the exit:
# those not known yet are asked again together, not one after another.
i=0
while [ "${#pending[@]}" -gt 0 ] && [ "$i" -lt 20 ]; do
  [ "$i" -gt 0 ] && sleep 0.1
  left=()
  for k in "${pending[@]}"; do
    # shellcheck disable=SC2034 # _status reads it
    DIR=${DIRS[k]}
    if _status; then OUT[k]=$STATUS; else left+=("$k"); fi
  done
  pending=("${left[@]}")
  i=$((i + 1))
done
for k in "${!DIRS[@]}"; do
  echo "${OUT[k]:-gone}"
done
