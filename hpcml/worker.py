"""Worker side: run one chunk of tasks and write its result file.

A worker gets a :class:`WorkOrder` (the job as JSON, the run directory, the task indices):
it rebuilds the job and loads the data once per process (both cached), runs each task with
its own seeded generator and pinned threads, and writes the chunk's records atomically.
Nothing here raises for a task's failure: a failure is a record with its traceback.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcml.models.base import Dataset, FitContext
from hpcml.plan import Chunk, Task, cv_folds, holdout_mask, plan_tasks, shard_bounds, task_rng

log = logging.getLogger("hpcml.worker")


@dataclass(frozen=True)
class WorkOrder:
    job_json: str
    run_dir: str
    chunk: Chunk
    attempt: int = 0
    # False where workers cannot see the run directory: records travel back to the driver.
    write: bool = True


@dataclass
class ChunkResult:
    chunk: Chunk
    ok: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # task index -> one-line error
    records: list[dict[str, Any]] | None = None
    seconds: float = 0.0
    path: str | None = None

    @classmethod
    def lost(cls, chunk: Chunk, reason: str) -> "ChunkResult":
        """A chunk whose worker died or vanished: every task in it failed with ``reason``."""
        return cls(chunk, failed={i: reason for i in chunk.indices})


@functools.lru_cache(maxsize=4)
def _job_and_tasks(job_json: str):
    from hpcml.spec import Job

    job = Job.from_json(job_json)
    return job, {t.index: t for t in plan_tasks(job)}


@functools.lru_cache(maxsize=8)
def _plan_masks(job_json: str, n: int) -> dict[str, Any]:
    """Per-process cache of what all tasks share: CV fold labels, the sweep holdout."""
    job, _ = _job_and_tasks(job_json)
    plan = job.spec.plan
    if plan.kind == "cv":
        return {"folds": [cv_folds(job.spec.seed, n, plan.cv.folds, r) for r in range(plan.cv.repeats)]}
    if plan.kind == "sweep":
        return {"holdout": holdout_mask(job.spec.seed, n, plan.sweep.holdout)}
    return {}


@functools.lru_cache(maxsize=4)
def _thread_controller(job_json: str):
    """The BLAS/OpenMP pools of this process, scanned once per job, not once per chunk.

    ``threadpool_limits`` rescans every loaded library on each call (milliseconds per
    chunk). The first chunk of a job creates this after the model kind and the data are
    loaded, so the pools they brought in are seen.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class TaskTimeout(Exception):
    pass


def _timeout_message(seconds: float) -> str:
    return f"task exceeded timeout_s={seconds:g}"


@contextmanager
def _deadline(seconds: float | None):
    if not seconds:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _alarm_deadline(seconds):
            yield
    else:
        with _thread_deadline(seconds):
            yield


@contextmanager
def _alarm_deadline(seconds: float):
    # Process-based workers (local, MPI, Spark's Python workers): SIGALRM interrupts the task
    # wherever it is, even inside a long call into C once that call checks for signals.
    def _raise(signum, frame):
        raise TaskTimeout(_timeout_message(seconds))

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _thread_deadline(seconds: float):
    """A deadline for a task in a worker thread (Dask), where no signal handler runs.

    A timer raises TaskTimeout asynchronously in the task's thread: Python code stops at its
    next bytecode; a long call into C (BLAS, time.sleep, R) stops when it returns to Python.
    """
    message = _timeout_message(seconds)
    timeout_type = type("TaskTimeout", (TaskTimeout,), {"__init__": lambda self: TaskTimeout.__init__(self, message)})
    tid = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"running": True, "fired": False}

    def fire():
        with lock:  # never after the task has left the block below
            if state["running"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.py_object(timeout_type))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    start = time.perf_counter()
    timer.start()
    try:
        yield
    finally:
        # The exception may still be pending if it fired as the task returned: until the lock
        # is held and the pending exception cleared, it can surface here, so retry.
        while True:
            try:
                with lock:
                    state["running"] = False
                    if state["fired"]:
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, None)
                break
            except TaskTimeout:
                continue
        timer.cancel()
    if time.perf_counter() - start > seconds:
        raise TaskTimeout(message)  # ran past the limit inside C code and returned normally


def _subset(data: Dataset, start: int, stop: int) -> Dataset:
    return Dataset(X=data.X[start:stop], y=None if data.y is None else data.y[start:stop], features=data.features,
                   target=data.target, image_shape=data.image_shape, classes=data.classes, test=data.test, meta=data.meta)


def _scratch_dir(run_dir: str, task_id: str) -> Path:
    return Path(run_dir, "artifacts", task_id.replace("/", "-"))


