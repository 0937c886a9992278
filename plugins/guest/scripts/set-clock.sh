# shellcheck shell=bash
# A restored guest's clock stands at the instant its state was saved: set it
# to the host's. One exchange over this channel, guest side on bash builtins
# only (no fork between reading the clock and answering): the host sends a
# line, we answer with our clock, the host answers with the offset it sees
# (its clock at the midpoint of its round trip minus ours) in microseconds.
IFS= read -r _ || exit 1
echo "$EPOCHREALTIME"
IFS= read -r offset_us || exit 1
case $offset_us in '' | *[!0-9-]*) echo "bad offset: $offset_us" >&2; exit 2 ;; esac
now=${EPOCHREALTIME/./}
t=$((now + offset_us))
date -u -s "@$((t / 1000000)).$(printf '%06d' $((t % 1000000)))" >/dev/null
# keep the RTC in step too, where the guest has one it may write
hwclock --systohc >/dev/null 2>&1 || true
