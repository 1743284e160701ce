"""Driving a run from one process: check, open the run directory, run the missing tasks on
a backend (the one retry loop), finish."""
from __future__ import annotations

import logging
import threading
import time

from hpcml.backends import make_backend
from hpcml.tasks.chunks import chunk_size_for
from hpcml.drivers.attempts import backend_running, in_this_process, run_attempts
from hpcml.drivers.finish import RunResult, finish, is_finished, recorded
from hpcml.errors import SpecError
from hpcml.report.progress import Progress
from hpcml.rundir.opening import OpenRun, open_run
from hpcml.rundir.records import missing
from hpcml.rundir.paths import check_output
from hpcml.spec import Job
from hpcml.rundir.store import RunStore
from hpcml.tasks.worker import execute_chunk
from hpcml.data import load_dataset

log = logging.getLogger("hpcml")

def check_job(job: Job, *, keep: bool = False) -> None:
    """Everything that can be known wrong before a run directory exists. ``keep``: the data
    stays in this process's cache (a job run in the driver loads it once)."""
    check_output(job.output)
    # Not kept by default: the driver needs the data again only for the summary (then mapped again).
    data = load_dataset(job, lazy=False, keep=keep)
    options = job.spec.plan.options
    problems = job.plan.check_model(job, data) + job.model.check_tasks(job.params, job.plan.task_layout(options)) \
        + job.plan.check(job, data)
    if problems:
        # one line per field, the first problem found for it
        seen: dict[str, tuple] = {}
        for p in problems:
            seen.setdefault(p[0], p)
        raise SpecError(list(seen.values()))


def execute(job: Job, *, backend=None, resume: bool = False, overwrite: bool = False, progress: bool = True,
            plots: bool = True) -> RunResult:
    """Run ``job``'s tasks on ``backend`` (default: the spec's) and return its results
    (``drivers/dispatch.py`` sends ``engine: spark`` and MPI launches elsewhere)."""
    t0 = time.perf_counter()
    spec = job.spec
    if resume and is_finished(job, RunStore(job.output)):
        # Nothing to run: the spec and data checks of a resume, then the run as it was
        # recorded (its summary and time are not rewritten).
        with open_run(job, resume=True) as run:
            if is_finished(job, run.store):
                log.info("%s: every task has a result; nothing to run", run.store.path)
                return recorded(job, run.store)
    if backend is None:
        backend = make_backend(spec.backend.name, spec.backend.workers, spec.backend.model_extra)
    here = may_run_in_driver(job, backend)
    alone = here or may_run_alone_in_driver(job, backend)
    check_job(job, keep=alone and not job.plan.reads_rows_lazily)  # else each task reads its own rows
    with open_run(job, resume=resume, overwrite=overwrite) as run:
        _run_missing(job, run, backend, resume, progress, here, alone)
        return finish(job, run.store, time.perf_counter() - t0, plots=plots)


def may_run_in_driver(job: Job, backend, own_code: bool = False) -> bool:
    """Whether the job's tasks may run in this process when they make one chunk: the backend
    allows it (local, ``in_driver``), the model kind is built-in code that cannot take the
    process down (or ``own_code``: the caller's own function, already in this process), and a
    ``timeout_s`` can be armed here as in a worker (an alarm: main thread)."""
    return backend.may_run_in_driver() and (own_code or job.model.runs_in_driver) and \
        (not job.spec.timeout_s or threading.current_thread() is threading.main_thread())


def may_run_alone_in_driver(job: Job, backend) -> bool:
    """Whether the job's one task may run in this process although its kind's tasks do not
    otherwise (``ModelKind.one_task_in_driver``: cnn): as :func:`may_run_in_driver`, for a job
    of one task only, and never beside workers."""
    return job.n_tasks == 1 and job.model.one_task_in_driver(job.params) and backend.may_run_in_driver() and \
        (not job.spec.timeout_s or threading.current_thread() is threading.main_thread())


def _run_missing(job: Job, run: OpenRun, backend, resume: bool, progress: bool, here: bool = False,
                 alone: bool = False) -> None:
    """``here``: chunks of the job may run in this process, one chunk alone or beside the
    workers; ``alone``: a job of one chunk may (as ``here``, or a one-task job of a kind that
    otherwise runs in workers)."""
    spec, store = job.spec, run.store
    todo = missing(job.n_tasks, store.done_indices() if resume else ())
    if not todo:
        return
    chunk_size = chunk_size_for(job, len(todo), backend.workers)
    if alone and len(todo) <= chunk_size:
        # One chunk gains nothing from a worker: run it here, as a worker would (same chunk
        # file, deadlines, retries), without starting a process that imports and loads it all again.
        bar = Progress(len(todo), f"{spec.name} [in the driver]", enabled=progress)
        try:
            run.keep()
            run_attempts(job, store, todo, chunk_size, in_this_process, progress=bar)
        finally:
            bar.close()
        return
    # A backend that cannot start (e.g. no scheduler at backend.address) leaves no new run directory.
    with backend_running(job, backend, store.log_dir, len(todo), progress=progress) as bar:
        run.keep()
        # A built-in kind may also run in the driver: it runs chunks while the workers start.
        run_orders = (lambda orders: backend.run_helped(orders, execute_chunk)) if here else backend.run
        run_attempts(job, store, todo, chunk_size, run_orders, writes_own_files=backend.shares_filesystem,
                     progress=bar)
