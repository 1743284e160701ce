"""One element of a batch job array: run its share of the tasks, write chunk files, exit.

Element ``i`` of ``N`` takes a contiguous block of task indices (sizes differ by at most one),
skips tasks that already have an ``ok`` record (a resubmitted array only redoes what is
missing), and writes its chunks into the run directory like any worker. ``hpcml collect``
(the dependent job) finishes the run when every element has ended.
"""
from __future__ import annotations

import logging
import time

from hpcml.plans.base import block_share

from hpcml.tasks.chunks import chunk_size_for
from hpcml.drivers.attempts import run_attempts
from hpcml.tasks.stuck import run_here
from hpcml.errors import SpecError
from hpcml.spec import load_job
from hpcml.rundir.opening import prepared_run

log = logging.getLogger("hpcml")


def run_element(spec_path: str, index: int, of: int, deadline_s: float | None = None) -> tuple[int, int, int]:
    """Run element ``index`` of ``of``: (tasks ok, tasks failed, tasks left because no chunk
    starts once ``deadline_s`` seconds have passed: the walltime is near)."""

    if of < 1:
        raise SpecError.one("of", of, "must be at least 1")
    end = time.monotonic() + deadline_s if deadline_s else None
    job = load_job(spec_path)
    store = prepared_run(job)  # no lock: the elements write into it side by side
    if not 0 <= index < of:
        raise SpecError.one("index", index, f"must be in 0..{of - 1}")
    done = store.completed()
    todo = [i for i in block_share(job.n_tasks, index, of) if i not in done]
    if not todo:
        return 0, 0, 0
    chunk_size = chunk_size_for(job, len(todo), 1)
    started: set[int] = set()

    def until_deadline(orders):
        for order in orders:
            if end is not None and time.monotonic() > end:
                log.warning("element %d: the deadline (%gs) passed; the rest of its share is left for --resume",
                            index, deadline_s)
                return
            started.update(order.chunk.indices)
            yield from run_here([order])

    failed = run_attempts(job, store, todo, chunk_size, until_deadline)
    left = len([i for i in todo if i not in started])
    return len(started) - len(failed), len(failed), left
