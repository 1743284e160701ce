"""hpcml's Dask backend vs raw ``client.map``: the same 2000 CPU-bound tasks of 5 ms, 2 workers.

    .venv/bin/python scripts/bench_dask.py [--tasks 2000] [--ms 5] [--workers 2]

One LocalCluster (2 single-threaded worker processes on 127.0.0.1) serves both sides:

- raw:   ``client.gather(client.map(spin, range(n)))``: one dask task per item.
- hpcml: ``DaskBackend.run`` on the driver's chunks (auto chunk size, and a smaller one),
         each chunk writing its Parquet result file, exactly as ``hpcml run`` does.
- hpcml end to end: ``hpcml.run(..., backend="dask")`` including its own cluster start,
         planning, consolidation, summary and plots (what a user waits for).

Efficiency = ideal time (n * ms / workers) / measured time. Prints a table and the ratios.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path


def spin(i: int, ms: float = 5.0) -> float:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass
    return ms


def job_spec(n: int, ms: float, workers: int, out: Path) -> dict:
    return {"name": "bench-dask", "seed": 1,
            "data": {"source": "synthetic:regression", "options": {"n_samples": 10, "n_features": 2}},
            "model": {"kind": "sleep", "ms": ms, "busy": True}, "plan": {"replicate": {"n": n}},
            "backend": {"name": "dask", "workers": workers}, "output": str(out)}


def time_raw(client, n: int, ms: float) -> float:
    client.gather(client.map(spin, range(20), ms=ms, pure=False))  # warm: imports, connections
    t0 = time.perf_counter()
    client.gather(client.map(spin, range(n), ms=ms, pure=False))
    return time.perf_counter() - t0


def time_backend(address: str, spec: dict, chunk_size: int) -> float:
    """The driver's loop over DaskBackend.run, without cluster start (raw dask gets none either)."""
    from hpcml.backends.dask import DaskBackend
    from hpcml.tasks.chunks import make_chunks
    from hpcml.plans import plan_tasks
    from hpcml.spec import load_job
    from hpcml.rundir.store import RunStore
    from hpcml.tasks.worker import WorkOrder

    job = load_job(spec)
    store = RunStore(job.output)
    store.prepare(job, resume=False, overwrite=True)
    job_json = job.to_json()
    backend = DaskBackend(options={"address": address})
    backend.start(job_json, store.log_dir)
    try:
        indices = [t.index for t in plan_tasks(job)]
        orders = [WorkOrder(job_json, str(store.path), c) for c in make_chunks(indices, chunk_size)]
        t0 = time.perf_counter()
        results = list(backend.run(orders))
        elapsed = time.perf_counter() - t0
    finally:
        backend.stop()
    assert sum(len(r.ok) for r in results) == len(indices), "some tasks failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--ms", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from hpcml.tasks.chunks import auto_chunk_size
    from hpcml import run

    n, ms, w = args.tasks, args.ms, args.workers
    ideal = n * ms / 1000.0 / w
    auto = auto_chunk_size(n, w)
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        cluster = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
        try:
            rows.append(("raw client.map (1 dask task per item)", time_raw(client, n, ms)))
            spec = job_spec(n, ms, w, Path(tmp, "run"))
            rows.append((f"hpcml DaskBackend, chunk_size={auto} (auto, {math.ceil(n / auto)} chunks)",
                         time_backend(cluster.scheduler_address, spec, auto)))
            rows.append(("hpcml DaskBackend, chunk_size=10", time_backend(cluster.scheduler_address, spec, 10)))
        finally:
            client.close()
            cluster.close()
        t0 = time.perf_counter()
        result = run(job_spec(n, ms, w, Path(tmp, "e2e")), overwrite=True, progress=False)
        assert result.ok
        rows.append(("hpcml run --backend dask, end to end (cluster start .. plots)", time.perf_counter() - t0))

    print(f"{n} tasks x {ms:g} ms (busy CPU) on {w} dask workers; ideal {ideal:.2f} s")
    print(f"{'':64s} {'seconds':>8s} {'efficiency':>10s} {'vs raw':>7s}")
    raw = rows[0][1]
    for label, sec in rows:
        print(f"{label:64s} {sec:8.2f} {ideal / sec:10.0%} {raw / sec:6.2f}x")


if __name__ == "__main__":
    main()
