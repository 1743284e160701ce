#!/usr/bin/env python
"""Peak memory of the lecture notes' big-data foreach exercise: registerDoParallel vs
registerDoHpcml (docs/benchmarks.md, "R: a big matrix used by every iteration").

One R script, run twice in fresh R sessions, once per backend: an N x P double matrix X
(1 GB by default) and a response Y; every iteration fits ``lm(Y ~ X[, i])`` on one column,
so every iteration uses the whole matrix. Every process of each run's tree (the R session,
doParallel's forked R children, or hpcml's worker processes with their embedded R) is
sampled every 0.1 s from /proc, as in scripts/bench_memory.py: VmHWM per process, the sum of
the processes' peaks, and the peak of the tree's total PSS (shared pages counted once).

    RETICULATE_PYTHON=.venv/bin/python python scripts/bench_r_memory.py [--rows 1250000] [--cols 100] [--iters 24]

doParallel (cores = 2) forks the session: its children see X through copy-on-write pages.
``doHpcml`` is hpcml's local loop: a loop that uses a vector this large runs in processes forked
from the session too (R/R/local_pool.R). ``doHpcml mapped`` sends the loop through hpcml's
Python workers (``options(hpcml.r_workers = "python")``, as loops on other backends go): X is
written once per machine (under HPCML_MAP_DIR, here a folder on the benchmark's temporary
disk) and each worker maps the file. The coefficients' check is the MD5 of their serialization: the same on
every side means bit-identical numbers.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import measure  # noqa: E402  (the /proc sampler shared with the Python benchmark)

GB = 1e9

EXERCISE = r"""
suppressPackageStartupMessages({ library(foreach); library(doParallel); library(hpcml) })
a <- commandArgs(trailingOnly = TRUE)
side <- a[1]; N <- as.integer(a[2]); P <- as.integer(a[3]); iters <- as.integer(a[4]); cores <- as.integer(a[5])
chunk <- if (a[6] == "auto") NULL else as.integer(a[6])
set.seed(1)
X <- matrix(rnorm(N * P), N, P)
Y <- X %*% rnorm(P) + rnorm(N)
if (side == "doParallel") registerDoParallel(cores = cores) else registerDoHpcml(workers = cores, seed = 1L, chunk_size = chunk)
if (nzchar(Sys.getenv("HPCML_BENCH_PYTHON_WORKERS"))) options(hpcml.r_workers = "python")
t0 <- proc.time()[["elapsed"]]
coefs <- foreach(i = seq_len(iters), .combine = rbind) %dopar% coef(lm(Y ~ X[, i]))
s <- proc.time()[["elapsed"]] - t0
stopifnot(nrow(coefs) == iters)
f <- tempfile(); saveRDS(unname(coefs), f, compress = FALSE)
cat(sprintf("RESULT %.2f %s\n", s, tools::md5sum(f)))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_250_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--iters", type=int, default=24)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--chunk-size", default="auto", help="hpcml's chunk_size (auto: hpcml chooses)")
    args = ap.parse_args()
    size = args.rows * args.cols * 8
    rscript = shutil.which("Rscript") or "Rscript"
    print(f"X: {args.rows} x {args.cols} doubles = {size / GB:.2f} GB; {args.iters} iterations of lm(Y ~ X[, i]), "
          f"{args.cores} cores, hpcml chunk_size {args.chunk_size}; load average {open('/proc/loadavg').read().split()[:3]}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpcml-bench-r-memory-") as tmp:
        script = Path(tmp, "exercise.R")
        script.write_text(EXERCISE)
        # hpcml's loop files, run directory and shared files go under this folder, removed at the end.
        env = {**os.environ, "TMPDIR": tmp, "HPCML_MAP_DIR": str(Path(tmp, "mapped"))}
        sides = {"doParallel": {}, "doHpcml": {}, "doHpcml mapped": {"HPCML_BENCH_PYTHON_WORKERS": "1"}}
        for side, more in sides.items():
            res = measure([rscript, str(script), side.split()[0], str(args.rows), str(args.cols), str(args.iters),
                           str(args.cores), args.chunk_size], {**env, **more}, tmp)
            line = res["result"][0].split() if res["result"] else ["RESULT", "nan", "nan"]
            procs = res["processes"]
            driver = next(p for p in procs if p["role"] == "driver")
            workers = [p for p in procs if p["role"] == "worker"]
            rows.append({"side": side, "loop_s": float(line[1]), "check": line[2],
                         "driver": driver["hwm"], "workers": len(workers),
                         "worker_max": max((p["hwm"] for p in workers), default=0),
                         "sum_peaks": sum(p["hwm"] for p in procs), "pss": res["peak_total_pss"],
                         "rss": res["peak_total_rss"],
                         "procs": [f"{p['role']} {p['pid']} (parent {p.get('ppid')}): peak {p['hwm'] / GB:.2f} GB"
                                   for p in procs]})
    print(f"{'side':<14} {'loop s':>7} {'driver':>8} {'procs':>5} {'worker max':>10} {'sum of peaks':>12} "
          f"{'peak tree RSS':>13} {'peak tree PSS':>13}   (GB; x the matrix)")
    for r in rows:
        cell = lambda b: f"{b / GB:.2f} ({b / size:.1f}x)"
        print(f"{r['side']:<14} {r['loop_s']:>7.1f} {cell(r['driver']):>8} {r['workers']:>5} {cell(r['worker_max']):>10} "
              f"{cell(r['sum_peaks']):>12} {cell(r['rss']):>13} {cell(r['pss']):>13}")
    for r in rows:
        print(f"{r['side']}: " + "; ".join(r["procs"]))
    base = rows[0]
    for r in rows[1:]:
        print(f"{r['side']} / doParallel: loop time {r['loop_s'] / base['loop_s']:.2f}x, "
              f"peak tree PSS {r['pss'] / base['pss']:.2f}x")
    print("bit-identical coefficients on every side:", len({r["check"] for r in rows}) == 1,
          [r["check"] for r in rows])


if __name__ == "__main__":
    main()
