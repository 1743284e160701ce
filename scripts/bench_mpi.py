#!/usr/bin/env python
"""MPI packing vs mpi4py.futures.MPIPoolExecutor on the same tasks, in one run (docs/benchmarks.md).

1. Throughput on tiny tasks (no-op): tasks per second, hpcml static / dynamic vs the pool
   with chunksize 1 and with hpcml's own chunk size.
2. Efficiency on uneven tasks (lognormal durations, CPU-bound): ideal time / measured time,
   hpcml static (cyclic, block) and dynamic vs the pool.

Each side runs under its own ``mpirun``; the timed phase starts once every rank is up
(imports and MPI start-up excluded) and ends when the last result is in: for hpcml when
rank 0 starts consolidating (so it includes checking the spec, preparing the run directory
and writing every chunk file), for the pool when ``map`` has returned every result.
Task durations are the same on both sides: task i spins for ``ms * exp(sigma * z_i)`` with
z_i drawn from task i's generator, exactly as hpcml's ``sleep`` kind does.

    python scripts/bench_mpi.py [--ranks 2] [--tiny 4000] [--uneven 400] [--ms 10] [--sigma 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = ["mpirun", "--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])


def durations_ms(n: int, ms: float, sigma: float, seed: int) -> list[float]:
    import numpy as np

    from hpcml.plans import task_rng

    if not sigma:
        return [ms] * n
    return [ms * float(np.exp(sigma * task_rng(seed, i).standard_normal())) for i in range(n)]


def spin(ms: float) -> float:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass
    return ms


# ------------------------------------------------------------------ inside mpirun


def role_hpcml(args) -> None:
    from mpi4py import MPI

    import hpcml.drivers.mpi_static
    import hpcml.drivers.run
    from hpcml.drivers.mpi import run_under_mpi
    from hpcml.spec import load_job

    backend = {"name": "mpi", "mode": args.mode, "layout": args.layout, "rank0_works": not args.no_rank0}
    if args.chunk:
        backend["chunk_size"] = args.chunk
    job = load_job({"name": "bench-mpi", "seed": args.seed, "data": {"source": "sklearn:iris"},
                    "model": {"kind": "sleep", "ms": args.ms, "sigma": args.sigma, "busy": True},
                    "plan": {"replicate": {"n": args.n}}, "backend": backend, "output": args.out})
    marks = {}
    finish = hpcml.drivers.run.finish

    def timed_finish(*a, **k):  # the phase ends when rank 0 starts consolidating
        marks["end"] = time.perf_counter()
        return finish(*a, **k)

    hpcml.drivers.run.finish = hpcml.drivers.mpi_static.finish = timed_finish
    # Warm processes, as the pool's are: imports and the data loaded before the clock starts.
    import pyarrow.parquet  # noqa: F401  (chunk files)
    import threadpoolctl  # noqa: F401

    from hpcml.data import load_dataset

    load_dataset(job)
    MPI.COMM_WORLD.Barrier()
    t0 = time.perf_counter()
    result = run_under_mpi(job, overwrite=True, progress=False)
    if result is not None:
        print(json.dumps({"seconds": marks["end"] - t0, "ok": result.n_tasks - result.n_failed}), flush=True)


def role_pool(args) -> None:
    from mpi4py.futures import MPIPoolExecutor

    work = durations_ms(args.n, args.ms, args.sigma, args.seed)
    with MPIPoolExecutor() as pool:
        workers = pool.num_workers
        list(pool.map(spin, [0.0] * (4 * workers)))  # every worker up and answering
        t0 = time.perf_counter()
        done = list(pool.map(spin, work, chunksize=args.chunk or 1))
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "ok": len(done)}), flush=True)


# ------------------------------------------------------------------ the driver


def launch(n_procs: int, argv: list[str], pool: bool = False) -> dict:
    python = [sys.executable] + (["-m", "mpi4py.futures"] if pool else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([*MPIRUN, "-n", str(n_procs), *python, __file__, *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"failed: {argv}\n{proc.stdout}\n{proc.stderr}")
    return {**json.loads(lines[-1]), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["driver", "hpcml", "pool"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=2, help="computing ranks on each side")
    parser.add_argument("--tiny", type=int, default=4000, help="tasks in the throughput test")
    parser.add_argument("--uneven", type=int, default=400, help="tasks in the efficiency test")
    parser.add_argument("--ms", type=float, default=10.0, help="median task duration, efficiency test")
    parser.add_argument("--sigma", type=float, default=1.0, help="lognormal shape, efficiency test")
    for name, default in (("mode", "dynamic"), ("layout", "cyclic"), ("out", None)):
        parser.add_argument(f"--{name}", default=default, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    parser.add_argument("--no-rank0", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "hpcml":
        return role_hpcml(args)
    if args.role == "pool":
        return role_pool(args)
    if shutil.which("mpirun") is None:
        raise SystemExit("mpirun not found (Open MPI)")
    from hpcml.tasks.chunks import auto_chunk_size

    R = args.ranks
    tmp = Path(tempfile.mkdtemp(prefix="bench-mpi-"))
    rows: list[tuple[str, str, dict]] = []

    def hp(label, test, n, ms, sigma, mode, layout="cyclic", chunk=0, no_rank0=False):
        argv = ["--role", "hpcml", "--n", str(n), "--ms", str(ms), "--sigma", str(sigma), "--mode", mode,
                "--layout", layout, "--chunk", str(chunk), "--out", str(tmp / label.replace(" ", "_"))]
        res = launch(R + (1 if no_rank0 else 0), argv + (["--no-rank0"] if no_rank0 else []))
        rows.append((test, label, {**res, "n": n}))

    def pool(label, test, n, ms, sigma, chunk):
        argv = ["--role", "pool", "--n", str(n), "--ms", str(ms), "--sigma", str(sigma), "--chunk", str(chunk)]
        rows.append((test, label, {**launch(R + 1, argv, pool=True), "n": n}))

    auto = auto_chunk_size(args.tiny, R)
    print(f"{R} computing ranks per side; machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}", flush=True)
    tiny = "tiny"
    hp("hpcml static (cyclic)", tiny, args.tiny, 0, 0, "static")
    hp("hpcml dynamic", tiny, args.tiny, 0, 0, "dynamic")
    pool("MPIPoolExecutor chunksize=1", tiny, args.tiny, 0, 0, 1)
    pool(f"MPIPoolExecutor chunksize={auto}", tiny, args.tiny, 0, 0, auto)
    uneven = "uneven"
    work_s = sum(durations_ms(args.uneven, args.ms, args.sigma, 42)) / 1000
    hp("hpcml static (cyclic)", uneven, args.uneven, args.ms, args.sigma, "static")
    hp("hpcml static (block)", uneven, args.uneven, args.ms, args.sigma, "static", layout="block")
    hp("hpcml dynamic (auto chunks)", uneven, args.uneven, args.ms, args.sigma, "dynamic")
    hp("hpcml dynamic (chunk 1)", uneven, args.uneven, args.ms, args.sigma, "dynamic", chunk=1)
    hp("hpcml dynamic (chunk 1, rank 0 only schedules)", uneven, args.uneven, args.ms, args.sigma, "dynamic",
       chunk=1, no_rank0=True)
    pool("MPIPoolExecutor chunksize=1", uneven, args.uneven, args.ms, args.sigma, 1)
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n1. Throughput, {args.tiny} no-op tasks (phase time; wall = whole mpirun incl. start-up)")
    base = next(r for t, label, r in rows if t == tiny and label == "MPIPoolExecutor chunksize=1")
    print(f"{'':48s} {'phase s':>8s} {'tasks/s':>9s} {'vs pool cs=1':>13s} {'wall s':>7s}")
    for t, label, r in rows:
        if t == tiny:
            print(f"{label:48s} {r['seconds']:8.3f} {r['n'] / r['seconds']:9.0f} "
                  f"{base['seconds'] / r['seconds']:12.2f}x {r['wall']:7.1f}")
    print(f"\n2. Efficiency, {args.uneven} CPU-bound tasks, lognormal median {args.ms:g} ms, sigma {args.sigma:g} "
          f"(total work {work_s:.2f} s, ideal on {R} ranks {work_s / R:.2f} s)")
    base = next(r for t, label, r in rows if t == uneven and label.startswith("MPIPoolExecutor"))
    print(f"{'':48s} {'phase s':>8s} {'efficiency':>10s} {'vs pool':>8s} {'wall s':>7s}")
    for t, label, r in rows:
        if t == uneven:
            print(f"{label:48s} {r['seconds']:8.3f} {work_s / R / r['seconds']:10.2f} "
                  f"{base['seconds'] / r['seconds']:7.2f}x {r['wall']:7.1f}")
    print("\nratios > 1: faster than the pool.  MPIPoolExecutor runs on R+1 processes (a manager plus R workers);"
          " hpcml on R ranks, rank 0 computing too, except where noted.")


if __name__ == "__main__":
    main()
