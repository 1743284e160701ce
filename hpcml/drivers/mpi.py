"""Running a job on every rank of one MPI launch (``mpirun``, ``srun``, ``ibrun``): the entry
of ``hpcml run --backend mpi``, ``python -m hpcml.pack`` and ``scripts/pack_tasks.py``.

- static: each rank takes its share of the missing tasks, cyclic or block by task index
  (the seeds' "bundler"), runs it and writes its own chunk files (``mpi_static``);
- dynamic: rank 0 drives the run with the ``mpi`` backend, which hands out chunks as ranks
  free up; the other ranks serve chunks until rank 0 says stop.

Nothing may hang on a dead rank (see ``hpcml.backends.mpi.liveness``): in dynamic mode rank 0
gives a lost rank's chunk to the ranks left (once; lost again, its tasks fail), consolidates,
and aborts the MPI job so that nothing waits for the dead rank in ``MPI_Finalize``; in static
mode a lost rank's unfinished share fails. ``--resume`` later runs only what is missing.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from hpcml.backends import missing_extra
from hpcml.backends.mpi.backend import MPIBackend
from hpcml.backends.mpi import last_words
from hpcml.backends.mpi.liveness import RankLost, mpi
from hpcml.backends.mpi.options import MPIOptions, check_fork_safety
from hpcml.backends.mpi.scheduler import serve_rank
from hpcml.backends.mpi.session import TAG_STOP, Session
from hpcml.drivers.mpi_static import run_static
from hpcml.drivers.row_blocks import execute_over_row_blocks, uses_row_blocks
from hpcml.drivers.run import execute
from hpcml.errors import SpecError
from hpcml.launchers import launcher_size
from hpcml.spec import Job

log = logging.getLogger("hpcml.mpi")


def _with_threads(job, options: MPIOptions):
    if options.threads_per_rank is None or options.threads_per_rank == job.spec.threads_per_task:
        return job

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


def run_under_mpi(job, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
    """Run ``job`` on every rank of this MPI launch; the RunResult on rank 0, None elsewhere.

    Bad input raises SpecError on every rank (with the problems on rank 0 only, so the
    message is printed once). Works without a launcher too: one rank does everything.
    """
    options = MPIOptions(**(job.spec.backend.model_extra or {}))
    job = _with_threads(job, options)
    check_fork_safety(job, options.mode)  # known before MPI starts: every rank raises, printed once
    _pin_child_threads(job.spec.threads_per_task)
    try:
        world = mpi().COMM_WORLD
    except ImportError as err:
        raise missing_extra("mpi", err) from None
    _check_launch(world.Get_size())
    session = Session(options)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = last_words.install(session)
    try:
        if session.rank == 0:
            _check_binding(job.spec.threads_per_task)
        if options.mode == "static" and not uses_row_blocks(job):  # a fit over row blocks: rank 0 combines passes
            return run_static(session, job, resume=resume, overwrite=overwrite, progress=progress)
        if session.rank != 0:
            code = serve_rank(session)
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


def _drive_dynamic(session: Session, job, resume: bool, overwrite: bool, progress: bool):
    code, result = 1, None
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # the scheduler thread answers promptly while rank 0 computes
    try:
        backend = MPIBackend(options=job.spec.backend.model_extra, session=session)
        run = execute_over_row_blocks if uses_row_blocks(job) else execute
        result = run(job, backend=backend, resume=resume, overwrite=overwrite, progress=progress)
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
        elif session.stuck:  # they would hold every rank in MPI_Finalize until their call returns
            session.abort_at_exit(1, complete=result is not None and result.n_failed == 0,
                                  why=f"MPI rank(s) {', '.join(map(str, sorted(session.stuck)))} still in a task "
                                      "given up on past timeout_s")
