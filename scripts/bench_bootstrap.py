#!/usr/bin/env python
"""The headline bootstrap of OLS, per replicate, every side in one run (docs/benchmarks.md).

100,000 x 10, one thread each, replicates interleaved round by round so machine load hits
every side alike:

- NumPy ``lstsq`` on a resampled copy (what a hand-written loop does);
- hpcml's single fit with the resampling counts as weights (``fit_ols``);
- hpcml's batched path: 64 replicates' counts times the column products (what a bootstrap
  task runs), the draw of the counts included;
- ``hpcml.run`` of the whole bootstrap on one worker, end to end, per replicate; and with the
  fixed cost removed: the run of twice as many replicates, less the first, per extra replicate
  (each run in its own fresh process, so both pay the same worker start);
- logistic: scikit-learn's unpenalised ``LogisticRegression`` on a resampled copy vs hpcml's
  single IRLS fit with the counts as weights and its batched path (64 replicates at a time,
  Newton from the full fit, the draw of the counts included), and ``hpcml.run`` end to end;
  again on standardised columns, where scikit-learn's lbfgs converges in fewer iterations.

The BLAS kernel that ran is reported (``blas``): NumPy's OpenBLAS picks a generic one where
the CPU model is hidden; ``OPENBLAS_CORETYPE`` (e.g. ``SkylakeX``) sets it for every side.

    python scripts/bench_bootstrap.py [--rows 100000] [--p 10] [--rounds 5] [--replicates 1000] [--ols-only]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--p", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--replicates", type=int, default=1000, help="for the end-to-end run")
    ap.add_argument("--ols-only", action="store_true", help="leave out logistic regression")
    args = ap.parse_args()

    import hpcml
    from hpcml.numerics.batched_ols import ols_coefs_batch
    from hpcml.numerics.least_squares import BOOTSTRAP_GROUP, fit_ols
    from hpcml.plans.bootstrap import resample_count_rows, resample_counts

    rng = np.random.default_rng(0)
    n, p, G = args.rows, args.p, BOOTSTRAP_GROUP
    X = rng.standard_normal((n, p)) * 2 + 3
    y = X @ rng.standard_normal(p) + rng.standard_normal(n) + 10
    A = np.column_stack([np.ones(n), X])
    times: dict[str, list[float]] = {"numpy_lstsq_copy": [], "hpcml_fit_ols_weights": [], "hpcml_batched": []}
    with threadpool_limits(1):
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(4):
                idx = rng.integers(0, n, n)
                np.linalg.lstsq(A[idx], y[idx], rcond=None)
            times["numpy_lstsq_copy"].append((time.perf_counter() - t0) / 4)
            t0 = time.perf_counter()
            for _ in range(4):
                fit_ols(X, y, resample_counts(rng, n))
            times["hpcml_fit_ols_weights"].append((time.perf_counter() - t0) / 4)
            t0 = time.perf_counter()
            # as a task draws them: one generator per replicate, counts held compact (uint8)
            W = resample_count_rows([np.random.default_rng(s) for s in rng.integers(2**63, size=G)], n)
            ols_coefs_batch(X, y, W)
            times["hpcml_batched"].append((time.perf_counter() - t0) / G)
    out: dict[str, object] = {"rows": n, "p": p, "group": G, "cpus": os.cpu_count(),
                              "ms_per_replicate": {k: {"median": 1000 * statistics.median(v),
                                                       "min": 1000 * min(v), "max": 1000 * max(v)}
                                                   for k, v in times.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/data.npy", np.column_stack([X, y]))
        spec = {"name": "bench-boot", "data": {"source": f"{tmp}/data.npy", "target": f"x{p}"},
                "model": {"kind": "ols"}, "plan": {"bootstrap": {"replicates": args.replicates}},
                "backend": {"name": "local", "workers": 1}, "output": f"{tmp}/run"}
        t0 = time.perf_counter()
        hpcml.run(spec, progress=False, plots=False)
        out["hpcml_run_1_worker_ms_per_replicate"] = 1000 * (time.perf_counter() - t0) / args.replicates
        fresh = {}
        for reps in (args.replicates, 2 * args.replicates):  # each in a fresh process: the same fixed cost
            spec_file = Path(tmp, f"spec{reps}.json")
            spec_file.write_text(json.dumps({**spec, "plan": {"bootstrap": {"replicates": reps}},
                                             "output": f"{tmp}/fresh{reps}"}))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hpcml.cli", "run", str(spec_file), "-q", "--no-plots"], check=True,
                           stdout=subprocess.DEVNULL)
            fresh[reps] = time.perf_counter() - t0
        out["hpcml_run_fresh_process_s"] = fresh
        out["hpcml_run_fixed_cost_removed_ms_per_replicate"] = \
            1000 * (fresh[2 * args.replicates] - fresh[args.replicates]) / args.replicates
    med = {k: v["median"] for k, v in out["ms_per_replicate"].items()}
    out["speedup_vs_lstsq_copy"] = {k: med["numpy_lstsq_copy"] / v for k, v in med.items()}
    for key in ("hpcml_run_1_worker_ms_per_replicate", "hpcml_run_fixed_cost_removed_ms_per_replicate"):
        out["speedup_vs_lstsq_copy"][key] = med["numpy_lstsq_copy"] / out[key]
    if args.ols_only:
        print(json.dumps(out, indent=2))
        return
    out["logistic"] = logistic(X, rng, args.rounds, args.replicates)
    # scikit-learn's lbfgs needs fewer iterations on standardised columns (the data above have
    # mean 3, sd 2): the same comparison there.
    out["logistic_standardised"] = logistic((X - X.mean(axis=0)) / X.std(axis=0), rng, args.rounds, None)
    from threadpoolctl import threadpool_info

    out["blas"] = sorted({f"{i.get('internal_api')} {i.get('architecture')}" for i in threadpool_info()})
    print(json.dumps(out, indent=2))


def logistic(X: np.ndarray, rng: np.random.Generator, rounds: int, replicates: int | None) -> dict[str, object]:
    from sklearn.linear_model import LogisticRegression

    import hpcml
    from hpcml.numerics.batched_logistic import logistic_coefs_batch
    from hpcml.numerics.irls import fit_logistic
    from hpcml.numerics.least_squares import BOOTSTRAP_GROUP
    from hpcml.plans.bootstrap import resample_count_rows, resample_counts

    n, p = X.shape
    G = BOOTSTRAP_GROUP
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ (0.3 * rng.standard_normal(p)) - 0.5)))).astype(float)
    times: dict[str, list[float]] = {"sklearn_copy": [], "hpcml_fit_logistic_weights": [], "hpcml_batched": []}
    worst = 0.0
    with threadpool_limits(1):
        logistic_coefs_batch(X, y, np.ones((1, n), dtype=np.uint8))  # the full fit, once per worker
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(2):
                idx = rng.integers(0, n, n)
                LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(X[idx], y[idx])
            times["sklearn_copy"].append((time.perf_counter() - t0) / 2)
            t0 = time.perf_counter()
            for _ in range(2):
                fit_logistic(X, y, resample_counts(rng, n))
            times["hpcml_fit_logistic_weights"].append((time.perf_counter() - t0) / 2)
            t0 = time.perf_counter()
            W = resample_count_rows([np.random.default_rng(s) for s in rng.integers(2**63, size=G)], n)
            coefs = logistic_coefs_batch(X, y, W)
            times["hpcml_batched"].append((time.perf_counter() - t0) / G)
            ref = fit_logistic(X, y, W[0].astype(np.float64), tol=1e-14).coef  # outside the timing
            worst = max(worst, float(np.max(np.abs(coefs[0] - ref)) / np.max(np.abs(ref))))
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}
    out: dict[str, object] = {"ms_per_replicate": med, "batched_vs_irls_max_rel_diff": worst,
                              "speedup_vs_sklearn_copy": {k: med["sklearn_copy"] / v for k, v in med.items()}}
    if not replicates:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/data.npy", np.column_stack([X, y]))
        spec = {"name": "bench-logit", "data": {"source": f"{tmp}/data.npy", "target": f"x{p}"},
                "model": {"kind": "logistic"}, "plan": {"bootstrap": {"replicates": replicates}},
                "backend": {"name": "local", "workers": 1}, "output": f"{tmp}/run"}
        t0 = time.perf_counter()
        hpcml.run(spec, progress=False, plots=False)
        out["hpcml_run_1_worker_ms_per_replicate"] = 1000 * (time.perf_counter() - t0) / replicates
    return out


if __name__ == "__main__":
    main()
