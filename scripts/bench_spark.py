#!/usr/bin/env python
"""MLlib (engine: spark) vs hpcml's single-node models vs scikit-learn, same data, one run.

For each size, one Parquet file; each contender reads it and fits:
  ols:    Spark LinearRegression (normal equations) | hpcml fit_ols | sklearn LinearRegression
  kmeans: Spark KMeans (k-means||, one run)         | hpcml kmeans (k-means++, n_init=1)
          | sklearn KMeans (k-means++, n_init=1, lloyd)
Times are wall seconds, median of --repeats, for read + fit + the fit's metrics (what a job
pays), with one Spark session started before the clock (its start is printed separately).

    .venv/bin/python scripts/bench_spark.py [--sizes 10000 100000 1000000] [--features 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

K = 8


def make_files(root: Path, n: int, p: int) -> dict[str, Path]:
    from sklearn.datasets import make_blobs, make_regression

    X, y = make_regression(n_samples=n, n_features=p, noise=5.0, random_state=1)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)]).assign(y=y)
    files = {"ols": root / f"ols-{n}.parquet"}
    frame.to_parquet(files["ols"], index=False)
    X, _ = make_blobs(n_samples=n, n_features=p, centers=K, cluster_std=2.0, random_state=2)
    files["kmeans"] = root / f"kmeans-{n}.parquet"
    pd.DataFrame(X, columns=[f"x{j}" for j in range(p)]).to_parquet(files["kmeans"], index=False)
    return files


def spec(kind: str, path: Path, out: Path) -> dict:
    model = {"kind": kind, **({"k": K, "n_init": 1} if kind == "kmeans" else {})}
    data = {"source": str(path), **({"target": "y"} if kind == "ols" else {})}
    return {"name": f"bench-{kind}", "seed": 5, "engine": "spark", "data": data, "model": model,
            "plan": {"fit": {}}, "output": str(out)}


def run_spark(spark, kind: str, path: Path, out: Path) -> float:
    from hpcml.drivers.spark_engine import FITTERS, prepare
    from hpcml.spec import load_job

    job = load_job(spec(kind, path, out))
    t = time.perf_counter()
    data, features, facts = prepare(spark, job)  # read, scan, assemble, cache
    FITTERS[kind](job, data, features, facts)
    data.unpersist()
    return time.perf_counter() - t


def run_hpcml(kind: str, path: Path) -> float:
    from hpcml.models.kmeans import kmeans
    from hpcml.numerics.least_squares import fit_ols, predict, regression_metrics

    t = time.perf_counter()
    frame = pd.read_parquet(path)
    if kind == "ols":
        X, y = frame.drop(columns="y").to_numpy(), frame["y"].to_numpy()
        fit = fit_ols(X, y)
        regression_metrics(y, predict(fit, X))
    else:
        kmeans(frame.to_numpy(), K, np.random.default_rng(5), n_init=1)
    return time.perf_counter() - t


def run_sklearn(kind: str, path: Path) -> float:
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    t = time.perf_counter()
    frame = pd.read_parquet(path)
    if kind == "ols":
        X, y = frame.drop(columns="y").to_numpy(), frame["y"].to_numpy()
        model = LinearRegression().fit(X, y)
        r2_score(y, model.predict(X))
    else:
        KMeans(n_clusters=K, n_init=1, algorithm="lloyd", random_state=5).fit(frame.to_numpy())
    return time.perf_counter() - t


def median_of(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="Spark local[N]")
    args = ap.parse_args()

    from hpcml.backends.spark import SparkOptions, spark_session

    root = Path(tempfile.mkdtemp(prefix="hpcml-bench-spark-"))
    t = time.perf_counter()
    handle = spark_session(SparkOptions(), args.workers, root / "logs")
    start_s = time.perf_counter() - t
    print(f"machine: {os.cpu_count()} cores; Spark {handle.sc.version} on {handle.sc.master}; "
          f"session start {start_s:.1f} s (paid once per job, not in the table)")
    rows = []
    try:
        for n in args.sizes:
            files = make_files(root, n, args.features)
            for kind in ("ols", "kmeans"):
                run_spark(handle.spark, kind, files[kind], root / "out")  # JIT and cache warm-up
                s = median_of(lambda: run_spark(handle.spark, kind, files[kind], root / "out"), args.repeats)
                h = median_of(lambda: run_hpcml(kind, files[kind]), args.repeats)
                k = median_of(lambda: run_sklearn(kind, files[kind]), args.repeats)
                rows.append({"model": kind, "rows": n, "spark_s": s, "hpcml_s": h, "sklearn_s": k,
                             "spark/hpcml": s / h, "spark/sklearn": s / k, "hpcml/sklearn": h / k})
                r = rows[-1]
                print(f"{kind:6s} n={n:>9,d}  spark {s:7.3f}s  hpcml {h:7.3f}s  sklearn {k:7.3f}s  "
                      f"spark/hpcml {r['spark/hpcml']:6.1f}x  spark/sklearn {r['spark/sklearn']:6.1f}x  "
                      f"hpcml/sklearn {r['hpcml/sklearn']:5.2f}x", flush=True)
    finally:
        handle.stop()
    print("\n| model | rows | Spark MLlib (s) | hpcml (s) | scikit-learn (s) | Spark/hpcml | Spark/sklearn | hpcml/sklearn |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['rows']:,} | {r['spark_s']:.3f} | {r['hpcml_s']:.3f} | {r['sklearn_s']:.3f} "
              f"| {r['spark/hpcml']:.1f}x | {r['spark/sklearn']:.1f}x | {r['hpcml/sklearn']:.2f}x |")


if __name__ == "__main__":
    main()
