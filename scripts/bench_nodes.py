"""The README's diabetes OLS bootstrap with Dask workers on one compute node vs on two, on the
simulated cluster of ``tests/cluster`` (as root).

    .venv/bin/python scripts/bench_nodes.py [--repeats 3] [--workers 2] [--replicates 1000]

Builds the three-node cluster (``scripts/cluster_up.sh``: nodes head, node1, node2), starts a
dask scheduler on head and, in turn, ``--workers`` single-threaded workers

- on node1 only, and
- split between node1 and node2 (half on each),

then times ``hpcml run`` on head (the driver) of ``docs/examples/bootstrap.yaml`` with
``backend: {name: dask, address: ...}`` and its run directory on the shared file system, the
two layouts interleaved, ``--repeats`` times each after one untimed warm-up run each. Every
run's results are checked to be bit-identical to the first one's.

The simulated nodes are namespaces of one machine: they share its cores (two, on the machine
these numbers were taken on), so spreading the same workers over two nodes cannot be faster.
What the ratio shows is the cost of spreading: traffic over the simulated network (a bridge
between namespaces) rather than within one node, and nothing else. Removes the cluster at the
end (``scripts/cluster_down.sh``), whatever happens.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from cluster.conftest import IP, Cluster, cannot_build  # noqa: E402  (the simulated cluster of the tests)

PYTHON = sys.executable


def start_dask(cluster: Cluster, layout: dict[str, int], tag: str) -> tuple[str, list]:
    """A scheduler on head and ``layout[node]`` single-threaded workers on each node."""
    port = 8786 + int(tag[-2:], 16) % 100
    address = f"tcp://{IP['head']}:{port}"
    sched = cluster.spawn("head", [PYTHON, "-m", "distributed.cli.dask_scheduler", "--host", IP["head"],
                                   "--port", str(port), "--no-dashboard", "--dashboard-address",
                                   f"{IP['head']}:0"], f"bench-{tag}-scheduler")
    procs = [sched]
    cluster.wait_log(f"bench-{tag}-scheduler", "Scheduler at", proc=sched)
    for node, n in layout.items():
        procs.append(cluster.spawn(node, [PYTHON, "-m", "distributed.cli.dask_worker", address, "--nworkers", str(n),
                                          "--nthreads", "1", "--no-dashboard", "--local-directory",
                                          "/tmp/dask-worker"], f"bench-{tag}-{node}"))
    for node, proc in zip(layout, procs[1:]):
        cluster.wait_log(f"bench-{tag}-{node}", "Registered to", proc=proc)
    return address, procs


def timed_run(cluster: Cluster, folder: Path, address: str, replicates: int) -> tuple[float, bytes]:
    spec = yaml.safe_load((ROOT / "docs" / "examples" / "bootstrap.yaml").read_text())
    spec["plan"]["bootstrap"]["replicates"] = replicates
    spec["backend"] = {"name": "dask", "address": address}
    spec["output"] = str(folder / "run")
    folder.mkdir(parents=True)
    (folder / "job.yaml").write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    proc = cluster.hpcml("head", "run", folder / "job.yaml", "-q", "--no-plots", timeout=1200)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"hpcml run failed:\n{proc.stdout}\n{proc.stderr}")
    import pandas as pd

    res = pd.read_parquet(folder / "run" / "results.parquet").drop(columns=["seconds", "attempt", "traceback"], errors="ignore")
    return seconds, res.sort_values("task_index").to_csv(index=False).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="dask workers in all (even: half per node on two nodes)")
    ap.add_argument("--replicates", type=int, default=1000)
    args = ap.parse_args()
    why = cannot_build()
    if why:
        sys.exit(f"bench_nodes: {why}")
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:4]}"
    state = Path("/var/tmp") / f"hpcml-bench-{tag}"
    (state / "shared").mkdir(parents=True)
    (state / "home").mkdir()
    cluster = Cluster(state, f"hb{tag[-9:]}")
    half = args.workers // 2
    layouts = {"node1 only": {"node1": args.workers},
               "node1 + node2": {"node1": args.workers - half, "node2": half}}
    times: dict[str, list[float]] = {name: [] for name in layouts}
    first: bytes | None = None
    try:
        cluster.up()
        for round_ in range(args.repeats + 1):  # round 0: the warm-up of each layout, untimed
            for i, (name, layout) in enumerate(layouts.items()):
                address, procs = start_dask(cluster, layout, f"{round_}{i}{uuid.uuid4().hex[:2]}")
                try:
                    seconds, results = timed_run(cluster, state / "shared" / f"r{round_}-{i}", address,
                                                 args.replicates)
                finally:
                    for proc in reversed(procs):
                        cluster.stop(proc)
                first = first or results
                if results != first:
                    raise RuntimeError(f"{name}: results differ from the first run's")
                if round_:
                    times[name].append(seconds)
                print(f"{'warm-up' if not round_ else f'repeat {round_}'}: {name}: {seconds:.2f} s", flush=True)
    finally:
        cluster.down()
        subprocess.run(["rm", "-rf", str(state)], check=False)
    one, two = (statistics.median(times[name]) for name in layouts)
    load = os.getloadavg()
    print(f"\ndiabetes OLS bootstrap, {args.replicates} replicates, {args.workers} dask workers (1 thread each); "
          f"hpcml run on head, wall time, median of {args.repeats}")
    print(f"| layout | wall time (s) | all runs (s) |\n| --- | ---: | --- |")
    for name in layouts:
        print(f"| {name} | {statistics.median(times[name]):.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    print(f"two nodes / one node: {two / one:.2f}x; results bit-identical in every run")
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores; the "
          "simulated nodes share this machine's cores, so no speed-up is expected: the ratio is the cost of "
          "spreading the workers over two nodes")


if __name__ == "__main__":
    main()
