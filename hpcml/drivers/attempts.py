"""The one loop that runs a job's missing tasks: chunk them, hand the chunks to whatever runs
them, record what came back, retry failures. Every way of driving a run uses it: a backend
from the driver, an MPI rank's static share, a job-array element.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from hpcml.errors import NotShared, SpecError
from hpcml.report.progress import Progress
from hpcml.rundir.store import Chunk
from hpcml.tasks.chunks import make_chunks
from hpcml.rundir.store import RunStore
from hpcml.tasks.task_records import failure_record
from hpcml.tasks.worker import ChunkResult, WorkOrder, execute_chunk

log = logging.getLogger("hpcml")

RunOrders = Callable[[list[WorkOrder]], Iterable[ChunkResult]]


def in_this_process(orders: list[WorkOrder]) -> Iterator[ChunkResult]:
    """Run chunks one after another in this thread, ``timeout_s`` by an alarm (built-in model
    kinds in the driver; a rank or array element uses ``tasks.stuck.run_here``, which also
    gives up on a task stuck in C)."""
    for order in orders:
        yield execute_chunk(order)


def refuse_retries_and_timeout(job, what: str) -> None:
    """``retries`` and ``timeout_s`` are kept by this loop and the worker. A driver that runs
    its one fit outside them (``engine: spark``, DDP training) refuses both, before anything
    is written, rather than ignore them."""
    spec, problems = job.spec, []
    if spec.retries:
        problems.append(("retries", spec.retries, f"{what}; hpcml does not retry it: leave retries out"))
    if spec.timeout_s is not None:
        problems.append(("timeout_s", spec.timeout_s, f"{what}; hpcml does not time it out: leave timeout_s out"))
    if problems:
        raise SpecError(problems)


@contextmanager
def backend_running(job, backend, log_dir, n_tasks: int, *, progress: bool) -> Iterator[Progress]:
    """The backend's workers started (their logs in ``log_dir``) and a progress bar of
    ``n_tasks``; on every exit the bar is closed and the backend stopped."""
    bar = Progress(n_tasks, f"{job.spec.name} [{backend.name}]", enabled=progress)
    try:
        backend.start(job.to_json(), log_dir)
    except BaseException:
        bar.close()
        raise
    try:
        yield bar
    finally:
        bar.close()
        backend.stop()


def run_attempts(job, store: RunStore, todo: list[int], chunk_size: int, run_orders: RunOrders, *,
                 writes_own_files: bool = True, progress=None) -> list[int]:
    """Run ``todo`` with up to ``job.spec.retries`` retries; the task indices still failing.

    ``store``: the run directory, or what stands for it (``drivers/in_memory.py``): where records
    that came back go (``write_records``) and which tasks are done (``completed``).

    ``writes_own_files``: the workers see the run directory and write their chunk files;
    otherwise their records come back and are written here, so every attempt leaves a trace.
    """
    job_json, retries = job.to_json(), job.spec.retries
    isolated: set[int] = set()  # tasks of chunks whose worker died: retried one per chunk
    for attempt in range(retries + 1):
        chunks = make_chunks(todo, chunk_size) if not isolated else \
            make_chunks([i for i in todo if i not in isolated], chunk_size) + [Chunk((i,)) for i in todo if i in isolated]
        orders = [WorkOrder(job_json, str(store.path), chunk, attempt, writes_own_files) for chunk in chunks]
        failed: list[int] = []
        isolated = set()
        for result in run_orders(orders):
            if result.fatal:  # a worker that cannot see the run directory or the data: nothing can succeed
                raise NotShared([result.fatal])
            if result.lost_worker:  # which of its tasks killed the worker is unknown: a retry tells them apart
                isolated.update(result.failed)
            if result.path is None:  # records came back, or the worker was lost: write them here
                records = result.records
                if not records:
                    # A worker lost after writing its chunk file (a Dask worker that retired
                    # holding the chunk's result) did finish those tasks: no failure is recorded
                    # for a task with an ok record.
                    done = store.completed() if result.lost_worker and writes_own_files else set()
                    records = [failure_record(i, job.task_id(i), msg, "", attempt)
                               for i, msg in result.failed.items() if i not in done]
                if records:
                    store.write_records(result.chunk, records)
            failed += sorted(result.failed)
            if progress is not None:
                progress.advance(len(result.ok), len(result.failed) if attempt == retries else 0)
        if failed and writes_own_files:
            # A worker that hung or died after writing its chunk file but before reporting it
            # did finish those tasks: rerun only what has no ok record.
            done = store.completed()
            failed = [i for i in failed if i not in done]
        if failed and attempt < retries:
            log.info("retrying %d failed task(s), attempt %d of %d", len(failed), attempt + 2, retries + 1)
        todo = sorted(failed)
        if not todo:
            break
    return todo
