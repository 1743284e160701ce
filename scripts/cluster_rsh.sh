#!/usr/bin/env bash
# Open MPI's rsh agent on the simulated cluster (scripts/cluster_up.sh):
#   cluster_rsh.sh [ssh options] HOST COMMAND...
# runs COMMAND (one shell string, as ssh would) inside HOST's namespaces, with the caller's
# environment. The cluster's state directory comes from $HPCML_CLUSTER_STATE.
set -uo pipefail
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done   # ssh-style options mean nothing here
host=$1; shift
pid=$(cat "$HPCML_CLUSTER_STATE/nodes/$host/pid" 2>/dev/null) || { echo "cluster_rsh: no node $host" >&2; exit 255; }
exec nsenter -t "$pid" -u -m -n --wd="$HPCML_CLUSTER_STATE/shared" /bin/sh -c "$*"
