#!/usr/bin/env python
"""Time of one bootstrap replicate's fit (resampling counts as weights) of ``logistic``, ``pca``
and ``kmeans`` on read-only n x p float64 data, for two or more checkouts of hpcml side by
side (docs/benchmarks.md, "Memory: data once per machine"): each fit runs in a fresh Python
process, the checkouts alternate, and the median of ``--repeats`` is reported with its ratio
to the first checkout's.

    python scripts/bench_weighted_fits.py --repo /path/to/before --repo . [--rows 400000] [--cols 100]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIT = """
import time, numpy as np
from hpcml.models.base import Dataset, FitContext, get_model
rng = np.random.default_rng(0)
X = rng.standard_normal(({n}, {p})) * np.linspace(1, 2, {p}) + 0.5
y = (X @ np.linspace(-1, 1, {p}) / 10 + rng.standard_normal({n}) > 0).astype(float)
X.flags.writeable = False
w = np.bincount(rng.integers(0, {n}, {n}), minlength={n}).astype(float)
model = get_model({kind!r})
params = model.Params(**{params!r})
data = Dataset(X=X, y=y if {kind!r} == "logistic" else None, features=[f"x{{j}}" for j in range({p})])
t0 = time.perf_counter()
model.fit(params, data, w, FitContext(rng=np.random.default_rng(1)))
print(time.perf_counter() - t0)
"""
PARAMS = {"logistic": {}, "pca": {}, "kmeans": {"k": 5, "n_init": 1}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, action="append", help="a checkout of hpcml (give two or more)")
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="+", default=list(PARAMS), choices=list(PARAMS))
    args = ap.parse_args()
    repos = [r.resolve() for r in (args.repo or [ROOT])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = {}
    for kind in args.only:
        code = FIT.format(n=args.rows, p=args.cols, kind=kind, params=PARAMS[kind])
        times = {str(r): [] for r in repos}
        for _ in range(args.repeats):
            for r in repos:
                res = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(r)}, cwd="/",
                                     capture_output=True, text=True, check=True)
                times[str(r)].append(float(res.stdout.split()[-1]))
        med = {r: statistics.median(t) for r, t in times.items()}
        first = med[str(repos[0])]
        out[kind] = {r: {"median_s": round(m, 3), "ratio": round(m / first, 2)} for r, m in med.items()}
    print(json.dumps({"rows": args.rows, "cols": args.cols, "load": os.getloadavg(), "fits": out}, indent=1))


if __name__ == "__main__":
    main()
