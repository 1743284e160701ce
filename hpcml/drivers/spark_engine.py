"""``engine: spark``: distributed pyspark.ml fits of the whole data set (data too big for one node).

Where the hpcml engine runs many independent single-node fits, this engine runs each fit with
Spark MLlib over a Parquet/CSV data set that Spark reads in partitions, so the data never has
to fit in one process. The run directory is the same as any run's (spec.json, chunks/,
results.parquet, summary.json) and the output columns carry the same names as the single-node
kinds (``coef_bmi``, ``center_1_x0``, ``evr_1``...), so the two engines compare column by column.

Models (``spark_fitters``, ``spark_als``): ols -> LinearRegression (normal equations),
logistic -> LogisticRegression (unpenalised), naive_bayes -> NaiveBayes, kmeans -> KMeans
(k-means||), pca -> PCA, als -> ALS. Plans: ``fit`` (one fit of all the rows), ``cv`` (each
fold one fit; folds cut from Spark's ``rand(seed + repeat)``) and ``sweep`` (each grid point
one fit, scored on the rows with ``rand(seed) < holdout``); one record per task, as the plan's
records are on any engine, so the plan's own summary reads them. pca runs as ``fit`` only.
"""
from __future__ import annotations

import glob
import logging
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from hpcml.backends.spark import SparkHandle, SparkOptions, spark_error_line, spark_session
from hpcml.drivers.attempts import refuse_retries_and_timeout
from hpcml.drivers.finish import finish
from hpcml.drivers.spark_als import ALS_KIND, whole_als
from hpcml.drivers.spark_fitters import KINDS as FITTED_KINDS, WHOLE
from hpcml.drivers.spark_frames import SPLIT, prepare, with_split
from hpcml.data.row_blocks import file_bytes
from hpcml.errors import SpecError
from hpcml.rundir.opening import open_run
from hpcml.rundir.store import Chunk, write_chunk_records
from hpcml.spec import Job
from hpcml.tasks.task_records import failure_record, ok_record

log = logging.getLogger("hpcml")

KINDS = {**FITTED_KINDS, "als": ALS_KIND}
MODELS = ("ols", "logistic", "naive_bayes", "kmeans", "pca", "als")


def _whole(name: str) -> Callable[..., dict[str, float]]:
    """``plan: fit``'s record of kind ``name``: (job, data, features, facts) -> outputs."""
    own = {**WHOLE, "als": whole_als}.get(name) or KINDS[name].whole
    return lambda job, data, features, facts: own(job.params, data, features, facts, job.spec.seed)


FITTERS = {name: _whole(name) for name in MODELS}


def static_problems(job: Job) -> None:
    """Everything that can be found wrong without starting Spark."""
    refuse_retries_and_timeout(job, "engine: spark runs distributed fits (Spark retries its own failed tasks)")
    spec = job.spec
    if spec.model.kind not in MODELS:
        raise SpecError.one("model.kind", spec.model.kind, f"engine: spark supports {', '.join(MODELS)}")
    if not (job.plan.single_fit or job.plan.splits_by_draw):
        raise SpecError.one("plan", spec.plan.kind, "engine: spark runs MLlib fits for plan fit, cv or sweep; "
                            "use one of those (or engine: hpcml)")
    if not job.plan.single_fit and KINDS[spec.model.kind].score is None:
        raise SpecError.one("plan", spec.plan.kind, f"engine: spark fits {spec.model.kind} for plan: fit only")
    if spec.model.kind == "pca" and job.params.scale:
        raise SpecError.one("model.scale", True, "engine: spark fits PCA of the unscaled columns; scale them first "
                            "or use engine: hpcml")
    source = spec.data.source
    if "://" in source:  # hdfs://, s3a://...: only Spark can look there
        return
    if not source.lower().rstrip("/").endswith((".csv", ".parquet")) and not Path(source).is_dir():
        raise SpecError.one("data.source", source,
                            "engine: spark reads .csv or .parquet data (a file, a directory of parts, or a glob)")
    if not glob.glob(source):
        raise SpecError.one("data.source", source, "file not found")


def _spark_options(job: Job):
    backend = job.spec.backend
    # Spark options apply only when the spec names the spark backend; another backend's
    # options (e.g. local's start_method) mean nothing to this engine.
    return SparkOptions(**(backend.model_extra or {})) if backend.name == "spark" else SparkOptions()


