#!/usr/bin/env python
"""Data larger than a node: hpcml's fits over row blocks vs their peers, same data, one run.

Part ``parquet``: OLS and PCA of one Parquet set (``--rows`` x ``--features``), each
contender reading the files itself:
  hpcml row blocks (local backend, 2 workers) | engine: spark (MLlib on local[2]) |
  dask-ml (if installed) | NumPy on the data loaded whole (the in-memory reference, when
  the data fits).
Part ``pbdr``: the lecture notes' pbdR case, the crossproduct of a 100,000 x 10,000 matrix
(the first step of its PCA), as hpcml's PCA over row blocks (Gram route, 2 workers) vs NumPy's
``X.T @ X`` then ``eigh`` in one process; the notes report 950 s on 12 cores and 320 s on
2 nodes of 12.

Each contender of part ``parquet`` runs in a child process of its own (the peers with a
time limit, ``--timeout``): its wall time, the peak memory of its process tree (sampled;
the sum over its processes and each one's own peak), and its numbers (OLS coefficients,
PCA explained variance ratios) against hpcml's. A contender that fails or runs out of time is printed
with why; the others go on. Times are wall seconds of one run each (the machine is shared:
ratios matter).

    .venv/bin/python scripts/bench_row_blocks.py parquet [--rows 20000000] [--features 10]
        [--dir /big/disk] [--data existing/parts/] [--timeout 3600] [--only hpcml,spark,dask-ml,numpy]
    .venv/bin/python scripts/bench_row_blocks.py pbdr [--rows 100000] [--features 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def _clock(label: str, func):
    t = time.perf_counter()
    out = func()
    seconds = time.perf_counter() - t
    print(f"{label:<40} {seconds:9.1f} s", flush=True)
    return seconds, out


def write_parts(root: Path, rows: int, p: int, parts: int = 8) -> Path:
    """A directory of Parquet files, written a part at a time (never all rows in memory)."""
    folder = root / "parts"
    folder.mkdir()
    rng = np.random.default_rng(0)
    beta = np.arange(1.0, p + 1.0)
    for i in range(parts):
        n = rows // parts + (1 if i < rows % parts else 0)
        X = rng.normal(size=(n, p))
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)]).assign(y=X @ beta + rng.normal(size=n))
        frame.to_parquet(folder / f"part-{i:03d}.parquet", row_group_size=1 << 20, index=False)
        del frame, X
    return folder


CONTENDERS = ("hpcml", "spark", "dask-ml", "numpy")
LABELS = {"hpcml": "hpcml row blocks (local, 2 workers)", "spark": "engine: spark (MLlib, local[2])",
          "dask-ml": "dask-ml (LocalCluster, 2 workers)", "numpy": "NumPy, the data loaded whole"}


def _hpcml_spec(kind: str, source: Path, out: Path, p: int, spark: bool) -> dict:
    model = {"kind": kind, "features": [f"x{j}" for j in range(p)]}
    if kind == "pca":
        model["n_components"] = min(10, p)
    data = {"source": str(source), **({"target": "y"} if kind == "ols" else {})}
    if spark:
        return {"name": f"bench-spark-{kind}", "seed": 1, "engine": "spark", "output": str(out), "data": data,
                "model": model, "plan": {"fit": {}}, "backend": {"name": "spark", "workers": 2}}
    return {"name": f"bench-{kind}", "seed": 1, "output": str(out), "data": {**data, "blocks_above_mb": 0},
            "model": model, "plan": {"fit": {}}, "backend": {"name": "local", "workers": 2}}


def _numbers(kind: str, p: int, record: dict) -> list[float]:
    """What the contenders are compared on: OLS's intercept and coefficients, PCA's explained
    variance ratios."""
    if kind == "ols":
        return [record["coef_(Intercept)"], *[record[f"coef_x{j}"] for j in range(p)]]
    return [record[f"evr_{j}"] for j in range(1, min(10, p) + 1)]


def one_contender(name: str, kind: str, source: Path, out: Path, p: int) -> dict:
    """One fit in this process: {"numbers": [...], ...}; raises on a failed fit."""
    if name in ("hpcml", "spark"):
        from hpcml import run

        result = run(_hpcml_spec(kind, source, out, p, name == "spark"), overwrite=True, progress=False, plots=False)
        record = result.results.iloc[0].to_dict()
        if not result.ok or record.get("status") != "ok":
            raise RuntimeError(f"fit failed: {record.get('error')}")
        facts = result.summary.get("run", {}).get("row_blocks", {})
        return {"numbers": _numbers(kind, p, record), "worker_peak_rss_mb": facts.get("worker_peak_rss_mb"),
                "block_rows": facts.get("block_rows"), "passes": facts.get("passes")}
    if name == "numpy":
        A = pq.read_table(source, columns=[f"x{j}" for j in range(p)] + ["y"]).to_pandas().to_numpy(np.float64)
        if kind == "ols":
            X = np.column_stack([np.ones(len(A)), A[:, :p]])
            return {"numbers": np.linalg.lstsq(X, A[:, p], rcond=None)[0].tolist()}
        X = A[:, :p] - A[:, :p].mean(axis=0)
        lam = np.linalg.eigvalsh(X.T @ X)[::-1]
        return {"numbers": (lam / lam.sum())[:min(10, p)].tolist()}
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster):
        frame = dd.read_parquet(str(source))
        A = frame[[f"x{j}" for j in range(p)] + ["y"]].to_dask_array(lengths=True)
        X, y = A[:, :p], A[:, p]
        if kind == "ols":
            from dask_ml.linear_model import LinearRegression

            # Newton's method: exact for least squares in one step (lbfgs needs a pass per iteration).
            model = LinearRegression(solver="newton", fit_intercept=True).fit(X, y)
            return {"numbers": [float(model.intercept_), *map(float, model.coef_)]}
        from dask_ml.decomposition import PCA

        model = PCA(n_components=min(10, p), svd_solver="tsqr").fit(X)
        return {"numbers": [float(v) for v in model.explained_variance_ratio_]}


def timed_contender(name: str, kind: str, source: Path, out: Path, p: int, timeout: float) -> dict:
    """``one_contender`` in a child process of its own, with a time limit; the peak memory of
    its process tree (sampled every 0.2 s: the sum over processes, and each one's own peak) and
    its CPU seconds (user + system of every process, as last sampled): on a busy machine the
    wall time depends on the others' load, the CPU seconds much less."""
    import json
    import subprocess

    import psutil

    cmd = [sys.executable, __file__, "one", name, kind, str(source), str(out), str(p)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    root, peaks, cpu, tree_peak, timed_out = psutil.Process(proc.pid), {}, {}, 0, False
    while proc.poll() is None:
        if time.perf_counter() - t > timeout:
            timed_out = True
            for child in root.children(recursive=True) + [root]:
                try:
                    child.kill()
                except psutil.Error:
                    pass
            break
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            procs = []
        total = 0
        for q in procs:
            try:
                rss = q.memory_info().rss
                key = (q.pid, q.name())
                times = q.cpu_times()
                cpu[q.pid] = max(cpu.get(q.pid, 0.0), times.user + times.system)
            except psutil.Error:
                continue
            total += rss
            peaks[key] = max(peaks.get(key, 0), rss)
        tree_peak = max(tree_peak, total)
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t
    out_line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), None)
    result = {"name": name, "seconds": seconds, "cpu_seconds": sum(cpu.values()), "tree_peak_gb": tree_peak / 2**30,
              "process_peaks_gb": sorted((v / 2**30 for v in peaks.values()), reverse=True)}
    if timed_out:
        return {**result, "error": f"did not finish in {timeout:.0f} s (stopped)"}
    if proc.returncode != 0 or out_line is None:
        why = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        return {**result, "error": f"exit {proc.returncode}: {why.strip()[:300]}"}
    return {**result, **json.loads(out_line)}


