"""MPI packing: a job's tasks on the ranks of one MPI launch (mpirun, srun, ibrun).

Every rank runs the same command (``hpcml run --backend mpi``, ``python -m hpcml.pack`` or
``scripts/pack_tasks.py``); rank and size come from mpi4py.

- static: each rank takes its share of the missing tasks, cyclic or block by task index
  (the seeds' "bundler"), runs it and writes its own chunk files. No coordinator: rank 0
  only prepares the run directory first and consolidates at the end (``hpcml.pack``).
- dynamic: rank 0 hands out chunks as ranks free up (uneven task times). Rank 0 works too
  (unless ``rank0_works: false``): its main thread runs chunks like any rank while a
  scheduler thread answers the others.

Nothing may hang on a dead rank (see ``mpi_liveness``): rank 0 reports a lost rank's chunks as
failed (retries rerun them elsewhere), consolidates, and aborts the MPI job so that nothing
waits for the dead rank in ``MPI_Finalize``. ``--resume`` later runs only what is missing.
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpcml.errors import SpecError
from hpcml.launchers import launcher_rank, launcher_size
from hpcml.plan import Chunk, shard_bounds
from hpcml.worker import ChunkResult, WorkOrder, execute_chunk
from hpcml.backends.base import Backend
from hpcml.backends.mpi.liveness import Liveness, Outbox, RankLost, backoff, mpi, wait_message

log = logging.getLogger("hpcml.mpi")

TAG_READY, TAG_WORK, TAG_JOB, TAG_STOP, TAG_PREP, TAG_DONE = 11, 12, 13, 14, 15, 17
__all__ = ["MPIBackend", "MPIOptions", "RankLost", "launcher_rank", "rank_share", "run_under_mpi", "wait_message"]


class MPIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["static", "dynamic"] = Field("dynamic", description="static split or rank 0 hands out chunks")
    layout: Literal["cyclic", "block"] = Field("cyclic", description="static: which rank takes which task")
    threads_per_rank: int | None = Field(None, gt=0, description="threads per rank (hybrid runs); sets threads_per_task")
    rank0_works: bool = Field(True, description="dynamic: rank 0 runs chunks too, besides handing them out")
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


class _Session:
    """What every rank of one MPI run shares: communicators, heartbeats, sends, options."""

    def __init__(self, options: MPIOptions):
        MPI = mpi()
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.options = options
        self.live = Liveness(MPI.COMM_WORLD, options.heartbeat_s, options.dead_after_s)
        self.outbox = Outbox(self.comm)
        self.deadline = time.monotonic() + options.deadline_s if options.deadline_s else None

    def abort_at_exit(self, code: int, complete: bool, why: str | None = None) -> None:
        # A lost rank never reaches MPI_Finalize, and the others would wait for it there:
        # abort once the summary is printed (atexit runs before mpi4py's own finalize hook).
        why = why or f"MPI rank(s) {', '.join(map(str, sorted(self.live.dead))) or '?'} lost"
        then = "the results are complete" if complete else "rerun with --resume to finish what is missing"
        log.error("%s; ending the MPI job (%s)", why, then)
        atexit.register(lambda: (sys.stdout.flush(), sys.stderr.flush(), self.comm.Abort(code)))

    def close(self) -> None:
        self.live.close()


_SESSION: _Session | None = None


class MPIBackend(Backend):
    """Dynamic master/worker scheduling, driven by the runner on rank 0."""

    name = "mpi"
    Options = MPIOptions

    def __init__(self, workers=None, options=None):
        super().__init__(workers, options)
        self._session: _Session | None = None
        self._owned = False
        self._scheduler: _Scheduler | None = None

    @property
    def workers(self) -> int:
        return self._session.size if self._session else (_SESSION.size if _SESSION else 1)

    def start(self, job_json: str) -> None:
        if _SESSION is None:
            if mpi().COMM_WORLD.Get_size() > 1:
                raise SpecError.one("backend.name", "mpi", "under an MPI launcher start the run on every rank with "
                                    "`hpcml run --backend mpi`, `python -m hpcml.pack` or hpcml.backends.mpi.run_under_mpi")
            self._session, self._owned = _Session(self.options), True  # one process: rank 0 does everything
        else:
            self._session = _SESSION
        self._scheduler = _Scheduler(self._session, job_json)

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        assert self._scheduler is not None, "start() first"
        yield from self._scheduler.run(list(orders))

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None
        if self._owned and self._session is not None:
            self._session.close()
            self._session, self._owned = None, False


class _Scheduler:
    """Rank 0: a thread answers ranks asking for work; the calling thread runs chunks too."""

    def __init__(self, session: _Session, job_json: str):
        self.s = session
        self.pending: collections.deque[WorkOrder] = collections.deque()
        self.results: queue.Queue[ChunkResult] = queue.Queue()
        self.lock = threading.Lock()
        self.idle: collections.deque[int] = collections.deque()
        self.busy: dict[int, WorkOrder] = {}
        self.failure: str | None = None
        self._stop = threading.Event()
        for r in range(1, session.size):
            if r not in session.live.dead:
                session.outbox.send(job_json, r, TAG_JOB)
        self._thread = threading.Thread(target=self._serve, name="hpcml-scheduler", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._serve_loop()
        except BaseException as err:  # never leave the runner waiting for results that cannot come
            self.failure = f"MPI scheduler stopped: {type(err).__name__}: {err}"
            log.error("%s", self.failure)
            with self.lock:
                self._lose_all(self.failure)

    def _lose_all(self, reason: str) -> None:
        self._lose_pending(reason)
        for order in self.busy.values():
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
                    if self.busy.pop(src, None) is not None and result is not None:
                        self.results.put(result)
                    if src not in live.dead:
                        self.idle.append(src)
            with self.lock:
                while self.idle and self.pending:
                    rank, order = self.idle.popleft(), self.pending.popleft()
                    self.busy[rank] = order
                    outbox.send((order.chunk.indices, order.attempt, order.run_dir, order.write), rank, TAG_WORK)
                    busy = True
                for rank in live.poll():
                    if rank in self.idle:
                        self.idle.remove(rank)
                    if rank in self.busy:
                        self.results.put(ChunkResult.lost(self.busy.pop(rank).chunk, live.lost_message(rank)))
                # At the deadline nothing new starts; chunks under way get dead_after_s to finish.
                if self._past_deadline():
                    self._lose_pending("backend.deadline_s passed before this task ran")
                if self._past_deadline(live.dead_after_s):
                    self._lose_all("backend.deadline_s passed while this task was running")
            outbox.reap()
            pause = backoff(pause, busy, ceiling=0.005)
            time.sleep(pause)

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
        while remaining:
            while True:  # results from other ranks first: they are cheap to hand on
                try:
                    result = self.results.get_nowait()
                except queue.Empty:
                    break
                remaining -= 1
                yield result
            if not remaining:
                break
            alone = len(self.s.live.dead) == self.s.size - 1
            with self.lock:
                take = self.pending and (works or alone) and not self._past_deadline()
                mine = self.pending.popleft() if take else None
            if mine is not None:
                remaining -= 1
                yield execute_chunk(mine)
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


def _worker_loop(session: _Session) -> int:
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
        result = execute_chunk(WorkOrder(job_json, run_dir, Chunk(tuple(indices)), attempt, write))
        outbox.send(result, 0, TAG_READY)


def rank_share(todo: list[int], rank: int, size: int, layout: str) -> list[int]:
    """The tasks one rank runs in static mode (the seed's bundler: task index -> rank)."""
    if layout == "cyclic":
        return todo[rank::size]
    start, stop = shard_bounds(len(todo), rank, size)
    return todo[start:stop]


def _with_threads(job, options: MPIOptions):
    if options.threads_per_rank is None or options.threads_per_rank == job.spec.threads_per_task:
        return job
    from hpcml.spec import Job

    return Job(job.spec.model_copy(update={"threads_per_task": options.threads_per_rank}))


def _check_launch(size: int) -> None:
    """Every rank seeing size 1 under an N-task launch would run the whole job N times over."""
    if size != 1:
        return
    launched = launcher_size()
    if launched is not None:
        var, value = launched
        raise SpecError.one("backend.name", "mpi", f"the launcher started {value} tasks ({var}) but MPI sees one "
                            "rank: mpi4py is not built for this launcher's MPI (with srun try --mpi=pmix or pmi2, "
                            "or use the MPI's own mpirun)")


def _check_binding(threads: int) -> None:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if threads > cpus:
        log.warning("rank 0 may use only %d core(s) but runs %d threads per task: the threads will share them; "
                    "launch with `mpirun --bind-to none` (or --map-by ...:PE=%d) or `srun --cpus-per-task=%d`",
                    cpus, threads, threads, threads)


def _pin_child_threads(threads: int) -> None:
    # threadpoolctl pins BLAS/OpenMP in this process; child processes (Rscript, R's doParallel
    # workers) read these. A value the user set explicitly wins.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def _on_terminate(rank: int):
    def handler(signum, frame):
        if rank == 0:
            os.write(2, (f"hpcml: rank 0 stopped by signal {signum} (the launcher ended the job: a rank died, "
                         "the job was cancelled or ran out of time); finished chunks are kept, rerun with "
                         "--resume to finish what is missing\n").encode())
        os._exit(128 + signum)
    return handler


def run_under_mpi(job, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
    """Run ``job`` on every rank of this MPI launch; the RunResult on rank 0, None elsewhere.

    Bad input raises SpecError on every rank (with the problems on rank 0 only, so the
    message is printed once). Works without a launcher too: one rank does everything.
    """
    global _SESSION
    options = MPIOptions(**(job.spec.backend.model_extra or {}))
    job = _with_threads(job, options)
    _pin_child_threads(job.spec.threads_per_task)
    try:
        world = mpi().COMM_WORLD
    except ImportError as err:
        from hpcml.backends import missing_extra

        raise missing_extra("mpi", err) from None
    _check_launch(world.Get_size())
    _SESSION = session = _Session(options)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_terminate(session.rank))
    try:
        if session.rank == 0:
            _check_binding(job.spec.threads_per_task)
        if options.mode == "static":
            from hpcml.pack import run_static

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
        log.error("rank %d: %s; ending the MPI job (rerun with --resume to finish what is missing)", session.rank, err)
        sys.stderr.flush()
        session.comm.Abort(1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        session.close()
        _SESSION = None


def _drive_dynamic(session: _Session, job, resume: bool, overwrite: bool, progress: bool):
    from hpcml.runner import execute

    code, result = 1, None
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
                session.outbox.send(code, r, TAG_STOP)
        session.outbox.flush(session.live, timeout_s=session.options.dead_after_s)
        if session.live.dead:
            session.abort_at_exit(1, complete=result is not None and result.n_failed == 0)
