"""The driver: validate, plan, hand chunks to a backend, retry failures, consolidate, summarize.

The only place that knows about retries, progress and the store. Backends only run chunks.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .backends import make_backend, missing_extra
from .data import load_dataset
from .errors import SpecError
from .plan import auto_chunk_size, make_chunks, plan_tasks
from .progress import Progress
from .spec import Job, load_job
from .store import RunStore, write_chunk_records
from .tasks import WorkOrder

log = logging.getLogger("hpcml")


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame
    summary: dict[str, Any]
    n_tasks: int
    n_failed: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def failures(self) -> pd.DataFrame:
        return self.results.loc[self.results["status"] != "ok"]


def check_job(job: Job) -> None:
    """Everything that can be known wrong before a run directory exists."""
    data = load_dataset(job)
    # A sweep checks each grid point below (the base alone may lack the grid's arguments).
    problems = job.model.check(job.params, data) if job.plan_kind != "sweep" else []
    problems += job.model.check_plan(job.params, job.spec.plan)
    if job.plan_kind == "cv" and job.spec.plan.cv.folds > data.n:
        problems.append(("plan.cv.folds", job.spec.plan.cv.folds, f"more folds than rows ({data.n})"))
    if job.plan_kind == "shards" and job.spec.plan.shards.n > data.n:
        problems.append(("plan.shards.n", job.spec.plan.shards.n, f"more shards than rows ({data.n})"))
    if job.plan_kind == "sweep":
        for task in plan_tasks(job)[:: job.spec.plan.sweep.repeats]:
            problems += job.model.check(job.params_with(task.params["params"]), data)
    if problems:
        # one line per field, the first problem found for it
        seen: dict[str, tuple] = {}
        for p in problems:
            seen.setdefault(p[0], p)
        raise SpecError(list(seen.values()))


def execute(job: Job, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
            plots: bool = True) -> RunResult:
    t0 = time.perf_counter()
    spec = job.spec
    if spec.engine == "spark":  # one distributed MLlib fit instead of independent tasks
        from .mllib import execute_mllib

        return execute_mllib(job, resume=resume, overwrite=overwrite, progress=progress)
    check_job(job)
    try:
        backend = make_backend(spec.backend.name, spec.backend.workers, spec.backend.model_extra)
    except ImportError as err:
        raise missing_extra(spec.backend.name, err) from None
    store = RunStore(job.output)
    store.prepare(job, resume=resume, overwrite=overwrite)
    tasks = plan_tasks(job)
    done = store.completed() if resume else set()
    todo = [t.index for t in tasks if t.index not in done]
    job_json = job.to_json()
    if todo:
        chunk_size = spec.backend.chunk_size or auto_chunk_size(len(todo), backend.workers)
        bar = Progress(len(todo), f"{spec.name} [{backend.name}]", enabled=progress)
        try:
            backend.start(job_json)
        except SpecError:  # e.g. no scheduler at backend.address: bad input leaves no run directory
            bar.close()
            if not resume:
                shutil.rmtree(store.path, ignore_errors=True)
            raise
        try:
            for attempt in range(spec.retries + 1):
                orders = [WorkOrder(job_json, str(store.path), c, attempt, backend.shares_filesystem)
                          for c in make_chunks(todo, chunk_size)]
                failed: list[int] = []
                for result in backend.run(orders):
                    if result.path is None:
                        # Records came back (no shared filesystem) or the worker was lost:
                        # the driver writes them, so every attempt leaves a trace.
                        write_chunk_records(store.path, result.chunk, result.records or _lost_records(tasks, result, attempt))
                    failed += sorted(result.failed)
                    final = attempt == spec.retries
                    bar.advance(len(result.ok), len(result.failed) if final else 0)
                if failed and backend.shares_filesystem:
                    # A worker that hung or died after writing its chunk file but before
                    # reporting it did finish those tasks: rerun only what has no ok record.
                    done = store.completed()
                    failed = [i for i in failed if i not in done]
                if failed and attempt < spec.retries:
                    log.info("retrying %d failed task(s), attempt %d of %d", len(failed), attempt + 2, spec.retries + 1)
                todo = sorted(failed)
                if not todo:
                    break
        finally:
            bar.close()
            backend.stop()
    return finish(job, store, time.perf_counter() - t0, plots=plots)


def _lost_records(tasks, result, attempt: int) -> list[dict[str, Any]]:
    return [{"task_id": tasks[i].id, "task_index": i, "status": "failed", "attempt": attempt, "seconds": 0.0,
             "error": msg, "traceback": ""} for i, msg in result.failed.items()]


def finish(job: Job, store: RunStore, seconds: float, plots: bool = True) -> RunResult:
    """Consolidate chunk files, summarize, plot. Also used by MPI ranks' rank 0."""
    from .summarize import summarize

    results = store.consolidate()
    n_tasks = len(plan_tasks(job))
    n_failed = n_tasks - int((results["status"] == "ok").sum()) if not results.empty else n_tasks
    summary = summarize(job, results, store.path)
    summary["run"] = {"tasks": n_tasks, "failed": n_failed, "seconds": round(seconds, 3),
                      "backend": job.spec.backend.name}
    store.write_summary(summary)
    if plots:  # callers that only want the numbers (the R package) skip a second of drawing
        from .plots import write_plots

        try:
            write_plots(job, results, summary, store.path / "plots")
        except Exception as err:  # a plot must never cost the results
            log.warning("plots skipped: %s", err)
    return RunResult(store.path, results, summary, n_tasks, n_failed, seconds)


def run(spec: str | Path | dict, *, backend: str | None = None, workers: int | None = None,
        out: str | Path | None = None, chunk_size: int | None = None, resume: bool = False,
        overwrite: bool = False, progress: bool = True, plots: bool = True, data: Any = None,
        **backend_options: Any) -> RunResult:
    """Run a job from a YAML path or a mapping; keyword arguments override the spec.

    ``data``: a pandas DataFrame or 2-D NumPy array to use instead of the spec's data source
    (stored once by content under the cache directory, see :mod:`hpcml.frames`).
    """
    overrides = {"backend.name": backend, "backend.workers": workers, "backend.chunk_size": chunk_size,
                 "output": str(out) if out is not None else None}
    if data is not None:
        from .frames import frame_source

        overrides["data.source"] = frame_source(data)
    overrides.update({f"backend.{k}": v for k, v in backend_options.items()})
    job = load_job(spec, **overrides)
    return execute(job, resume=resume, overwrite=overwrite, progress=progress, plots=plots)
