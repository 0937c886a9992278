# shellcheck shell=bash
# A restored guest's clock stands at the instant its state was saved: set it
# to the host's. HOST_EPOCH is the host's time (seconds.nanoseconds, UTC) when
# the script was sent; the channel's latency is the error left (~0.1 s).
# shellcheck disable=SC2154 # HOST_EPOCH is set by renderScript
date -u -s "@$HOST_EPOCH" >/dev/null
# keep the RTC in step too, where the guest has one it may write
hwclock --systohc >/dev/null 2>&1 || true
