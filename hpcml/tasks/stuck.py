"""A chunk whose task was given up on while stuck past ``timeout_s`` in C code (Dask's worker
threads, MPI ranks): what it hands back in place of the usual result.

The stuck task fails with ``TaskTimeout`` (as on every backend), the tasks before it keep their
records (written, or carried back, like any chunk's), and ``unfinished`` lists the tasks that
never started, for the backend to run as a chunk of their own.

``run_watched`` runs a chunk in a thread of its own while the calling thread watches it: the
caller gets the chunk's result on time even while the stuck call goes on in the abandoned thread.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time

from hpcml.rundir import running
from hpcml.rundir.store import Chunk
from hpcml.tasks.deadlines import Abandoned, TaskTimeout, TaskWatch
from hpcml.tasks.task_records import failure_record
from hpcml.tasks.worker import ChunkResult, WorkOrder, deliver, execute_chunk, job_of, run_chunk

POLL_S = 0.05
GRACE_S = 2.0  # past a task's limit (an alarm or asynchronous TaskTimeout goes first) before it counts as stuck


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
    if order.write:  # the chunk as started is over; its unfinished tasks run as a chunk of their own
        running.unmark(order.run_dir, order.chunk.indices)
    return deliver(dataclasses.replace(order, chunk=result.chunk), result, records, start)


def run_watched(order: WorkOrder, seconds: float, grace_s: float, how: str) -> tuple[ChunkResult, bool]:
    """(the chunk's result, whether a task was given up on). The chunk runs in a thread of its
    own; a task still running ``grace_s`` past ``seconds`` is given up on and its thread left
    in its call (it records nothing more). ``how``: what becomes of the stuck call."""
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
        stuck = watch.give_up(grace_s)
        if stuck is not None:
            return gave_up(order, seconds, how, *stuck, start), True
    return deliver(order, *box["out"], start), False


def run_here(orders: list, how: str = "given up on; its call was left running in this process"):
    """Run ``orders`` one after another in this process (an MPI rank's share, a job-array
    element, rank 0's own chunks). Under ``timeout_s`` each chunk runs in a watched thread: a
    task stuck in C past its limit fails with TaskTimeout and the tasks of its chunk that
    never started run next, while the call goes on in its abandoned thread."""
    pending = collections.deque(orders)
    while pending:
        order = pending.popleft()
        seconds = timeout_of(order.job_json)
        if not seconds:
            yield execute_chunk(order)
            continue
        result, stuck = run_watched(order, seconds, GRACE_S, how)
        if stuck and result.unfinished:
            pending.appendleft(dataclasses.replace(order, chunk=Chunk(result.unfinished)))
        yield result
