"""A Dask chunk whose task may sit past ``timeout_s`` in C code (``time.sleep``, a long BLAS or R
call), where the asynchronous TaskTimeout of a worker thread cannot land.

With ``timeout_s`` set, the chunk's tasks run in a thread of their own while the Dask task
watches it. A task still running ``GRACE_S`` after its limit is given up on: it is recorded as
failed with ``TaskTimeout`` (as on every other backend), the tasks before it keep their
records, and the chunk's result goes back at once with the tasks that never started (the
backend runs them as a new chunk) and this worker's address: the backend restarts the worker
through its nanny, which ends the stuck thread with its process. Retries and ``--resume``
then treat the task like any other failure.
"""
from __future__ import annotations

import threading
import time

from hpcml.tasks.deadlines import Abandoned, TaskWatch
from hpcml.tasks.stuck import gave_up, timeout_of
from hpcml.tasks.worker import ChunkResult, WorkOrder, deliver, execute_chunk, run_chunk

# After timeout_s, the time a task has to return by itself (the asynchronous TaskTimeout lands
# at its next bytecode) before it counts as stuck.
GRACE_S = 1.0
POLL_S = 0.05


def watched_chunk(order: WorkOrder) -> ChunkResult:
    """``execute_chunk`` for a Dask worker: a task stuck past its limit does not hold the chunk."""
    seconds = timeout_of(order.job_json)
    if not seconds:
        return execute_chunk(order)
    start = time.perf_counter()
    watch, box, done = TaskWatch(), {}, threading.Event()

    def body() -> None:
        try:
            box["out"] = run_chunk(order, watch)
        except Abandoned:
            pass
        finally:
            done.set()

    threading.Thread(target=body, name=f"hpcml-chunk-{order.chunk.id}", daemon=True).start()
    while not done.wait(POLL_S):
        stuck = watch.give_up(GRACE_S)
        if stuck is not None:
            return _gave_up(order, seconds, *stuck, start)
    return deliver(order, *box["out"], start)


def _gave_up(order: WorkOrder, seconds: float, stuck: list[int], records: list[dict], start: float) -> ChunkResult:
    from distributed import get_worker

    result = gave_up(order, seconds, "stopped by restarting its dask worker", stuck, records, start)
    result.restart_worker = get_worker().address
    return result
