#!/usr/bin/env bash
# Starts a one-node Slurm (munged + slurmctld + slurmd) on this machine, as root.
# Idempotent: daemons already running are left alone, and only the ones this script
# starts get their pids recorded in $STATE_DIR, so slurm_stop.sh stops exactly those.
# There is no systemd on these machines, hence daemons are started directly.
# Env: HPCML_SLURM_TIMEOUT (s, default 60), HPCML_SLURMCTLD_PORT / HPCML_SLURMD_PORT.
set -euo pipefail

STATE_DIR=/run/hpcml-slurm
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_PIDFILE=/run/slurmctld.pid
SLURMD_PIDFILE=/run/slurmd.pid
MUNGE_PIDFILE=/run/munge/munged.pid
TIMEOUT=${HPCML_SLURM_TIMEOUT:-60}
CTLD_PORT=${HPCML_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${HPCML_SLURMD_PORT:-6818}
# Short name: slurmd matches its NodeName against `hostname -s`.
HOST=$(hostname -s)

die() {
  echo "slurm_start: $*" >&2
  for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
    [ -r "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (writes /etc/slurm, starts daemons)"
for b in munged slurmctld slurmd scontrol sinfo; do
  command -v "$b" >/dev/null || die "$b not found; run scripts/install_system.sh"
done

mkdir -p "$STATE_DIR"
# Serialise concurrent callers (several test sessions may start Slurm at once).
# Daemons are started with 9>&-: an inherited lock fd would hold the lock forever.
exec 9>"$STATE_DIR/lock"
flock -w "$TIMEOUT" 9 || die "another slurm_start.sh holds $STATE_DIR/lock"

# alive PIDFILE NAME: the pid in PIDFILE is a live process called NAME (guards pid reuse).
alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# --- configuration -------------------------------------------------------------------
# --all: plain nproc follows OMP_NUM_THREADS and the CPU affinity of whoever runs this script.
ncpu=$(nproc --all)
mem_mb=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
# Stay ~10% below physical memory: a RealMemory above what slurmd measures drains the node.
real_mem=$(( mem_mb * 9 / 10 ))

tmp_conf=$(mktemp)
trap 'rm -f "$tmp_conf"' EXIT
cat >"$tmp_conf" <<EOF
# Written by hpcml scripts/slurm_start.sh: a one-node cluster on $HOST.
ClusterName=local
# NodeAddr/controller address pinned to loopback so nothing depends on DNS.
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
# linuxproc/task none: no cgroup support needed (containers often lack it).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that gives no --mem is allocated ALL the node's memory, so such jobs
# run one at a time even with free cores.
DefMemPerCPU=$(( real_mem / ncpu ))
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PIDFILE
SlurmdPidFile=$SLURMD_PIDFILE
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# 2: a node that was DOWN returns to service as soon as it registers with a valid config.
ReturnToService=2
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$ncpu RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$CONF_DIR"
conf_changed=0
if ! cmp -s "$tmp_conf" "$CONF"; then
  # Keep someone else's config rather than silently destroying it.
  [ -f "$CONF" ] && ! grep -q '^# Written by hpcml' "$CONF" && cp -p "$CONF" "$CONF.hpcml-bak"
  install -m 644 "$tmp_conf" "$CONF"
  conf_changed=1
fi

mkdir -p "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
chmod 755 /var/spool/slurmctld /var/spool/slurmd

# --- munge ---------------------------------------------------------------------------
# Packages create the munge user and dirs; make sure of them anyway (fresh containers).
install -d -o munge -g munge -m 700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 711 /var/lib/munge
install -d -o munge -g munge -m 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

started=()
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  :  # a munged is already answering on the socket
else
  # Stale socket/pid from a killed munged would make the new one refuse to start.
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PIDFILE"
  # munged must run as the key's owner; it forks and writes its own pid file.
  runuser -u munge -- /usr/sbin/munged 9>&- || die "munged failed to start"
  for _ in $(seq 50); do alive "$MUNGE_PIDFILE" munged && break; sleep 0.1; done
  alive "$MUNGE_PIDFILE" munged || die "munged did not write $MUNGE_PIDFILE"
  cp "$MUNGE_PIDFILE" "$STATE_DIR/munged.pid"
  started+=(munged)
fi

# --- slurmctld / slurmd ----------------------------------------------------------------
if alive "$CTLD_PIDFILE" slurmctld; then
  # Running with an older config of ours: make it re-read (node/port changes need a restart).
  [ "$conf_changed" -eq 1 ] && { scontrol reconfigure || true; }
else
  slurmctld 9>&- || die "slurmctld failed to start"
  for _ in $(seq 100); do alive "$CTLD_PIDFILE" slurmctld && break; sleep 0.1; done
  alive "$CTLD_PIDFILE" slurmctld || die "slurmctld did not stay up"
  cp "$CTLD_PIDFILE" "$STATE_DIR/slurmctld.pid"
  started+=(slurmctld)
fi

if ! alive "$SLURMD_PIDFILE" slurmd; then
  slurmd 9>&- || die "slurmd failed to start"
  for _ in $(seq 100); do alive "$SLURMD_PIDFILE" slurmd && break; sleep 0.1; done
  alive "$SLURMD_PIDFILE" slurmd || die "slurmd did not stay up"
  cp "$SLURMD_PIDFILE" "$STATE_DIR/slurmd.pid"
  started+=(slurmd)
fi

# --- wait for the node -----------------------------------------------------------------
t0=$SECONDS
resumed=-100
state=""
while (( SECONDS - t0 < TIMEOUT )); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    down*|drain*|fail*)
      # Leftover state from an earlier run (e.g. killed slurmd): put it back in service.
      # Retried every ~5 s: a resume before slurmd has registered does not stick.
      if (( SECONDS - resumed >= 5 )); then
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        resumed=$SECONDS
      fi ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mixed|allocated|completing) ;;
  *) die "node $HOST not ready after ${TIMEOUT}s (state: '${state:-none}')" ;;
esac

if [ ${#started[@]} -eq 0 ]; then
  echo "slurm is up on $HOST (already running; node $state)"
else
  echo "slurm is up on $HOST (started ${started[*]} in $((SECONDS))s; node $state)"
fi
