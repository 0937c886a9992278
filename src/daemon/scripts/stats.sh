#!/bin/sh
# One guest read per stats sample: memory, uptime and the root filesystem in a
# single channel (each channel costs ~150 ms under TCG). Takes no values.
cat /proc/meminfo /proc/uptime
df -kP /
