#!/usr/bin/env bash
# Remove the simulated cluster that cluster_up.sh built with PREFIX: every process in its
# network namespaces (by pid, from `ip netns pids`: node daemons, workers, the namespace
# holders), then the namespaces themselves (their veth pairs go with them).
#   cluster_down.sh PREFIX [NODE...]     (default: head node1 node2 and the switch)
set -uo pipefail
PREFIX=$1; shift
NODES=("$@"); ALL=0; [ ${#NODES[@]} -gt 0 ] || { NODES=(head node1 node2); ALL=1; }
have() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
for n in "${NODES[@]}"; do
  ns=$PREFIX-$n
  have "$ns" || continue
  for sig in TERM KILL; do
    pids=$(ip netns pids "$ns" | tr '\n' ' ')
    [ -n "${pids// /}" ] || break
    kill -"$sig" $pids 2>/dev/null
    for _ in $(seq 30); do [ -z "$(ip netns pids "$ns")" ] && break; sleep 0.1; done
  done
  left=$(ip netns pids "$ns" | tr '\n' ' ')
  [ -z "${left// /}" ] || echo "cluster_down: $ns still has processes $left" >&2
  ip netns del "$ns"
done
if [ $ALL = 1 ] && have "$PREFIX-sw"; then ip netns del "$PREFIX-sw"; fi
exit 0
