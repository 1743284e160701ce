#!/usr/bin/env bash
# A simulated cluster on this machine, for tests/cluster (as root): every node is a Linux
# network + UTS + mount namespace, wired to a bridge that lives in a network namespace of its
# own, so the machine's own network namespace (interfaces, routes, firewall) is never touched.
#
#   cluster_up.sh STATE PREFIX [NODE...]      (default nodes: head node1 node2)
#
#   netns PREFIX-sw     bridge br0 (the switch)
#   netns PREFIX-NODE   hostname NODE, eth0 10.99.0.(10+i)/24, a default route via eth0
#
# Each node's mount namespace (private propagation) gets its own /tmp (STATE/nodes/NODE/tmp)
# and /dev/shm (a tmpfs), the cluster's /etc/hosts, /etc/slurm and /etc/munge (one munge key,
# not the machine's), and its own munge state; the rest of the file system, STATE included, is
# shared like a cluster's shared file system. STATE must therefore not be under /tmp.
# A `sleep infinity` holds the namespaces; its pid is in STATE/nodes/NODE/pid. A node whose
# holder is gone (a crash) is built again by running this script for it.
# cluster_down.sh removes everything, by pid and `ip netns del`.
set -euo pipefail
STATE=$1 PREFIX=$2; shift 2
NODES=("$@"); [ ${#NODES[@]} -gt 0 ] || NODES=(head node1 node2)
ALL=(head node1 node2)
case "$STATE" in /tmp|/tmp/*) echo "cluster_up: STATE ($STATE) must not be under /tmp: every node has its own /tmp" >&2; exit 2 ;; esac

mkdir -p "$STATE/etc" "$STATE/slurm" "$STATE/munge" "$STATE/nodes" "$STATE/logs"
chmod 755 "$STATE"
ip_of() { local i; for i in "${!ALL[@]}"; do [ "${ALL[$i]}" = "$1" ] && { echo "10.99.0.$((10 + i))"; return; }; done
          echo "cluster_up: unknown node $1" >&2; exit 2; }
{ echo "127.0.0.1 localhost"; for n in "${ALL[@]}"; do echo "$(ip_of "$n") $n"; done; } >"$STATE/etc/hosts"
if [ ! -s "$STATE/munge/munge.key" ]; then
  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
fi
if id munge >/dev/null 2>&1; then chown munge:munge "$STATE/munge" "$STATE/munge/munge.key"; fi
chmod 700 "$STATE/munge"; chmod 400 "$STATE/munge/munge.key"

sw=$PREFIX-sw
if ! ip netns list | grep -qw "$sw"; then
  ip netns add "$sw"
  ip netns exec "$sw" ip link set lo up
  ip netns exec "$sw" ip link add br0 type bridge
  ip netns exec "$sw" ip link set br0 up
fi

for n in "${NODES[@]}"; do
  ns=$PREFIX-$n N=$STATE/nodes/$n
  if ! ip netns list | grep -qw "$ns"; then
    ip netns add "$ns"
    # The veth pair is made inside the switch namespace with its peer moved straight into the node.
    ip netns exec "$sw" ip link add "v-$n" type veth peer name eth0 netns "$ns"
    ip netns exec "$sw" ip link set "v-$n" master br0 up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$(ip_of "$n")/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    # Real nodes have a default route; address discovery that asks the kernel for the way out
    # (a UDP connect) finds eth0 through it. Nothing answers behind it.
    ip netns exec "$ns" ip route add default dev eth0
  fi
  # A crashed node's holder may linger a moment as a zombie (not yet reaped): that is no node.
  if [ -s "$N/pid" ] && [ "$(awk '{print $3}' "/proc/$(cat "$N/pid")/stat" 2>/dev/null)" ] \
     && [ "$(awk '{print $3}' "/proc/$(cat "$N/pid")/stat" 2>/dev/null)" != Z ]; then continue; fi
  mkdir -p "$N/tmp" "$N/run-munge" "$N/var-lib-munge" "$N/var-log-munge"
  chmod 1777 "$N/tmp"
  if id munge >/dev/null 2>&1; then chown munge:munge "$N/run-munge" "$N/var-lib-munge" "$N/var-log-munge"; fi
  chmod 755 "$N/run-munge"; chmod 711 "$N/var-lib-munge"; chmod 700 "$N/var-log-munge"
  rm -f "$N/pid"
  setsid ip netns exec "$ns" unshare --uts --mount --propagation private --fork sh -c "
    set -e
    hostname $n
    mount --bind $N/tmp /tmp
    mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm
    mount --bind $STATE/etc/hosts /etc/hosts
    mkdir -p /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge
    mount --bind $STATE/slurm /etc/slurm
    mount --bind $STATE/munge /etc/munge
    mount --bind $N/run-munge /run/munge
    mount --bind $N/var-lib-munge /var/lib/munge
    mount --bind $N/var-log-munge /var/log/munge
    # ip netns exec gave the node a fresh /sys without cgroup mounts; slurmd needs them
    # (best effort: only the Slurm tests use them).
    if mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup 2>/dev/null; then
      for c in cpu cpuacct cpuset memory devices freezer blkio pids name=systemd; do
        d=\${c#name=}; mkdir -p /sys/fs/cgroup/\$d; mount -t cgroup -o \$c cgroup /sys/fs/cgroup/\$d 2>/dev/null || true
      done
    fi
    echo \$\$ > $N/pid.tmp && mv $N/pid.tmp $N/pid
    exec sleep infinity
  " </dev/null >"$STATE/logs/$n.holder.log" 2>&1 &
  for _ in $(seq 100); do [ -s "$N/pid" ] && break; sleep 0.1; done
  [ -s "$N/pid" ] || { echo "cluster_up: node $n did not come up:" >&2; cat "$STATE/logs/$n.holder.log" >&2; exit 1; }
  echo "$n: pid $(cat "$N/pid"), $(nsenter -t "$(cat "$N/pid")" -u -n sh -c 'echo $(hostname) $(ip -br -4 addr show eth0)')"
done
