#!/usr/bin/env bash
# Stops the daemons scripts/slurm_start.sh started (and only those), by the pids it
# recorded in $STATE_DIR. Daemons it found already running are left alone. Idempotent.
# Env: HPCML_SLURM_STOP_TIMEOUT (s to wait after SIGTERM before SIGKILL, default 15).
set -euo pipefail
source "$(dirname "$0")/stop_pid.sh"

STATE_DIR=/run/hpcml-slurm
WAIT=${HPCML_SLURM_STOP_TIMEOUT:-15}

[ -d "$STATE_DIR" ] || { echo "slurm_stop: nothing to stop"; exit 0; }
# Same lock as slurm_start.sh, so a stop never interleaves with a start.
exec 9>"$STATE_DIR/lock"
flock -w 60 9 || { echo "slurm_stop: $STATE_DIR/lock is held" >&2; exit 1; }

stopped=()
# slurmd before slurmctld (so it does not log a lost controller), munged last (both use it).
for name in slurmd slurmctld munged; do
  f=$STATE_DIR/$name.pid
  [ -f "$f" ] || continue
  pid=$(tr -dc '0-9' <"$f")
  # Check the process name too: after a reboot or crash the pid may belong to another process.
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
    stop_pid slurm_stop "$name" "$pid" "$WAIT"
    stopped+=("$name($pid)")
  fi
  rm -f "$f"
done

if [ ${#stopped[@]} -eq 0 ]; then
  echo "slurm_stop: nothing to stop"
else
  echo "slurm_stop: stopped ${stopped[*]}"
fi
