"""MPI static packing: every rank runs its own share of the missing tasks, with no coordinator
(the lecture notes' "bundler"). Rank 0 only opens the run directory first (holding it until
the end) and finishes the run; every rank writes its own chunk files."""
from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import ExitStack

from hpcml.backends.mpi.liveness import RankLost, backoff, mpi, wait_message
from hpcml.backends.mpi.scheduler import own_chunks
from hpcml.backends.mpi.session import TAG_DONE, TAG_PREP
from hpcml.rundir.store import Chunk
from hpcml.plans.base import block_share
from hpcml.tasks.chunks import chunk_size_for
from hpcml.drivers.attempts import run_attempts
from hpcml.drivers.finish import finish
from hpcml.errors import SpecError
from hpcml.report.progress import Progress
from hpcml.rundir.opening import open_run
from hpcml.rundir.store import RunStore, write_chunk_records
from hpcml.tasks.task_records import failure_record
from hpcml.drivers.run import check_job

log = logging.getLogger("hpcml.mpi")


def rank_share(todo: list[int], rank: int, size: int, layout: str) -> list[int]:
    """The tasks one rank runs (the bundler's task index -> rank): cyclic or contiguous blocks."""
    if layout == "cyclic":
        return todo[rank::size]
    share = block_share(len(todo), rank, size)
    return todo[share.start:share.stop]


def _open_on_rank0(session, job, stack: ExitStack, resume: bool, overwrite: bool) -> list[int]:
    """Rank 0 opens the run directory (held until ``stack`` closes) before anyone writes; the
    others wait for its word. The tasks no rank has finished yet."""
    if session.rank != 0:
        _, message = wait_message(session.comm, session.live, 0, None)
        if message[0] == "spec":
            raise SpecError([])  # rank 0 prints the problems
        if message[0] != "ok":
            raise SystemExit(1)
        return message[1]
    error, message, run = None, ("error", None), None
    try:
        check_job(job)
        run = stack.enter_context(open_run(job, resume=resume, overwrite=overwrite))
        done = run.store.completed() if resume else set()
        message = ("ok", [i for i in range(job.n_tasks) if i not in done])
    except SpecError as err:
        error, message = err, ("spec", None)
    except BaseException as err:
        error = err
    for r in range(1, session.size):
        session.outbox.send(message, r, TAG_PREP)  # non-blocking: a dead rank cannot hold rank 0 here
    session.outbox.flush(session.live, timeout_s=session.options.dead_after_s)
    if error is not None:
        raise error
    run.keep()  # every rank now runs its share
    return message[1]


def run_static(session, job, *, resume: bool, overwrite: bool, progress: bool):
    """Run this rank's share; on rank 0 the RunResult once every rank is done (or lost)."""
    t0 = time.perf_counter()
    rank, size, opts = session.rank, session.size, session.options
    store = RunStore(job.output)
    with ExitStack() as stack:  # rank 0 holds the run directory until the run is finished
        todo = _open_on_rank0(session, job, stack, resume, overwrite)
        share = rank_share(todo, rank, size, opts.layout)
        chunk_size = chunk_size_for(job, len(todo), size)
        bar = Progress(len(share), f"{job.spec.name} [mpi static, rank 0 of {size}]",
                       enabled=progress and rank == 0)

        def until_deadline(orders):
            for order in orders:
                if session.deadline is not None and time.monotonic() > session.deadline:
                    log.error("rank %d: backend.deadline_s passed; leaving the rest of its share undone", rank)
                    return
                yield from own_chunks(session, [dataclasses.replace(order, write_until=session.write_until)])

        try:
            run_attempts(job, store, share, chunk_size, until_deadline, progress=bar)
        finally:
            bar.close()
        if rank != 0:
            session.outbox.send(None, 0, TAG_DONE)  # rank 0 learns who finished; the barrier alone cannot say
        late = _wait_for_all(session)
        if rank != 0:
            return None
        _record_missing(job, store, todo, size, opts.layout, session.live.dead)
        result = finish(job, store, time.perf_counter() - t0)
    if session.live.dead or late:
        why = (f"MPI rank(s) {', '.join(map(str, sorted(session.live.dead)))} lost" if session.live.dead else
               f"backend.deadline_s passed with rank(s) {', '.join(map(str, sorted(late)))} still working")
        session.abort_at_exit(1, complete=result.n_failed == 0, why=why)
    return result


def _wait_for_all(session) -> set[int]:
    """A barrier that polls; on rank 0, the ranks it stopped waiting for.

    The other ranks wait for rank 0 as long as it is alive (it ends the job if need be).
    Rank 0 waits for every rank that is alive: once all have finished, a lost rank only
    means aborting at the end; past ``deadline_s`` it waits ``dead_after_s`` more for ranks
    finishing their current chunk, then gives up on them.
    """
    MPI, live = mpi(), session.live
    request = session.comm.Ibarrier()
    arrived: set[int] = set()
    status, pause = MPI.Status(), 0.0002
    while not request.Test():
        live.poll()
        if session.rank != 0:
            if 0 in live.dead:
                raise RankLost(live.lost_message(0))
        else:
            while (message := session.comm.improbe(MPI.ANY_SOURCE, TAG_DONE, status)) is not None:
                message.recv()
                arrived.add(status.Get_source())
            waiting = set(live.peers) - arrived - live.dead
            if not waiting:
                return set()  # everyone left has finished; the lost are in live.dead
            if session.deadline is not None and time.monotonic() > session.deadline + live.dead_after_s:
                return waiting
        time.sleep(pause)
        pause = backoff(pause)
    return set()


def _record_missing(job, store: RunStore, todo: list[int], size: int, layout: str, lost: set[int]) -> None:
    """Failed records for tasks that ended with no record at all (a lost rank's, or cut off by
    ``deadline_s``), so the summary names them and ``--resume`` reruns them."""
    recorded = set(store.read_records(["task_index"])["task_index"].astype(int))
    for r in range(size):
        missing = [i for i in rank_share(todo, r, size, layout) if i not in recorded]
        if not missing:
            continue
        reason = (f"MPI rank {r} was lost before finishing this task" if r in lost
                  else "backend.deadline_s passed before this task ran")
        write_chunk_records(store.path, Chunk(tuple(missing)),
                            [failure_record(i, job.task_id(i), reason, "", 0) for i in missing])
