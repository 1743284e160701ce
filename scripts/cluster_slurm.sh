#!/usr/bin/env bash
# A two-node Slurm on the simulated cluster of cluster_up.sh (as root):
#   cluster_slurm.sh STATE [NODE...]     (default: head node1 node2; a rebooted node again)
# munged on every node with the cluster's one key (each node its own socket, via its mount
# namespace), slurmctld on head, slurmd on node1 and node2. Every state, log and pid file is
# under STATE/slurm-state; the config is STATE/slurm/slurm.conf, seen as /etc/slurm/slurm.conf
# on every node. The daemons live in the nodes' namespaces: cluster_down.sh ends them.
set -euo pipefail
STATE=$1; shift
NODES=("$@"); [ ${#NODES[@]} -gt 0 ] || NODES=(head node1 node2)
S=$STATE/slurm-state
mkdir -p "$S/ctld" "$S/node1" "$S/node2" "$S/log"
cat >"$STATE/slurm/slurm.conf" <<EOF
# The simulated cluster of hpcml's tests: controller on head, compute nodes node1 and node2.
ClusterName=hpcmlsim
SlurmctldHost=head(10.99.0.10)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/%n/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
SlurmdTimeout=30
ReturnToService=2
MpiDefault=none
NodeName=node1 NodeAddr=10.99.0.11 CPUs=2 RealMemory=4000 State=UNKNOWN
NodeName=node2 NodeAddr=10.99.0.12 CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
on() { local n=$1; shift; nsenter -t "$(cat "$STATE/nodes/$n/pid")" -u -m -n --wd=/ "$@"; }
for n in "${NODES[@]}"; do
  if ! on $n sh -c 'munge -n 2>/dev/null | unmunge >/dev/null 2>&1'; then
    rm -f "$STATE/nodes/$n/run-munge/"*
    on $n runuser -u munge -- /usr/sbin/munged
  fi
  if [ $n = head ]; then on head slurmctld; else on $n slurmd -N $n; fi
done
for _ in $(seq 90); do
  s=$(on head sinfo -h -N -o '%N=%T' 2>/dev/null | sort | tr '\n' ' ')
  [ "$s" = "node1=idle node2=idle " ] && { echo "slurm up: $s"; exit 0; }
  sleep 1
done
echo "cluster_slurm: nodes not idle after 90 s: ${s:-no answer}" >&2
tail -n 20 "$S/log/"*.log >&2
exit 1
