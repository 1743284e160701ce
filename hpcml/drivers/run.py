"""Driving a run from one process: check, prepare the run directory, run the missing tasks on
a backend (the one retry loop), finish. ``engine: spark`` goes to its own driver."""
from __future__ import annotations

import logging
import time

from hpcml.backends import make_backend
from hpcml.chunks import chunk_size_for
from hpcml.drivers.attempts import run_attempts
from hpcml.drivers.finish import RunResult, finish, is_finished, recorded
from hpcml.errors import SpecError
from hpcml.progress import Progress
from hpcml.records import missing
from hpcml.rundir import check_output, remove_new_run
from hpcml.spec import Job
from hpcml.store import RunStore

log = logging.getLogger("hpcml")

def check_job(job: Job) -> None:
    """Everything that can be known wrong before a run directory exists."""
    from hpcml.data import load_dataset

    check_output(job.output)
    # Not kept: the driver needs the data again only for the summary (then mapped again).
    data = load_dataset(job, lazy=False, keep=False)
    # A sweep checks each grid point (the base alone may lack the grid's arguments).
    problems = job.model.check(job.params, data) if job.plan_kind != "sweep" else []
    problems += job.model.check_plan(job.params, job.spec.plan) + job.plan.check(job, data)
    if problems:
        # one line per field, the first problem found for it
        seen: dict[str, tuple] = {}
        for p in problems:
            seen.setdefault(p[0], p)
        raise SpecError(list(seen.values()))


def execute(job: Job, *, backend=None, resume: bool = False, overwrite: bool = False, progress: bool = True,
            plots: bool = True) -> RunResult:
    """Run ``job`` on ``backend`` (default: the spec's) and return its results."""
    t0 = time.perf_counter()
    spec = job.spec
    if spec.engine == "spark":  # one distributed MLlib fit instead of independent tasks
        from hpcml.drivers.spark_engine import execute_mllib

        return execute_mllib(job, resume=resume, overwrite=overwrite, progress=progress)
    store = RunStore(job.output)
    if resume and is_finished(job, store):
        # Nothing to run: the spec and data checks of a resume, then the run as it was
        # recorded (its summary and time are not rewritten).
        store.prepare(job, resume=True)
        try:
            if is_finished(job, store):
                log.info("%s: every task has a result; nothing to run", store.path)
                return recorded(job, store)
        finally:
            store.release()
    check_job(job)
    if backend is None:
        backend = make_backend(spec.backend.name, spec.backend.workers, spec.backend.model_extra)
    fresh = not (resume and store.exists())
    store.prepare(job, resume=resume, overwrite=overwrite)
    try:
        _run_missing(job, store, backend, resume, progress, fresh)
        return finish(job, store, time.perf_counter() - t0, plots=plots)
    finally:
        store.release()


def _run_missing(job: Job, store: RunStore, backend, resume: bool, progress: bool, fresh: bool) -> None:
    spec = job.spec
    todo = missing(job.n_tasks, store.done_indices() if resume else ())
    if not todo:
        return
    bar = Progress(len(todo), f"{spec.name} [{backend.name}]", enabled=progress)
    try:
        backend.start(job.to_json(), store.log_dir)
    except SpecError:  # e.g. no scheduler at backend.address: bad input leaves no run directory
        bar.close()
        if fresh:
            store.release()
            remove_new_run(store.path)
        raise
    try:
        chunk_size = chunk_size_for(job, len(todo), backend.workers)
        run_attempts(job, store, todo, chunk_size, backend.run, writes_own_files=backend.shares_filesystem,
                     progress=bar)
    finally:
        bar.close()
        backend.stop()