def _agreement(results: list[dict]) -> str:
    """Largest difference of each contender's numbers from hpcml's, relative to the largest of hpcml's."""
    ref = next((r for r in results if r["name"] == "hpcml" and "numbers" in r), None)
    if ref is None:
        return "no hpcml numbers to compare with"
    base = np.asarray(ref["numbers"])
    parts = []
    for r in results:
        if r is ref or "numbers" not in r:
            continue
        diff = np.max(np.abs(np.asarray(r["numbers"]) - base)) / np.max(np.abs(base))
        parts.append(f"{r['name']} {diff:.1e}")
    return "max |difference| / max |hpcml's|: " + (", ".join(parts) or "nothing else finished")


def parquet_part(args, root: Path) -> None:
    if args.data is not None:
        source = args.data
        args.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(source.glob("*.parquet")))
    else:
        source = None
    size = args.rows * (args.features + 1) * 8 / 2**30
    total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"# {args.rows:,} rows x {args.features} features + y ({size:.1f} GiB as float64; "
          f"this machine: {total_gb:.0f} GiB, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    if source is None:
        source = write_parts(root, args.rows, args.features, parts=max(8, int(size // 0.4)))
    disk = sum(f.stat().st_size for f in source.glob("*.parquet")) / 2**30
    print(f"# Parquet on disk: {disk:.1f} GiB in {len(list(source.glob('*.parquet')))} files: {source}", flush=True)
    names = [n for n in CONTENDERS if n in args.only]
    try:
        import dask_ml  # noqa: F401
    except ImportError:
        names = [n for n in names if n != "dask-ml"]
        print("# dask-ml not installed (pip install 'hpcml[bench]'): left out")
    if "numpy" in names and size > 0.4 * total_gb:
        names.remove("numpy")
        print(f"# NumPy on the loaded data left out: {size:.1f} GiB does not fit in 40% of this machine's memory")
    for kind in ("ols", "pca"):
        results = []
        for name in names:
            limit = args.timeout if name != "hpcml" else float("inf")
            r = timed_contender(name, kind, source, root / f"{name}-{kind}", args.features, limit)
            results.append(r)
            peaks = ", ".join(f"{v:.2f}" for v in r["process_peaks_gb"][:4])
            state = r.get("error") or "ok"
            print(f"{kind}: {LABELS[name]:<38} {r['seconds']:8.1f} s  CPU {r['cpu_seconds']:7.1f} s  peak RSS {r['tree_peak_gb']:5.2f} GiB "
                  f"(largest processes {peaks})  {state}", flush=True)
            if r.get("worker_peak_rss_mb") is not None:
                print(f"  hpcml summary: block_rows {r['block_rows']}, passes {r['passes']}, "
                      f"run.row_blocks.worker_peak_rss_mb {r['worker_peak_rss_mb']}", flush=True)
        ours = next((r for r in results if r["name"] == "hpcml" and "numbers" in r), None)
        for r in results:
            if ours is not None and r is not ours and "numbers" in r:
                print(f"  ratio {r['name']} / hpcml: wall {r['seconds'] / ours['seconds']:.2f}, "
                      f"CPU {r['cpu_seconds'] / max(ours['cpu_seconds'], 1e-9):.2f}")
        print(f"  {kind} agreement, {_agreement(results)}", flush=True)
        for r in results:
            if "numbers" in r:
                print(f"  {r['name']:<8} {' '.join(f'{v:.10g}' for v in r['numbers'][:4])} ...")


def pbdr_part(args, root: Path) -> None:
    n, p = args.rows, args.features
    path = root / "x.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, p))
    rng = np.random.default_rng(0)
    for a in range(0, n, 10_000):  # written in slices: never two copies in memory
        X[a:a + 10_000] = rng.normal(size=(min(10_000, n - a), p))
    X.flush()
    del X
    print(f"# {n:,} x {p:,} float64 ({n * p * 8 / 2**30:.1f} GiB) in {path.name}")
    ours, record = _clock("hpcml PCA over row blocks (Gram route, 2 workers)", lambda: _pbdr_hpcml(path, root, p))
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20

    def numpy_route():
        A = np.load(path)
        A -= A.mean(axis=0)
        G = A.T @ A
        del A
        return np.linalg.eigvalsh(G)[::-1]

    theirs, lam = _clock("NumPy: X.T @ X then eigh, one process", numpy_route)
    print(f"  sv_1: hpcml {record['sv_1']!r}  numpy {float(np.sqrt(lam[0]))!r}")
    print(f"  peak RSS of a worker: {peak_children:.1f} GiB; ratio hpcml / numpy: {ours / theirs:.2f}; "
          "the notes: pbdR 950 s on 12 cores, 320 s on 2 nodes of 12")


def _pbdr_hpcml(path: Path, root: Path, p: int) -> dict:
    from hpcml import run

    spec = {"name": "bench-pbdr", "seed": 1, "output": str(root / "hpcml-pbdr"),
            "data": {"source": str(path), "blocks_above_mb": 0, "block_rows": 4096},
            "model": {"kind": "pca", "n_components": 10}, "plan": {"fit": {}},
            "backend": {"name": "local", "workers": 2}}
    return run(spec, overwrite=True, progress=False, plots=False).results.iloc[0].to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if len(sys.argv) > 1 and sys.argv[1] == "one":  # one contender's fit, in a child process of its own
        name, kind, source, out, p = sys.argv[2:7]
        print(json.dumps(one_contender(name, kind, Path(source), Path(out), int(p))), flush=True)
        return
    parser.add_argument("part", choices=["parquet", "pbdr"])
    parser.add_argument("--rows", type=int)
    parser.add_argument("--features", type=int)
    parser.add_argument("--dir", type=Path, default=None, help="where the data is written (default: a temp dir)")
    parser.add_argument("--data", type=Path, default=None, help="parquet: a directory of Parquet parts written "
                        "before (columns x0.. and y) instead of writing one")
    parser.add_argument("--timeout", type=float, default=3600, help="parquet: seconds each peer's fit may take (hpcml's has no limit)")
    parser.add_argument("--only", type=lambda v: v.split(","), default=list(CONTENDERS),
                        help=f"parquet: comma-separated contenders, of {','.join(CONTENDERS)}")
    args = parser.parse_args()
    if args.part == "parquet":
        args.rows, args.features = args.rows or 20_000_000, args.features or 10
    else:
        args.rows, args.features = args.rows or 100_000, args.features or 10_000
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        (parquet_part if args.part == "parquet" else pbdr_part)(args, Path(tmp))


if __name__ == "__main__":
    main()
