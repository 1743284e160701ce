"""MPI packing: a job's tasks on the ranks of one MPI launch (mpirun, srun, ibrun).

Every rank runs the same command (``hpcml run --backend mpi`` or ``python -m hpcml.pack``).

- static: each rank takes its share of the missing tasks, cyclic or block by task index
  (the seeds' "bundler"), runs it and writes its own chunk files. No coordinator: rank 0
  only prepares the run directory first and consolidates at the end.
- dynamic: rank 0 hands out chunks as ranks free up (uneven task times). Rank 0 works too:
  its main thread runs chunks like any rank while a scheduler thread answers the others.

Nothing may hang on a dead rank. Every rank sends heartbeats on a communicator of their own
(rank 0 to all, the others to rank 0); every wait polls with ``Iprobe`` and gives up once a
peer has been silent for ``dead_after_s``. Rank 0 then reports the lost rank's chunks as
failed (retries rerun them elsewhere), consolidates, and aborts the MPI job so that nothing
waits for the dead rank in ``MPI_Finalize``. ``--resume`` later runs only what is missing.
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import queue
import sys
import threading
import time
from typing import Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import SpecError
from ..plan import Chunk, auto_chunk_size, make_chunks, plan_tasks, shard_bounds
from ..tasks import ChunkResult, WorkOrder, execute_chunk
from .base import Backend

log = logging.getLogger("hpcml.mpi")

TAG_READY, TAG_WORK, TAG_JOB, TAG_STOP, TAG_PREP, TAG_BEAT = 11, 12, 13, 14, 15, 16


class MPIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["static", "dynamic"] = Field("dynamic", description="static split or rank 0 hands out chunks")
    layout: Literal["cyclic", "block"] = Field("cyclic", description="static: which rank takes which task")
    threads_per_rank: int | None = Field(None, gt=0, description="threads per rank (hybrid runs); sets threads_per_task")
    heartbeat_s: float = Field(2.0, gt=0, description="seconds between heartbeats")
    dead_after_s: float = Field(30.0, gt=0, description="a rank silent this long is declared lost")
    deadline_s: float | None = Field(None, gt=0, description="wall-clock limit of the whole run (unfinished work is lost)")

    @field_validator("dead_after_s")
    @classmethod
    def _longer_than_beat(cls, value: float, info):
        beat = info.data.get("heartbeat_s")
        if beat is not None and value < 2 * beat:
            raise ValueError(f"must be at least twice heartbeat_s ({beat:g})")
        return value


def _mpi():
    from mpi4py import MPI

    return MPI


class Liveness:
    """Heartbeats on a duplicated communicator, so they never mix with work messages."""

    def __init__(self, comm, heartbeat_s: float, dead_after_s: float):
        self.comm = comm.Dup()
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.heartbeat_s, self.dead_after_s = heartbeat_s, dead_after_s
        self.peers = list(range(1, self.size)) if self.rank == 0 else [0]
        now = time.monotonic()
        self.last = {p: now for p in self.peers}
        self.dead: set[int] = set()
        self._stop = threading.Event()
        self._sends: list = []
        self._thread = threading.Thread(target=self._beat, name="hpcml-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            for p in self.peers:
                if p not in self.dead:
                    self._sends.append(self.comm.isend(None, p, TAG_BEAT))
            self._sends = [r for r in self._sends if not r.test()[0]]

    def poll(self) -> set[int]:
        """Drain heartbeats; return peers newly declared lost."""
        MPI = _mpi()
        status = MPI.Status()
        while self.comm.iprobe(MPI.ANY_SOURCE, TAG_BEAT, status):
            self.comm.recv(source=status.Get_source(), tag=TAG_BEAT)
            self.last[status.Get_source()] = time.monotonic()
        now = time.monotonic()
        lost = {p for p, t in self.last.items() if p not in self.dead and now - t > self.dead_after_s}
        self.dead |= lost
        return lost

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.heartbeat_s + 5)


def wait_message(comm, live: Liveness, source: int, deadline: float | None):
    """Block (polling) for the next message from ``source``; ``(tag, payload)``. Never forever."""
    MPI = _mpi()
    status, pause = MPI.Status(), 0.0002
    while True:
        if comm.iprobe(source, MPI.ANY_TAG, status):
            return status.Get_tag(), comm.recv(source=source, tag=status.Get_tag())
        if live.poll() and source in live.dead:
            raise RankLost(f"MPI rank {source} stopped responding (no heartbeat for {live.dead_after_s:g}s)")
        if deadline is not None and time.monotonic() > deadline:
            raise RankLost("backend.deadline_s passed while waiting for MPI rank %d" % source)
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


class RankLost(RuntimeError):
    pass


class _Session:
    """What every rank of one MPI run shares: communicators, heartbeats, options."""

    def __init__(self, options: MPIOptions):
        MPI = _mpi()
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.options = options
        self.live = Liveness(MPI.COMM_WORLD, options.heartbeat_s, options.dead_after_s)
        self.deadline = time.monotonic() + options.deadline_s if options.deadline_s else None

    def abort_at_exit(self, code: int) -> None:
        # A lost rank never reaches MPI_Finalize; abort after the summary is printed instead.
        log.error("MPI rank(s) %s lost; ending the MPI job (rerun with --resume to finish what is missing)",
                  ", ".join(map(str, sorted(self.live.dead))) or "?")
        atexit.register(lambda: (sys.stdout.flush(), sys.stderr.flush(), self.comm.Abort(code)))


_SESSION: _Session | None = None


class MPIBackend(Backend):
    """Dynamic master/worker scheduling, driven by the runner on rank 0."""

    name = "mpi"
    Options = MPIOptions

    def __init__(self, workers=None, options=None):
        super().__init__(workers, options)
        self._session: _Session | None = None
        self._scheduler: _Scheduler | None = None

    @property
    def workers(self) -> int:
        return self._session.size if self._session else (_SESSION.size if _SESSION else 1)

    def start(self, job_json: str) -> None:
        global _SESSION
        if _SESSION is None:
            if _mpi().COMM_WORLD.Get_size() > 1:
                raise SpecError.one("backend.name", "mpi", "under an MPI launcher start the run on every rank with "
                                    "`hpcml run --backend mpi`, `python -m hpcml.pack` or hpcml.backends.mpi.run_under_mpi")
            _SESSION = _Session(self.options)  # one process: rank 0 does everything
        self._session = _SESSION
        self._scheduler = _Scheduler(self._session, job_json)

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        assert self._scheduler is not None, "start() first"
        yield from self._scheduler.run(list(orders))

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None


class _Scheduler:
    """Rank 0: a thread answers ranks asking for work; the calling thread runs chunks too."""

    def __init__(self, session: _Session, job_json: str):
        self.s = session
        self.pending: collections.deque[WorkOrder] = collections.deque()
        self.results: queue.Queue[ChunkResult] = queue.Queue()
        self.lock = threading.Lock()
        self.idle: collections.deque[int] = collections.deque()
        self.busy: dict[int, WorkOrder] = {}
        self._stop = threading.Event()
        for r in range(1, session.size):
            if r not in session.live.dead:
                session.comm.send(job_json, r, TAG_JOB)
        self._thread = threading.Thread(target=self._serve, name="hpcml-scheduler", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        MPI, comm, live = _mpi(), self.s.comm, self.s.live
        status, pause = MPI.Status(), 0.0002
        while not self._stop.is_set():
            busy = False
            while comm.iprobe(MPI.ANY_SOURCE, TAG_READY, status):
                src, busy = status.Get_source(), True
                result = comm.recv(source=src, tag=TAG_READY)
                with self.lock:
                    if self.busy.pop(src, None) is not None and result is not None:
                        self.results.put(result)
                    if src not in live.dead:
                        self.idle.append(src)
            with self.lock:
                while self.idle and self.pending:
                    rank, order = self.idle.popleft(), self.pending.popleft()
                    self.busy[rank] = order
                    comm.send((order.chunk.indices, order.attempt, order.run_dir, order.write), rank, TAG_WORK)
                    busy = True
                for rank in live.poll():
                    if rank in self.idle:
                        self.idle.remove(rank)
                    if rank in self.busy:
                        self.results.put(ChunkResult.lost(self.busy.pop(rank).chunk, f"MPI rank {rank} stopped "
                                                          f"responding (no heartbeat for {live.dead_after_s:g}s)"))
                if self.s.deadline is not None and time.monotonic() > self.s.deadline:
                    for order in [*self.busy.values(), *self.pending]:
                        self.results.put(ChunkResult.lost(order.chunk, "backend.deadline_s passed"))
                    self.busy.clear()
                    self.pending.clear()
            pause = 0.0002 if busy else min(pause * 2, 0.005)
            time.sleep(pause)

    def run(self, orders: list[WorkOrder]) -> Iterator[ChunkResult]:
        with self.lock:
            self.pending.extend(orders)
        remaining = len(orders)
        while remaining:
            while True:  # results from other ranks first: they are cheap to hand on
                try:
                    result = self.results.get_nowait()
                except queue.Empty:
                    break
                remaining -= 1
                yield result
            with self.lock:
                mine = self.pending.popleft() if self.pending else None
            if mine is not None:
                remaining -= 1
                yield execute_chunk(mine)
            elif remaining:
                try:
                    result = self.results.get(timeout=0.05)
                except queue.Empty:
                    continue
                remaining -= 1
                yield result

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _worker_loop(session: _Session) -> int:
    """Ranks > 0 in dynamic mode: ask for work, run it, send the result back; rank 0 says stop."""
    comm = session.comm
    job_json = None
    comm.send(None, 0, TAG_READY)
    while True:
        tag, payload = wait_message(comm, session.live, 0, None)
        if tag == TAG_STOP:
            return int(payload)
        if tag == TAG_JOB:
            job_json = payload
            continue
        indices, attempt, run_dir, write = payload
        result = execute_chunk(WorkOrder(job_json, run_dir, Chunk(tuple(indices)), attempt, write))
        comm.send(result, 0, TAG_READY)


def rank_share(todo: list[int], rank: int, size: int, layout: str) -> list[int]:
    """The tasks one rank runs in static mode (the seed's bundler: task index -> rank)."""
    if layout == "cyclic":
        return todo[rank::size]
    start, stop = shard_bounds(len(todo), rank, size)
    return todo[start:stop]


def _with_threads(job, options: MPIOptions):
    if options.threads_per_rank is None or options.threads_per_rank == job.spec.threads_per_task:
        return job
    from ..spec import Job

    return Job(job.spec.model_copy(update={"threads_per_task": options.threads_per_rank}))


def run_under_mpi(job, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
    """Run ``job`` on every rank of this MPI launch; the RunResult on rank 0, None elsewhere.

    Bad input raises SpecError on every rank (with the problems on rank 0 only, so the
    message is printed once). Works without a launcher too: one rank does everything.
    """
    global _SESSION
    options = MPIOptions(**(job.spec.backend.model_extra or {}))
    job = _with_threads(job, options)
    os.environ.setdefault("OMP_NUM_THREADS", str(job.spec.threads_per_task))  # for R or other child processes
    _SESSION = session = _Session(options)
    try:
        if options.mode == "static":
            from ..pack import run_static

            return run_static(session, job, resume=resume, overwrite=overwrite, progress=progress)
        if session.rank != 0:
            code = _worker_loop(session)
            if code == 2:
                raise SpecError([])  # rank 0 prints the problems
            if code:
                raise SystemExit(code)
            return None
        return _drive_dynamic(session, job, resume, overwrite, progress)
    except RankLost as err:
        log.error("rank %d: %s; ending the MPI job", session.rank, err)
        sys.stderr.flush()
        session.comm.Abort(1)
    finally:
        session.live.close()
        _SESSION = None


def _drive_dynamic(session: _Session, job, resume: bool, overwrite: bool, progress: bool):
    from ..runner import execute

    code = 1
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # the scheduler thread answers promptly while rank 0 computes
    try:
        result = execute(job, resume=resume, overwrite=overwrite, progress=progress)
        code = 0
        return result
    except SpecError:
        code = 2
        raise
    finally:
        sys.setswitchinterval(switch)
        for r in range(1, session.size):
            if r not in session.live.dead:
                session.comm.send(code, r, TAG_STOP)
        if session.live.dead:
            session.abort_at_exit(1)
