#!/bin/bash
# One guest read per stats sample, in one SSH channel (each costs ~150 ms under
# TCG) and with bash builtins only: every process the guest starts costs
# 40-70 ms more. df (a process) runs only when the daemon asks (WITH_DF=1): a
# filesystem's use moves slowly, so it is read every few seconds, not every tick.
IFS= read -r -d '' mem < /proc/meminfo
IFS= read -r up < /proc/uptime
printf '%s\n%s\n' "$mem" "$up"
if [ "$WITH_DF" = 1 ]; then df -kP /; fi
