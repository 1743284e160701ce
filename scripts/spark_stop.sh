#!/usr/bin/env bash
# Stops the Spark master and worker that scripts/spark_start.sh started, by the pids it
# recorded in $HPCML_SPARK_DIR (default /tmp/hpcml-spark). Idempotent.
# Env: HPCML_SPARK_STOP_TIMEOUT (s to wait after SIGTERM before SIGKILL, default 15).
set -euo pipefail
source "$(dirname "$0")/stop_pid.sh"

DIR=${HPCML_SPARK_DIR:-/tmp/hpcml-spark}
WAIT=${HPCML_SPARK_STOP_TIMEOUT:-15}

[ -d "$DIR" ] || { echo "spark_stop: nothing to stop"; exit 0; }
# Same lock as spark_start.sh, so a stop never interleaves with a start.
exec 9>"$DIR/lock"
flock -w 60 9 || { echo "spark_stop: $DIR/lock is held" >&2; exit 1; }

stopped=()
# Worker first: stopping the master first makes the worker spin on reconnect attempts.
for name in worker master; do
  f=$DIR/$name.pid
  [ -f "$f" ] || continue
  pid=$(tr -dc '0-9' <"$f")
  cls=$([ "$name" = master ] && echo master.Master || echo worker.Worker)
  # Match the command line too: the pid may have been reused since spark_start.sh ran.
  if [ -n "$pid" ] && grep -qaF "org.apache.spark.deploy.$cls" "/proc/$pid/cmdline" 2>/dev/null; then
    stop_pid spark_stop "$name" "$pid" "$WAIT"
    stopped+=("$name($pid)")
  fi
  rm -f "$f"
done

if [ ${#stopped[@]} -eq 0 ]; then
  echo "spark_stop: nothing to stop"
else
  echo "spark_stop: stopped ${stopped[*]}"
fi
