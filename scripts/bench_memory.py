#!/usr/bin/env python
"""Peak memory of every process of a run (driver and workers) on a large Parquet file
(docs/benchmarks.md, "Memory: data once per machine").

Writes an n x p float64 Parquet file (target ``y``: a linear response; for ``logistic`` a 0/1
draw with probability expit(response / 2)), runs a bootstrap of the model ``--kind`` (``ols``,
``logistic``, ``kmeans``, ``pca``; ``--plan cv`` for a 5-fold CV instead) on the local backend
in a fresh Python process, and samples every process of its tree (driver, forkserver,
workers) every 0.1 s from /proc: VmHWM (the kernel's own peak resident set), the peak of its
private (anonymous) pages, and the peak of the whole tree's proportional set size (PSS: a
page mapped by k processes counts 1/k in each, so shared data is counted once). ``--repo``
runs another checkout of hpcml (e.g. a worktree of an older commit) for a before/after table.

    python scripts/bench_memory.py [--kind ols] [--plan bootstrap] [--rows 400000] [--cols 100] [--workers 2]
                                   [--replicates 20] [--no-bca] [--repo .]

Every worker runs (chunks of replicates / workers): a bootstrap's replicates are fitted in
groups of 64, and a chunk holding part of a group fits the whole group, so with the default
chunking 20 replicates would all go to one worker and the others would stay idle.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


# Each kind's model section: kmeans with one k-means++ start per replicate keeps runs short.
MODELS = {"ols": {"kind": "ols"}, "logistic": {"kind": "logistic"}, "kmeans": {"kind": "kmeans", "k": 5, "n_init": 1},
          "pca": {"kind": "pca"}}


def write_parquet(path: Path, rows: int, cols: int, block: int = 50_000, binary: bool = False) -> int:
    """The data, written block by block (row groups of ``block`` rows); returns its bytes as float64."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    beta = np.linspace(-1, 1, cols)
    names = [f"x{j}" for j in range(cols)] + ["y"]
    with pq.ParquetWriter(path, pa.schema([(n, pa.float64()) for n in names])) as out:
        for start in range(0, rows, block):
            X = rng.standard_normal((min(block, rows - start), cols))
            y = X @ beta + rng.standard_normal(len(X))
            if binary:  # a logistic response: P(y = 1) = expit(x'beta / 2)
                y = (rng.random(len(X)) < 1 / (1 + np.exp(-y / 2))).astype(np.float64)
            out.write_table(pa.table(dict(zip(names, [*X.T, y]))))
    return rows * (cols + 1) * 8


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "PPid"):
                fields[key] = int(value.split()[0]) * (1024 if key != "PPid" else 1)
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                fields["Pss"] = int(line.split()[1]) * 1024
    return fields


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(_ppid(int(entry)), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _role(pid: int, driver: int) -> str:
    """driver (the root), helper (multiprocessing's forkserver, resource tracker) or worker."""
    if pid == driver:
        return "driver"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except OSError:
        return "worker"
    # The forkserver's children (the workers) share its command line; it is the driver's child.
    if b"resource_tracker" in cmd or (b"forkserver" in cmd and _ppid(pid) == driver):
        return "helper"
    return "worker"


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def measure(cmd: list[str], env: dict[str, str], cwd: str) -> dict:
    # cwd: the temporary directory, so that `-c` imports hpcml from PYTHONPATH, not from here
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    peaks: dict[int, dict[str, int]] = {}
    totals = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            tot = {"rss": 0, "pss": 0}
            for pid in _tree(proc.pid):
                try:
                    s = _status(pid)
                except OSError:
                    continue
                p = peaks.setdefault(pid, {"hwm": 0, "anon": 0, "role": _role(pid, proc.pid)})
                p["hwm"], p["anon"] = max(p["hwm"], s.get("VmHWM", 0)), max(p["anon"], s.get("RssAnon", 0))
                p["ppid"] = s.get("PPid", 0)
                tot["rss"] += s.get("VmRSS", 0)
                tot["pss"] += s.get("Pss", 0)
            totals["rss"], totals["pss"] = max(totals["rss"], tot["rss"]), max(totals["pss"], tot["pss"])
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{out}\n{err[-3000:]}")
    procs = sorted(({"pid": pid, **p} for pid, p in peaks.items()), key=lambda p: -p["hwm"])
    return {"seconds": time.perf_counter() - t0, "processes": procs, "peak_total_rss": totals["rss"],
            "peak_total_pss": totals["pss"], "result": out.strip().splitlines()[-1:]}


RUN = """
import hpcml, sys
spec = {{"name": "bench-memory", "seed": 1, "data": {{"source": {src!r}, "target": "y"}}, "model": {model!r},
        "plan": {plan!r}, "backend": {{"name": "local", "workers": {workers}, "chunk_size": {chunk}}},
        "output": {out!r}}}
r = hpcml.run(spec, progress=False, plots=False)
print("ok" if r.ok else "failed", r.results.shape[0])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(MODELS), default="ols")
    ap.add_argument("--plan", choices=["bootstrap", "cv"], default="bootstrap",
                    help="cv: one 5-fold CV (5 tasks; --replicates unused)")
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="replicates per chunk (default: as many as the workers, so that every worker runs; "
                         "each then fits its whole group of up to 64 replicates, as any worker does)")
    ap.add_argument("--no-bca", action="store_true",
                    help="percentile intervals only: no jackknife in the summary (wide data: p x p work per group)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the hpcml checkout to measure")
    ap.add_argument("--label", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpcml-bench-memory-") as tmp:
        src = Path(tmp, "data.parquet")
        data_bytes = write_parquet(src, args.rows, args.cols, binary=args.kind == "logistic")
        tasks = args.replicates if args.plan == "bootstrap" else 5
        chunk = args.chunk_size or -(-tasks // args.workers)
        plan = {"bootstrap": {"replicates": args.replicates, "bca": not args.no_bca}} if args.plan == "bootstrap" \
            else {"cv": {"folds": 5}}
        code = RUN.format(src=str(src), model=MODELS[args.kind], plan=plan, workers=args.workers, chunk=chunk,
                          out=str(Path(tmp, "run")))
        env = {**os.environ, "PYTHONPATH": str(args.repo.resolve()), "HPCML_CACHE_DIR": str(Path(tmp, "cache"))}
        res = measure([sys.executable, "-c", code], env, tmp)
    x = data_bytes
    workers = [p for p in res["processes"] if p["role"] == "worker"]
    driver = next(p for p in res["processes"] if p["role"] == "driver")
    report = {
        "label": args.label or str(args.repo), "kind": args.kind, "plan": args.plan, "rows": args.rows, "cols": args.cols, "workers": args.workers,
        "data_mb": round(x / MB), "chunk_size": chunk,
        "worker_peak_mb": [round(w["hwm"] / MB) for w in workers], "peak_total_pss_mb": round(res["peak_total_pss"] / MB), "seconds": round(res["seconds"], 1), "result": res["result"],
        "driver_peak_mb": round(driver["hwm"] / MB), "driver_peak_x": round(driver["hwm"] / x, 2),
        "driver_private_x": round(driver["anon"] / x, 2),
        "worker_peak_x": [round(w["hwm"] / x, 2) for w in workers],
        "worker_private_x": [round(w["anon"] / x, 2) for w in workers],
        "sum_of_peaks_x": round(sum(p["hwm"] for p in res["processes"]) / x, 2),
        "peak_total_rss_x": round(res["peak_total_rss"] / x, 2),
        "peak_total_pss_x": round(res["peak_total_pss"] / x, 2),
        "processes": [f"{p['role']} {p['pid']}: peak {p['hwm'] // MB} MB, private {p['anon'] // MB} MB"
                      for p in res["processes"]],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
