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

from hpcml.backends.lifeline import become_subreaper, end_descendants, helpers
from hpcml.tasks.stuck import run_watched, timeout_of
from hpcml.tasks.worker import ChunkResult, WorkOrder, execute_chunk

# After timeout_s, the time a task has to return by itself (the asynchronous TaskTimeout lands
# at its next bytecode) before it counts as stuck.
GRACE_S = 1.0


def chunk_on_worker(order: WorkOrder) -> ChunkResult:
    """A chunk as a Dask task: ``watched_chunk``, then what its tasks started (a ``setsid`` child,
    a daemon) ends with it, as on local workers. Only on a worker of one thread (hpcml's own, and
    dask-jobqueue's): where chunks run side by side, one's children are not told from another's."""
    alone = _one_thread()
    if alone:
        become_subreaper()  # orphans of the task's children come to this worker, not to init
    try:
        return watched_chunk(order)
    finally:
        if alone:
            end_descendants(helpers())


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
