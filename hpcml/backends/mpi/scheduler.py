"""Dynamic mode on rank 0: a thread hands chunks to ranks as they free up while the calling
thread runs chunks too; on ranks > 0, the loop that asks for work and sends results back.

Under ``timeout_s`` a rank > 0 watches its own tasks from a thread: one still running
``GRACE_S`` past its limit is stuck in C, where the alarm cannot stop it. The rank then sends
rank 0 the chunk's result at once (the task failed with ``TaskTimeout``, the tasks that never
started to run elsewhere) and stays out of the work until the call returns; rank 0 ends the
MPI job at the end if the rank is still in it. A chunk a rank runs for itself (rank 0's own in
dynamic mode, every rank's share in static mode) runs under ``timeout_s`` in a thread the rank
watches (``own_chunks``): a stuck task is given up on, and the rank goes on with its work
while the call sits in the abandoned thread.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from typing import Iterator

from hpcml.backends.mpi.liveness import backoff, mpi, wait_message
from hpcml.backends.mpi.session import TAG_JOB, TAG_READY, TAG_STOP, TAG_WORK, Session
from hpcml.rundir.store import Chunk
from hpcml.tasks.deadlines import Abandoned, TaskWatch
from hpcml.tasks.stuck import GRACE_S, gave_up, run_here, timeout_of
from hpcml.tasks.worker import ChunkResult, WorkOrder, deliver, execute_chunk, run_chunk

log = logging.getLogger("hpcml.mpi")



class Scheduler:
    """Rank 0: a thread answers ranks asking for work; the calling thread runs chunks too."""

    def __init__(self, session: Session, job_json: str):
        self.s = session
        self.pending: collections.deque[WorkOrder] = collections.deque()
        self.results: queue.Queue[ChunkResult] = queue.Queue()
        self.lock = threading.Lock()
        self.idle: collections.deque[int] = collections.deque()
        self.busy: dict[int, WorkOrder | None] = {}  # None: given up on, the rank still in the call
        self.added = 0  # chunks made of given-up chunks' unstarted tasks, not yet counted by run()
        self.lost_once: set[tuple] = set()  # chunks whose rank was lost, given to the ranks left
        self.failure: str | None = None
        self._stop = threading.Event()
        # The job each rank holds: a started backend may run several jobs (the passes of a fit
        # over row blocks); a rank gets the job again before a chunk of another one.
        self.jobs: dict[int, str] = {}
        for r in range(1, session.size):
            if r not in session.live.dead:
                session.outbox.send(job_json, r, TAG_JOB)
                self.jobs[r] = job_json
        self._thread = threading.Thread(target=self._serve, name="hpcml-scheduler", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._serve_loop()
        except BaseException as err:  # never leave the driver waiting for results that cannot come
            self.failure = f"MPI scheduler stopped: {type(err).__name__}: {err}"
            log.error("%s", self.failure)
            with self.lock:
                self._lose_all(self.failure)

    def _lose_all(self, reason: str) -> None:
        self._lose_pending(reason)
        for order in self.busy.values():
            if order is not None:
                self.results.put(ChunkResult.lost(order.chunk, reason))
        self.busy.clear()

    def _lose_pending(self, reason: str) -> None:
        for order in self.pending:
            self.results.put(ChunkResult.lost(order.chunk, reason))
        self.pending.clear()

    def _past_deadline(self, grace_s: float = 0.0) -> bool:
        return self.s.deadline is not None and time.monotonic() > self.s.deadline + grace_s

    def _serve_loop(self) -> None:
        MPI, comm, live, outbox = mpi(), self.s.comm, self.s.live, self.s.outbox
        status, pause = MPI.Status(), 0.0002
        while not self._stop.is_set():
            busy = False
            while (message := comm.improbe(MPI.ANY_SOURCE, TAG_READY, status)) is not None:
                src, busy = status.Get_source(), True
                result = message.recv()
                with self.lock:
                    if isinstance(result, tuple):  # ("gave up", result): the rank is still in the call
                        self._gave_up(src, result[1])
                        continue
                    self.s.stuck.discard(src)
                    if self.busy.pop(src, None) is not None and result is not None:
                        self.results.put(result)
                    if src not in live.dead:
                        self.idle.append(src)
            with self.lock:
                while self.idle and self.pending:
                    rank, order = self.idle.popleft(), self.pending.popleft()
                    self.busy[rank] = order
                    if self.jobs.get(rank) != order.job_json:
                        outbox.send(order.job_json, rank, TAG_JOB)
                        self.jobs[rank] = order.job_json
                    outbox.send((order.chunk.indices, order.attempt, order.run_dir, order.write), rank, TAG_WORK)
                    busy = True
                for rank in live.poll():
                    if rank in self.idle:
                        self.idle.remove(rank)
                    order = self.busy.pop(rank, None)
                    if order is not None:
                        self._rank_lost_with(rank, order)
                    self.s.stuck.discard(rank)
                # At the deadline nothing new starts; chunks under way get dead_after_s to finish.
                if self._past_deadline():
                    self._lose_pending("backend.deadline_s passed before this task ran")
                if self._past_deadline(live.dead_after_s):
                    self._lose_all("backend.deadline_s passed while this task was running")
            outbox.reap()
            pause = backoff(pause, busy, ceiling=0.005)
            time.sleep(pause)

    def _rank_lost_with(self, rank: int, order: WorkOrder) -> None:
        """The chunk a lost rank held runs again on the ranks left, as Dask and Spark rerun a
        lost worker's tasks: a node or its link failed, or the work message never arrived,
        which says nothing about the tasks. Lost with a second rank, its tasks fail (the chunk
        itself may be what stops ranks). A rank only cut off may still write the chunk's file
        on a shared file system: the same records, kept once by consolidation."""
        why, key = self.s.live.lost_message(rank), (order.run_dir, order.attempt, order.chunk.indices)
        if key in self.lost_once:
            self.results.put(ChunkResult.lost(order.chunk, f"{why}; a rank was lost with this chunk before"))
            return
        self.lost_once.add(key)
        first, last = order.chunk.indices[0], order.chunk.indices[-1]
        log.warning("%s; its chunk (tasks %d-%d) runs on the ranks left", why, first, last)
        self.pending.appendleft(order)

    def _gave_up(self, rank: int, result: ChunkResult) -> None:
        order = self.busy.get(rank)
        if order is None:
            return
        self.busy[rank] = None  # it owes nothing more, and takes nothing new until its READY
        self.s.stuck.add(rank)
        self.results.put(result)
        if result.unfinished:
            self.pending.appendleft(dataclasses.replace(order, chunk=Chunk(result.unfinished)))
            self.added += 1

    def _count_added(self) -> int:
        with self.lock:
            added, self.added = self.added, 0
        return added

    def run(self, orders: list[WorkOrder]) -> Iterator[ChunkResult]:
        with self.lock:
            if self.failure is not None:
                self.pending.extend(orders)
                self._lose_all(self.failure)
            else:
                self.pending.extend(orders)
        remaining = len(orders)
        # With no other live rank, rank 0 must run everything itself.
        works = self.s.options.rank0_works or self.s.size == 1
        while True:
            remaining += self._count_added()  # counted with the result that made them: never late
            if not remaining:
                break
            while True:  # results from other ranks first: they are cheap to hand on
                try:
                    result = self.results.get_nowait()
                except queue.Empty:
                    break
                remaining -= 1
                yield result
            remaining += self._count_added()
            if not remaining:
                break
            alone = len(self.s.live.dead | self.s.stuck) == self.s.size - 1  # no other rank can take work
            with self.lock:
                take = self.pending and (works or alone) and not self._past_deadline()
                mine = self.pending.popleft() if take else None
            if mine is not None:
                remaining -= 1
                yield from own_chunks(self.s, [mine])  # more than one result if a task was given up on
                continue
            try:
                result = self.results.get(timeout=0.05)
            except queue.Empty:
                continue
            remaining -= 1
            yield result

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def own_chunks(session: Session, orders: list[WorkOrder]) -> Iterator[ChunkResult]:
    """Chunks this rank runs itself; under ``timeout_s`` a task stuck in C is given up on."""
    return run_here(orders, f"given up on; MPI rank {session.rank} was stuck in it")


def serve_rank(session: Session) -> int:
    """Ranks > 0 in dynamic mode: ask for work, run it, send the result back; rank 0 says stop."""
    comm, outbox = session.comm, session.outbox
    job_json = None
    outbox.send(None, 0, TAG_READY)
    while True:
        tag, payload = wait_message(comm, session.live, 0, None)  # rank 0 owns the deadline
        outbox.reap()
        if tag == TAG_STOP:
            outbox.flush(session.live, timeout_s=session.options.dead_after_s)
            return int(payload)
        if tag == TAG_JOB:
            job_json = payload
            continue
        indices, attempt, run_dir, write = payload
        order = WorkOrder(job_json, run_dir, Chunk(tuple(indices)), attempt, write, write_until=session.write_until)
        seconds = timeout_of(job_json)
        result = _watched(session, order, seconds) if seconds else execute_chunk(order)
        outbox.send(result, 0, TAG_READY)


def _watched(session: Session, order: WorkOrder, seconds: float) -> ChunkResult | None:
    """``execute_chunk`` in this (main) thread, the alarm stopping a task in Python; a thread
    gives up on a task stuck in C ``GRACE_S`` past its limit and sends rank 0 the chunk's
    result at once. None once the stuck call has returned (its late result is not kept)."""
    start, watch, done = time.perf_counter(), TaskWatch(), threading.Event()

    def watcher() -> None:
        while not done.wait(0.2):
            stuck = watch.give_up(GRACE_S)
            if stuck is not None:
                how = f"given up on; MPI rank {session.rank} was stuck in it"
                session.outbox.send(("gave up", gave_up(order, seconds, how, *stuck, start)), 0, TAG_READY)
                return

    thread = threading.Thread(target=watcher, name="hpcml-task-watch", daemon=True)
    thread.start()
    try:
        return deliver(order, *run_chunk(order, watch), start)
    except Abandoned:
        return None
    finally:
        done.set()
        thread.join()  # its message goes before this rank's next READY
