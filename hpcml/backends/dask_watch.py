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

import logging
import time

from hpcml.backends.lifeline import become_subreaper, end_descendants, helpers
from hpcml.tasks.stuck import run_watched, timeout_of
from hpcml.tasks.worker import ChunkResult, WorkOrder, execute_chunk

log = logging.getLogger("hpcml.dask")

# After timeout_s, the time a task has to return by itself (the asynchronous TaskTimeout lands
# at its next bytecode) before it counts as stuck.
GRACE_S = 1.0
# How long a worker that retires itself waits for the scheduler to mark it retiring, so that
# the chunk it gives back goes to another worker.
RETIRING_WAIT_S = 10.0

# This process's chunk times per job: (chunks, seconds in all).
_chunk_times: dict[int, tuple[int, float]] = {}


def chunk_on_worker(order: WorkOrder) -> ChunkResult:
    """A chunk as a Dask task: ``watched_chunk``, then what its tasks started (a ``setsid`` child,
    a daemon) ends with it, as on local workers. Only on a worker of one thread (hpcml's own, and
    dask-jobqueue's): where chunks run side by side, one's children are not told from another's.

    A worker with a lifetime (dask-jobqueue's, ``--lifetime`` below the walltime) whose time
    left is shorter than its chunks take on average does not start this one: it retires now
    and gives the chunk back to the scheduler (``Reschedule``), which runs it elsewhere; no
    task of it ran, and no retry is spent."""
    job = hash(order.job_json)
    if _no_time_left(job):
        _give_back()
    alone = _one_thread()
    if alone:
        become_subreaper()  # orphans of the task's children come to this worker, not to init
    t0 = time.monotonic()
    try:
        return watched_chunk(order)
    finally:
        n, total = _chunk_times.get(job, (0, 0.0))
        _chunk_times[job] = (n + 1, total + time.monotonic() - t0)
        if alone:
            end_descendants(helpers())


def too_late(time_left: float | None, chunk_s: float | None) -> bool:
    """Whether a worker with ``time_left`` seconds of lifetime should not start a chunk that
    takes ``chunk_s`` seconds on average (unknown: before its first chunk, it does)."""
    return time_left is not None and chunk_s is not None and time_left < chunk_s


def _no_time_left(job: int) -> bool:
    n, total = _chunk_times.get(job, (0, 0.0))
    return too_late(_time_left(), total / n if n else None)


def _time_left() -> float | None:
    """Seconds until this worker's lifetime ends (None: no lifetime, or not a Dask worker).
    Counted from the process start, a little before the worker's clock: an underestimate."""
    try:
        from distributed import get_worker

        lifetime = get_worker().lifetime
    except (ValueError, AttributeError):
        return None
    if not lifetime:
        return None
    import psutil

    return psutil.Process().create_time() + lifetime - time.time()


def _give_back() -> None:
    """Retire this worker and hand the current chunk back to the scheduler."""
    from distributed import Reschedule, get_worker
    from distributed.core import Status

    worker = get_worker()
    log.info("dask worker %s: less lifetime left than a chunk takes; retiring before its walltime", worker.address)
    worker.loop.add_callback(worker.close_gracefully, reason="hpcml: lifetime left below the chunk time")
    end = time.monotonic() + RETIRING_WAIT_S
    while worker.status == Status.running and time.monotonic() < end:
        time.sleep(0.05)
    raise Reschedule()


def _one_thread() -> bool:
    from distributed import get_worker  # only in a Dask worker

    try:
        return get_worker().state.nthreads == 1
    except (ValueError, AttributeError):
        return False


def watched_chunk(order: WorkOrder) -> ChunkResult:
    """``execute_chunk`` for a Dask worker: a task stuck past its limit does not hold the chunk."""
    seconds = timeout_of(order.job_json)
    if not seconds:
        return execute_chunk(order)
    result, stuck = run_watched(order, seconds, GRACE_S, "stopped by restarting its dask worker")
    if stuck:
        from distributed import get_worker  # only in a Dask worker, only once a task is stuck

        result.restart_worker = get_worker().address
    return result