def execute_mllib(job: Job, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
    """Run an ``engine: spark`` job; returns the same RunResult as any run."""
    t0 = time.perf_counter()
    static_problems(job)
    try:
        import pyspark  # noqa: F401
    except ImportError as err:
        raise SpecError.one("engine", "spark", f"needs the 'spark' extra: pip install 'hpcml[spark]' ({err})") from None
    with open_run(job, resume=resume, overwrite=overwrite) as run:
        return _fit_and_finish(job, run, t0)


def _fit_and_finish(job: Job, run, t0: float):
    store = run.store
    todo = [i for i in range(job.n_tasks) if i not in store.completed()]
    if not todo:
        log.info("%s: the fits are already in %s", job.spec.name, store.path)
        return finish(job, store, time.perf_counter() - t0)
    options = _spark_options(job)
    handle = spark_session(options, job.spec.backend.workers, store.log_dir)
    try:
        data, features, facts = prepare(handle.spark, job)  # bad input here leaves no new run directory
        run.keep()
        splits = _Splits(data, job.spec.seed)
        try:
            for index in todo:
                if job.plan.single_fit:
                    record = _fit_record(job, data, features, facts, handle)
                else:
                    record = _task_record(job, index, lambda: _plan_task(job, index, splits, features, facts), handle)
                write_chunk_records(store.path, Chunk((index,)), [record])
                if record["status"] != "ok" and not handle.alive():
                    break  # Spark is gone (its JVM ran out of memory): the other tasks stay missing
        finally:
            if handle.alive():
                splits.unpersist()
                data.unpersist()
    finally:
        handle.stop()
    return finish(job, store, time.perf_counter() - t0, run_extra={"engine": "spark", "rows": facts["n"]},
                  load_data=fits_in_the_driver(job))


def fits_in_the_driver(job: Job) -> bool:
    """Whether the summary may read the data into this process (a ``fit``'s ``summary(lm)``
    table or loadings come from the single-node kind's refit): not for a source above
    ``data.blocks_above_mb``, which Spark read in partitions so that no process holds it all."""
    size = file_bytes(job.spec.data.source)
    return size is None or size < job.spec.data.blocks_above_mb * 2**20


class _Splits:
    """The data with a uniform draw per row (``SPLIT``) under seed ``seed + draw``: cv cuts a
    repeat's folds from it, sweep its held-out rows."""

    def __init__(self, data, seed: int):
        self.data, self.seed, self.frames = data, seed, {}

    def __call__(self, draw: int):
        if draw not in self.frames:
            for old in self.frames.values():  # a repeat's folds run in a row: one split kept at a time
                old.unpersist()
            self.frames = {draw: with_split(self.data, self.seed + draw)}
        return self.frames[draw]

    def unpersist(self) -> None:
        for frame in self.frames.values():
            frame.unpersist()


def _plan_task(job: Job, index: int, splits: _Splits, features: list[str], facts: dict) -> dict[str, Any]:
    """One task of a plan that holds rows out (a cv fold, a sweep point): an MLlib fit of the
    training rows, scored as the plan's single-node tasks are (``test_<metric>``, and
    ``train_<metric>`` where the plan scores them), with its outputs."""
    from pyspark.sql import functions as F

    kind, task = KINDS[job.model.name], job.plan.drawn_split(job, index)
    frame = splits(task.draw)
    held_out = (F.col(SPLIT) >= task.low) & (F.col(SPLIT) < task.high)
    train, test = frame.filter(~held_out), frame.filter(held_out)
    params = job.params_with(task.overrides) if task.overrides else job.params
    model = kind.fit(params, train, features, facts, job.spec.seed + task.fit_seed)
    scores = {f"test_{k}": v for k, v in kind.score(params, model, test, facts).items()}
    if task.score_train:
        scores.update({f"train_{k}": v for k, v in kind.score(params, model, train, facts).items()})
    return {**task.record, **scores, **kind.outputs(params, model, features, facts)}


def _fit_record(job: Job, data, features: list[str], facts: dict, handle: SparkHandle) -> dict[str, Any]:
    """The fit as the plan's one task record; a failure is a record, not a crash."""
    return _task_record(job, 0, lambda: {"rows": facts["n"], **FITTERS[job.model.name](job, data, features, facts)},
                        handle)


def _task_record(job: Job, index: int, compute: Callable[[], dict[str, Any]], handle: SparkHandle) -> dict[str, Any]:
    """A task's record; a failure's error is the line a user can act on: the Python or Spark
    error, or why Spark itself stopped (its JVM out of memory: "Job cancelled because
    SparkContext was shut down" alone would not say)."""
    t, task_id = time.perf_counter(), job.task_id(index)
    try:
        outputs = compute()
    except Exception as err:
        line = handle.death_line() or spark_error_line(err).replace("Spark task failed: ", "Spark fit failed: ")
        return failure_record(index, task_id, line, traceback.format_exc(), 0, time.perf_counter() - t)
    return ok_record(task_id, index, 0, time.perf_counter() - t, outputs)
