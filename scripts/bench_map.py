"""Per-call cost of a no-op Python function: hpcml.map vs joblib.Parallel vs ProcessPoolExecutor.map.

    python scripts/bench_map.py [--calls 10000] [--workers 2] [--repeats 3]

All three run side by side in one process, interleaved, each on ``--workers`` processes;
each timing is end to end (pool start included, as a user's one call would pay it). The
first round warms every path (imports, forkserver) and is not counted. Prints a Markdown table
of the median seconds and the ratios to joblib.
"""
from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
