"""Per-call cost of a no-op Python function: hpcml.map vs joblib.Parallel vs ProcessPoolExecutor.map.

    python scripts/bench_map.py [--calls 10000] [--workers 2] [--repeats 3]
    python scripts/bench_map.py --first [--calls 1000] [--repeats 7] [--before /older/checkout]

All three run side by side in one process, interleaved, each on ``--workers`` processes;
each timing is end to end (pool start included, as a user's one call would pay it). The
first round warms every path (imports, forkserver) and is not counted. Prints a Markdown table
of the median seconds and the ratios to joblib.

``--first``: the first call of a fresh process instead, ``hpcml.map`` against joblib's first
``Parallel`` call: each in its own process, timed from before its import to the call's return
(wall; hpcml's workers are not its children, so their CPU time cannot be counted alike), interleaved round by round after a
warm-up round (the file cache), with ``--before`` another checkout's ``hpcml.map`` too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor


def noop(x):
    return x


def run_hpcml(calls: int, workers: int) -> list:
    import hpcml

    return hpcml.map(noop, range(calls), workers=workers)


def run_joblib(calls: int, workers: int) -> list:
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers)(delayed(noop)(i) for i in range(calls))


def run_pool(calls: int, workers: int) -> list:
    # chunksize as joblib's auto-batching would pick for tiny tasks; 1 (the default) is far slower
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(noop, range(calls), chunksize=max(1, calls // (8 * workers))))


FIRST = r"""
import json, sys, time
t0 = time.perf_counter()
def noop(x):
    return x
n, side = int(sys.argv[1]), sys.argv[2]
if side == "joblib":
    from joblib import Parallel, delayed
    out = Parallel(n_jobs=2)(delayed(noop)(i) for i in range(n))
else:
    import hpcml
    out = hpcml.map(noop, range(n), workers=2)
assert out == list(range(n))
print(json.dumps(time.perf_counter() - t0))
"""


def cached_bytecode_env(cache: str, **extra: str) -> dict[str, str]:
    """The environment of a timed process: Python's bytecode cache on, kept in ``cache`` (no
    checkout is written to), as an installed package has it. With PYTHONDONTWRITEBYTECODE
    set (as on the development machines) every process would compile every hpcml module again,
    which the peers, installed with their bytecode, never pay."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": cache, **extra}


def first_calls(args) -> None:
    """The first call of a fresh process, each side in its own (``--first``)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sides = {"hpcml.map": ("hpcml", here), "joblib.Parallel": ("joblib", here)}
    if args.before:
        sides[f"hpcml.map, {args.before}"] = ("hpcml", args.before)
    wall: dict[str, list[float]] = {name: [] for name in sides}
    load = os.getloadavg()[0]
    cache = tempfile.mkdtemp(prefix="bench-map-pycache-")
    for round_ in range(args.repeats + 1):  # round 0 fills the bytecode and file caches
        for name, (side, path) in sides.items():
            out = subprocess.run([sys.executable, "-c", FIRST, str(args.calls), side], cwd=tempfile.gettempdir(),
                                 env=cached_bytecode_env(cache, PYTHONPATH=path), capture_output=True, text=True,
                                 check=True)
            if round_:
                wall[name].append(json.loads(out.stdout))
    shutil.rmtree(cache, ignore_errors=True)
    print(f"first call of a process, {args.calls} no-op calls on 2 workers; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; median of {args.repeats} interleaved rounds\n")
    ref = statistics.median(wall["joblib.Parallel"])
    print("| way | seconds, median (range) | ratio to joblib |")
    print("|---|---:|---:|")
    for name, ts in wall.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} ({min(ts):.2f}-{max(ts):.2f}) | {med / ref:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first", action="store_true", help="the first call of a fresh process, against joblib's")
    parser.add_argument("--before", help="with --first: another checkout's hpcml.map too")
    args = parser.parse_args()
    if args.first:
        first_calls(args)
        return
    ways = {"hpcml.map": run_hpcml, "joblib.Parallel": run_joblib, "ProcessPoolExecutor.map": run_pool}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.repeats + 1):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            out = fn(args.calls, args.workers)
            seconds = time.perf_counter() - t0
            assert out == list(range(args.calls)), name
            if round_:
                times[name].append(seconds)
    ref = statistics.median(times["joblib.Parallel"])
    print(f"{args.calls} no-op calls on {args.workers} workers, median of {args.repeats} interleaved runs\n")
    print("| way | seconds | per call (µs) | ratio to joblib |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {med / args.calls * 1e6:.1f} | {med / ref:.2f}x |")


if __name__ == "__main__":
    main()
