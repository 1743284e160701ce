# Sourced by slurm_stop.sh and spark_stop.sh.
# stop_pid PREFIX NAME PID WAIT_S: SIGTERM the daemon, give it WAIT_S seconds, then SIGKILL.
stop_pid() {
  local prefix=$1 name=$2 pid=$3 wait=$4
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((wait * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "$prefix: $name ($pid) ignored SIGTERM for ${wait}s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}
