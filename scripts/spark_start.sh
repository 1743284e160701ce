#!/usr/bin/env bash
# Starts a Spark standalone master and one worker on 127.0.0.1 from pyspark's bundled
# jars (no separate Spark install), prints the master URL. Idempotent: live daemons from
# an earlier run are kept. Stop with scripts/spark_stop.sh.
# Env: HPCML_VENV (default /work/main/.venv), HPCML_SPARK_DIR (logs+pids, default
# /tmp/hpcml-spark), HPCML_SPARK_PORT (7077), HPCML_SPARK_CORES (nproc),
# HPCML_SPARK_MEMORY (4g), HPCML_SPARK_TIMEOUT (s, 90).
set -euo pipefail

VENV=${HPCML_VENV:-/work/main/.venv}
DIR=${HPCML_SPARK_DIR:-/tmp/hpcml-spark}
PORT=${HPCML_SPARK_PORT:-7077}
CORES=${HPCML_SPARK_CORES:-$(nproc)}
MEMORY=${HPCML_SPARK_MEMORY:-4g}
TIMEOUT=${HPCML_SPARK_TIMEOUT:-90}
URL=spark://127.0.0.1:$PORT

die() {
  echo "spark_start: $*" >&2
  for f in "$DIR/master.log" "$DIR/worker.log"; do
    [ -r "$f" ] && { echo "--- tail $f" >&2; tail -n 25 "$f" >&2; }
  done
  exit 1
}

[ -x "$VENV/bin/python" ] || die "no python in $VENV (set HPCML_VENV)"
command -v java >/dev/null || [ -n "${JAVA_HOME:-}" ] || die "java not found (Spark needs Java 17+)"
SPARK_HOME=$("$VENV/bin/python" -c 'import pyspark,os;print(os.path.dirname(pyspark.__file__))') \
  || die "pyspark is not installed in $VENV"
export SPARK_HOME
mkdir -p "$DIR/work"

# Serialise concurrent callers; daemons get 9>&- so they do not inherit (and hold) the lock.
exec 9>"$DIR/lock"
flock -w "$TIMEOUT" 9 || die "another spark_start.sh holds $DIR/lock"

# alive NAME: $DIR/NAME.pid is a live JVM running Spark's NAME daemon (guards pid reuse).
alive() {
  local pid cls
  case $1 in master) cls=master.Master ;; worker) cls=worker.Worker ;; esac
  [ -s "$DIR/$1.pid" ] || return 1
  pid=$(tr -dc '0-9' <"$DIR/$1.pid")
  [ -n "$pid" ] && grep -qaF "org.apache.spark.deploy.$cls" "/proc/$pid/cmdline" 2>/dev/null
}

# running NAME: the daemon this script just launched still runs. Not alive(): right after
# `&` the child is still a copy of this shell, whose cmdline does not name the daemon yet.
running() {
  local pid state
  pid=$(tr -dc '0-9' <"$DIR/$1.pid")
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Loopback only: SPARK_LOCAL_IP is also the address the web UIs bind to (default 0.0.0.0).
export SPARK_LOCAL_IP=127.0.0.1
# The daemon web UIs cannot be switched off, so they get a random free port (--webui-port 0).
# maxRetries=0: if $PORT is taken, fail instead of silently moving to the next port.
export SPARK_MASTER_OPTS="-Dspark.port.maxRetries=0 -Dspark.master.rest.enabled=false ${SPARK_MASTER_OPTS:-}"
# Without conf/ Spark logs INFO to stderr, which is what the readiness check reads.
unset SPARK_CONF_DIR

# launch NAME ARGS...: start a daemon in its own session (survives the caller's terminal and
# process group), log to $DIR/NAME.log, record the pid. spark-class execs java, so $! is the JVM.
launch() {
  local name=$1; shift
  setsid "$SPARK_HOME/bin/spark-class" "$@" </dev/null >"$DIR/$name.log" 2>&1 9>&- &
  echo $! >"$DIR/$name.pid"
}

started=()
if ! alive master; then
  # A worker left from an older master would not re-register in time; restart it too.
  if alive worker; then kill "$(cat "$DIR/worker.pid")" 2>/dev/null || true; sleep 1; fi
  rm -f "$DIR/worker.pid"
  launch master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$PORT" --webui-port 0
  started+=(master)
  t0=$SECONDS
  until grep -q "Starting Spark master at $URL" "$DIR/master.log" 2>/dev/null; do
    running master || die "master exited (port $PORT busy?)"
    (( SECONDS - t0 < TIMEOUT )) || die "master not up after ${TIMEOUT}s"
    sleep 0.2
  done
fi

if ! alive worker; then
  launch worker org.apache.spark.deploy.worker.Worker "$URL" \
    --host 127.0.0.1 --webui-port 0 --cores "$CORES" --memory "$MEMORY" --work-dir "$DIR/work"
  started+=(worker)
  t0=$SECONDS
  # The worker logs this once the master has accepted it: the cluster can run executors.
  until grep -q "Successfully registered with master" "$DIR/worker.log" 2>/dev/null; do
    running worker || die "worker exited"
    (( SECONDS - t0 < TIMEOUT )) || die "worker not registered after ${TIMEOUT}s"
    sleep 0.2
  done
fi

# Status on stderr so that `url=$(spark_start.sh)` captures just the URL.
if [ ${#started[@]} -gt 0 ]; then
  echo "spark_start: started ${started[*]} in ${SECONDS}s (logs in $DIR)" >&2
else
  echo "spark_start: already running (logs in $DIR)" >&2
fi
echo "$URL"
