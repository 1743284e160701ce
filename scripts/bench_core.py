#!/usr/bin/env python
"""Core benchmarks, each side by side with its peer in one run (results: docs/benchmarks.md).

1. Per-task overhead on no-op tasks, local backend, 2 workers, vs joblib (loky) and
   concurrent.futures.ProcessPoolExecutor.
2. Efficiency on 2000 tasks of 5 ms (busy CPU) on 2 workers: ideal time / measured time.
3. Bootstrap OLS on 100,000 x 10, per replicate: hpcml (weights from bincount, weighted
   normal equations) vs a plain NumPy ``lstsq`` loop on resampled copies.

    python scripts/bench_core.py [--tasks 2000] [--noop 20000] [--replicates 100]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def _noop(i: int) -> int:
    return i


def hpcml_phase(n: int, ms: float, workers: int) -> tuple[float, float]:
    """(execution seconds with a warm pool, end-to-end seconds of hpcml.run)."""
    import hpcml
    from hpcml.backends.local import LocalBackend
    from hpcml.tasks.chunks import auto_chunk_size, make_chunks
    from hpcml.spec import load_job
    from hpcml.rundir.store import RunStore
    from hpcml.tasks.worker import WorkOrder

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"name": "bench", "data": {"source": "sklearn:iris"}, "model": {"kind": "sleep", "ms": ms},
                "plan": {"replicate": {"n": n}}, "backend": {"name": "local", "workers": workers},
                "output": f"{tmp}/run"}
        t0 = time.perf_counter()
        hpcml.run(spec, progress=False)
        end_to_end = time.perf_counter() - t0
        job = load_job(spec, output=f"{tmp}/phase")
        RunStore(job.output).prepare(job, resume=False)
        backend = LocalBackend(workers=workers)
        backend.start(job.to_json(), Path(tmp))
        try:
            warm = [WorkOrder(job.to_json(), f"{tmp}/phase", c) for c in make_chunks(list(range(2 * workers)), 1)]
            list(backend.run(warm))  # workers up and data loaded, as for joblib's warm pool below
            orders = [WorkOrder(job.to_json(), f"{tmp}/phase", c)
                      for c in make_chunks(list(range(n)), auto_chunk_size(n, workers))]
            t0 = time.perf_counter()
            results = list(backend.run(orders))
            phase = time.perf_counter() - t0
        finally:
            backend.stop()
        assert sum(len(r.ok) for r in results) == n
    return phase, end_to_end


def joblib_time(n: int, ms: float, workers: int) -> float:
    from joblib import Parallel, delayed

    fn = _noop if ms == 0 else _busy
    arg = (lambda i: i) if ms == 0 else (lambda i: ms)
    with Parallel(n_jobs=workers) as par:
        par(delayed(_noop)(i) for i in range(2 * workers))  # warm the pool
        t0 = time.perf_counter()
        par(delayed(fn)(arg(i)) for i in range(n))
        return time.perf_counter() - t0


def pool_time(n: int, ms: float, workers: int) -> float:
    fn = _noop if ms == 0 else _busy
    args = range(n) if ms == 0 else [ms] * n
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_noop, range(2 * workers)))
        t0 = time.perf_counter()
        list(pool.map(fn, args))
        return time.perf_counter() - t0


def bootstrap_ols(replicates: int, rows: int = 100_000, p: int = 10) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    import hpcml

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, p))
    y = X @ rng.standard_normal(p) + rng.standard_normal(rows)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/data.npy", np.column_stack([X, y]))
        spec = {"name": "bench-ols", "data": {"source": f"{tmp}/data.npy", "target": f"x{p}"},
                "model": {"kind": "ols"}, "plan": {"bootstrap": {"replicates": replicates}},
                "backend": {"name": "local", "workers": 1}, "output": f"{tmp}/run"}
        # Task time as recorded by each task (1 thread), and the whole run on 1 and 2 workers.
        res1 = hpcml.run(spec, progress=False)
        t0 = time.perf_counter()
        hpcml.run(spec, progress=False, workers=2, out=f"{tmp}/run2")
        wall2 = time.perf_counter() - t0
    A = np.column_stack([np.ones(rows), X])
    with threadpool_limits(1):
        t0 = time.perf_counter()
        for b in range(replicates):
            idx = rng.integers(0, rows, rows)
            np.linalg.lstsq(A[idx], y[idx], rcond=None)
        lstsq = (time.perf_counter() - t0) / replicates
    return {"hpcml_task_ms": 1000 * float(res1.results["seconds"].median()),
            "hpcml_2workers_wall_ms_per_replicate": 1000 * wall2 / replicates,
            "numpy_lstsq_copy_ms": 1000 * lstsq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--ms", type=float, default=5.0)
    ap.add_argument("--noop", type=int, default=20000)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    w = args.workers
    out: dict[str, object] = {"cpus": os.cpu_count()}

    phase, e2e = hpcml_phase(args.noop, 0.0, w)
    out["noop"] = {"tasks": args.noop, "hpcml_ms_per_task": 1000 * phase / args.noop,
                   "hpcml_end_to_end_ms_per_task": 1000 * e2e / args.noop,
                   "joblib_ms_per_task": 1000 * joblib_time(args.noop, 0.0, w) / args.noop,
                   "processpool_ms_per_task": 1000 * pool_time(args.noop, 0.0, w) / args.noop}
    ideal = args.tasks * args.ms / 1000 / w
    phase, e2e = hpcml_phase(args.tasks, args.ms, w)
    out["efficiency"] = {"tasks": args.tasks, "ms": args.ms, "ideal_s": ideal, "hpcml": ideal / phase,
                         "hpcml_end_to_end": ideal / e2e, "joblib": ideal / joblib_time(args.tasks, args.ms, w),
                         "processpool": ideal / pool_time(args.tasks, args.ms, w)}
    out["bootstrap_ols_100k_x_10"] = bootstrap_ols(args.replicates)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
