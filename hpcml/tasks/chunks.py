"""Tasks -> chunks: the unit sent to a worker and the unit of durability (one result file).

Chunk size never changes a result (no model batches its arithmetic by chunk); it only
amortizes per-chunk costs, as joblib's auto-batching does.
"""
from __future__ import annotations

import math
from typing import Sequence

from hpcml.rundir.store import Chunk


def auto_chunk_size(n_tasks: int, workers: int) -> int:
    # About 8 chunks per worker: amortizes per-chunk cost (scheduling, one result file)
    # while keeping the tail short and a crash losing little work.
    return max(1, min(1000, math.ceil(n_tasks / (8 * max(1, workers)))))


def chunk_size_for(job, n_todo: int, workers: int) -> int:
    """The spec's ``backend.chunk_size``, else automatic: a whole number of the plan's task
    groups (tasks fitted together), so a group is not split between chunks, unless whole groups
    would leave a worker without a chunk (24 iterations of an R loop, whose group is 256, would
    all run on one worker): then the tasks split evenly over the workers."""
    if job.spec.backend.chunk_size:
        return job.spec.backend.chunk_size
    size, group = auto_chunk_size(n_todo, workers), job.plan.group_size(job)
    whole = -(-size // group) * group
    return max(size, min(whole, -(-n_todo // max(1, workers))))


def make_chunks(indices: Sequence[int], chunk_size: int) -> list[Chunk]:
    """Consecutive chunks of ``chunk_size`` tasks; a range of tasks gives chunks of ranges (a
    fresh run of a million tasks holds no tuple of a million indices)."""
    keep = (lambda part: part) if isinstance(indices, range) else tuple
    return [Chunk(keep(indices[i : i + chunk_size])) for i in range(0, len(indices), chunk_size)]
