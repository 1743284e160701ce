#!/usr/bin/env python
"""A vectorized bootstrap of a trimmed mean: ``hpcml.bootstrap(..., vectorized=True)`` vs
``scipy.stats.bootstrap(..., vectorized=True, batch=64)``, both on one worker (results: docs/benchmarks.md).

    python scripts/bench_vectorized.py [--rows 1000] [--replicates 2000] [--rounds 5] [--before /older/checkout]

Each side runs in its own fresh process per round (the sides, and with ``--before`` the other
checkout's hpcml, interleaved round by round, after a warm-up round that is not counted): the first call of the process (``scipy.stats``
imported beforehand by both: the statistic is its ``trim_mean``), then the median of 5 more
calls. Both compute BCa intervals (scipy with ``method="BCa"``); hpcml its percentile intervals too.
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

from bench_map import cached_bytecode_env  # scripts/ is on the path of a script run from it

CHILD = r"""
import json, sys, time
from functools import partial
import numpy as np
import scipy.stats as st
rows, reps, side = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = np.random.default_rng(1).standard_normal(rows)
stat = partial(st.trim_mean, proportiontocut=0.1)
if side == "scipy":
    call = lambda: st.bootstrap((x,), stat, n_resamples=reps, batch=64, vectorized=True, random_state=0,
                                method="BCa").standard_error
else:
    import hpcml
    call = lambda: hpcml.bootstrap(stat, x, replicates=reps, workers=1, vectorized=True).se
times = []
for _ in range(6):
    t0 = time.perf_counter()
    se = call()
    times.append(time.perf_counter() - t0)
print(json.dumps({"first": times[0], "later": sorted(times[1:])[2], "se": se}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--replicates", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", help="another checkout whose hpcml runs alongside")
    args = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sides = {"hpcml.bootstrap, this checkout": ("hpcml", here), "scipy.stats.bootstrap": ("scipy", here)}
    if args.before:
        sides[f"hpcml.bootstrap, {args.before}"] = ("hpcml", args.before)
    got: dict[str, list[dict]] = {name: [] for name in sides}
    load = os.getloadavg()[0]
    cache = tempfile.mkdtemp(prefix="bench-vectorized-pycache-")
    for round_ in range(args.rounds + 1):  # round 0 fills the bytecode and file caches
        for name, (side, path) in sides.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.rows), str(args.replicates), side],
                                 cwd=tempfile.gettempdir(), env=cached_bytecode_env(cache, PYTHONPATH=path),
                                 capture_output=True, text=True, check=True).stdout
            if round_:
                got[name].append(json.loads(out))
    shutil.rmtree(cache, ignore_errors=True)
    print(f"{args.rows} rows, {args.replicates} replicates, 1 worker; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; median of {args.rounds} rounds\n")
    ref = {k: statistics.median(r[k] for r in got["scipy.stats.bootstrap"]) for k in ("first", "later")}
    print("| what | first call (s) | ratio to scipy | later calls (s) | ratio to scipy | SE |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in got.items():
        first, later = (statistics.median(r[k] for r in rows) for k in ("first", "later"))
        print(f"| {name} | {first:.3f} | {first / ref['first']:.2f}x | {later:.3f} | {later / ref['later']:.2f}x | "
              f"{rows[0]['se']:.6f} |")


if __name__ == "__main__":
    main()
