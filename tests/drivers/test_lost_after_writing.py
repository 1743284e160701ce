"""A worker lost after it wrote its chunk file (a Dask worker that retired, near its walltime,
holding the chunk's result) did finish the chunk: the driver records no failure for it and
runs nothing again."""
from __future__ import annotations

import pyarrow.parquet as pq

from hpcml.drivers.attempts import run_attempts
from hpcml.rundir.store import RunStore, write_chunk_records
from hpcml.spec import load_job
from hpcml.tasks.worker import ChunkResult


def test_a_chunk_written_by_a_worker_that_was_then_lost_records_no_failure(tmp_path):
    job = load_job({"name": "lost", "data": {"source": "none"}, "model": {"kind": "sleep", "ms": 0},
                    "plan": {"replicate": {"n": 4}}, "backend": {"name": "local", "workers": 1},
                    "retries": 0, "output": str(tmp_path / "run")})
    store = RunStore(tmp_path / "run")
    store.path.mkdir(parents=True)
    orders_seen = []

    def run_orders(orders):
        for order in orders:
            orders_seen.append(order.chunk.indices)
            # the worker wrote the chunk's ok records, then its result was lost with it
            write_chunk_records(store.path, order.chunk, [
                {"task_id": job.task_id(i), "task_index": i, "status": "ok", "attempt": 0, "seconds": 0.0,
                 "replicate": i, "slept_ms": 0.0} for i in order.chunk.indices])
            yield ChunkResult.lost(order.chunk, "dask worker lost with the chunk's result (future lost)")

    still_failing = run_attempts(job, store, [0, 1, 2, 3], 4, run_orders)
    assert still_failing == []
    assert [tuple(c) for c in orders_seen] == [(0, 1, 2, 3)]  # nothing run again
    statuses = [s for f in store.chunk_files() for s in pq.read_table(f, columns=["status"]).column("status").to_pylist()]
    assert statuses == ["ok"] * 4  # every record written, not only the latest of each task