def run_task(job, data: Dataset, task: Task, run_dir: str | None, shared: dict[str, Any]) -> dict[str, Any]:
    """One task's record of outputs (raises on failure; the caller records it)."""
    model, spec = job.model, job.spec
    # The generator and the scratch path are built only if the model asks for them.
    ctx = FitContext(rng_factory=functools.partial(task_rng, spec.seed, task.index), threads=spec.threads_per_task,
                     scratch_factory=functools.partial(_scratch_dir, run_dir, task.id) if run_dir else None,
                     log=log, task_id=task.id, task_index=task.index, task_params=task.params, seed=spec.seed)
    kind = job.plan_kind
    params = job.params
    record: dict[str, Any] = {}
    if kind == "bootstrap":
        # A replicate is a vector of resampling counts, not a resampled copy of the data.
        weights = np.bincount(ctx.rng.integers(0, data.n, data.n), minlength=data.n).astype(np.float64)
        fitted = model.fit(params, data, weights, ctx)
        record.update(model.outputs(params, fitted, data))
    elif kind == "cv":
        fold, repeat = task.params["fold"], task.params["repeat"]
        test = shared["folds"][repeat] == fold
        fitted = model.fit(params, data, (~test).astype(np.float64), ctx)
        record.update(repeat=repeat, fold=fold)
        record.update({f"test_{k}": v for k, v in model.score(params, fitted, data, test).items()})
        record.update({f"train_{k}": v for k, v in model.score(params, fitted, data, ~test).items()})
        record.update(model.outputs(params, fitted, data))
    elif kind == "sweep":
        params = job.params_with(task.params["params"])
        holdout = shared["holdout"]
        fitted = model.fit(params, data, (~holdout).astype(np.float64), ctx)
        record.update(repeat=task.params["repeat"])
        record.update({f"param_{k}": v for k, v in task.params["params"].items()})
        record.update({f"test_{k}": v for k, v in model.score(params, fitted, data, holdout).items()})
        record.update(model.outputs(params, fitted, data))
    elif kind == "shards":
        start, stop = shard_bounds(data.n, task.params["shard"], task.params["n_shards"])
        part = _subset(data, start, stop)
        fitted = model.fit(params, part, None, ctx)
        record.update(shard=task.params["shard"], rows=stop - start)
        record.update(model.outputs(params, fitted, part))
        record.update(model.score(params, fitted, part, None))
    else:  # replicate, fit: the whole data, the task's own generator
        fitted = model.fit(params, data, None, ctx)
        if kind == "replicate":
            record.update(replicate=task.params["replicate"])
        record.update(model.outputs(params, fitted, data))
        record.update(model.score(params, fitted, data, None))
    return record


def _failure_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if text else type(err).__name__


def execute_chunk(order: WorkOrder) -> ChunkResult:
    """Run every task of the chunk; never raises. Writes the chunk file when ``order.write``."""
    from hpcml.data import load_dataset  # shards plans on a file: each task reads only its rows
    from hpcml.store import write_chunk_records

    start_chunk = time.perf_counter()
    result = ChunkResult(order.chunk)
    records: list[dict[str, Any]] = []
    try:
        job, tasks = _job_and_tasks(order.job_json)
        data = load_dataset(job)
        shared = _plan_masks(order.job_json, data.n)
    except BaseException as err:  # the whole chunk fails the same way
        tb = traceback.format_exc()
        for i in order.chunk.indices:
            result.failed[i] = _failure_line(err)
            records.append(_failed_record(i, f"{job_task_prefix(order)}{i:06d}", err, tb, order.attempt, 0.0))
    else:
        with _thread_controller(order.job_json).limit(limits=job.spec.threads_per_task):
            for i in order.chunk.indices:
                task = tasks[i]
                t0 = time.perf_counter()
                try:
                    with _deadline(job.spec.timeout_s):
                        outputs = run_task(job, data, task, order.run_dir, shared)
                except Exception as err:
                    result.failed[i] = _failure_line(err)
                    records.append(_failed_record(i, task.id, err, traceback.format_exc(), order.attempt,
                                                  time.perf_counter() - t0))
                    continue
                result.ok.append(i)
                records.append({"task_id": task.id, "task_index": i, "status": "ok", "attempt": order.attempt,
                                "seconds": time.perf_counter() - t0, **outputs})
    if order.write:
        result.path = str(write_chunk_records(order.run_dir, order.chunk, records))
    else:
        result.records = records
    result.seconds = time.perf_counter() - start_chunk
    return result


def warm_cache(job_json: str) -> None:
    """Load the job and its data into this process's caches before its first chunk arrives.

    Backends call this as a worker starts (pool initializer, worker plugin). It loads what
    ``execute_chunk`` will ask for: for a shards plan on a file, only the file's metadata.
    """
    from hpcml.data import load_dataset

    try:
        job, _ = _job_and_tasks(job_json)
        load_dataset(job)
    except Exception:
        pass  # the chunk itself reports the error as task failures


def job_task_prefix(order: WorkOrder) -> str:
    try:
        from hpcml.spec import JobSpec

        return JobSpec.model_validate_json(order.job_json).plan.kind + "/"
    except Exception:
        return "task/"


def _failed_record(index: int, task_id: str, err: BaseException, tb: str, attempt: int, seconds: float) -> dict[str, Any]:
    return {"task_id": task_id, "task_index": index, "status": "failed", "attempt": attempt, "seconds": seconds,
            "error": _failure_line(err), "traceback": tb}
