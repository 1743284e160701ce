"""A chunk whose task was given up on while stuck past ``timeout_s`` in C code (Dask's worker
threads, MPI ranks): what it hands back in place of the usual result.

The stuck task fails with ``TaskTimeout`` (as on every backend), the tasks before it keep their
records (written, or carried back, like any chunk's), and ``unfinished`` lists the tasks that
never started, for the backend to run as a chunk of their own.
"""
from __future__ import annotations

import dataclasses
import json
import time

from hpcml.rundir.store import Chunk
from hpcml.tasks.deadlines import TaskTimeout
from hpcml.tasks.task_records import failure_record
from hpcml.tasks.worker import ChunkResult, WorkOrder, deliver, job_of


def timeout_of(job_json: str) -> float | None:
    return json.loads(job_json).get("timeout_s")


def gave_up(order: WorkOrder, seconds: float, how: str, stuck: list[int], records: list[dict],
            start: float) -> ChunkResult:
    """The chunk's result once task(s) ``stuck`` were given up on; ``how``: what stops them."""
    job = job_of(order.job_json)
    error = f"{TaskTimeout.__name__}: task exceeded timeout_s={seconds:g} ({how})"
    records = records + [failure_record(i, job.task_id(i), error, "", order.attempt, time.perf_counter() - start)
                         for i in stuck]
    recorded = {r["task_index"] for r in records}
    result = ChunkResult(Chunk(tuple(sorted(recorded))))
    for r in records:
        if r["status"] == "ok":
            result.ok.append(r["task_index"])
        else:
            result.failed[r["task_index"]] = r["error"]
    result.unfinished = tuple(i for i in order.chunk.indices if i not in recorded)
    return deliver(dataclasses.replace(order, chunk=result.chunk), result, records, start)
