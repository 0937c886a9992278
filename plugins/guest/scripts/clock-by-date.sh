# shellcheck shell=bash
# shellcheck disable=SC2154 # offset_us is set by set-clock.sh, which runs first
# The clock of a restored VM (not a clone): set-clock.sh's offset applied by
# date. No hwclock --systohc: it busy-waits for a second boundary (0.8 s of
# CPU under TCG), and QEMU's RTC already follows the host's clock after a
# restore.
now=${EPOCHREALTIME/./}
t=$((now + offset_us))
printf -v frac '%06d' $((t % 1000000)) # -v: no subshell fork
date -u -s "@$((t / 1000000)).$frac" >/dev/null
