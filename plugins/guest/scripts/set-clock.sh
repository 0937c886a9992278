# shellcheck shell=bash
# A restored guest's clock stands at the instant its state was saved: set it
# to the host's. Guest side on bash builtins only (no fork between reading the
# clock and answering): we say we are ready, then answer each of the host's
# pings with our clock; the host answers with the offset it saw in the
# quickest exchange (its clock at that round trip's midpoint minus ours), in
# microseconds. The host keeps our stdin open (and silent) until we exit.
# What sets the clock follows: clock-by-date.sh, or for a clone
# clone-identity.sh.
# (-t: a host that went away, or gave up on us, never leaves this waiting)
echo ready
for _ in 1 2 3; do
  IFS= read -r -t 60 _ || exit 1
  echo "$EPOCHREALTIME"
done
IFS= read -r -t 60 offset_us || exit 1
case $offset_us in '' | *[!0-9-]*) echo "bad offset: $offset_us" >&2; exit 2 ;; esac
