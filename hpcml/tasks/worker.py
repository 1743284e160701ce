"""Worker side: run one chunk of tasks and write its result file.

A worker gets a :class:`WorkOrder` (the job as JSON, the run directory, the task indices):
it rebuilds the job and loads the data once per process (both cached), runs each task with
its own seeded generator and pinned threads, and writes the chunk's records atomically.
Nothing here raises for a task's failure: a failure is a record with its traceback.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from hpcml.models.base import Dataset, FitContext
from hpcml.rundir.store import Chunk
from hpcml.tasks.deadlines import TaskWatch, deadline, watched
from hpcml.tasks.environment import against_run
from hpcml.tasks.task_records import failure_message, failure_record, ok_record
from hpcml.numerics.thread_pools import thread_pools
from hpcml.plans import PLANS, Task
from hpcml.plans.task_seeds import TaskGenerators
from hpcml.rundir import running
from hpcml.rundir.paths import task_folder

log = logging.getLogger("hpcml.tasks.worker")


TOO_LATE = "backend.deadline_s passed while this task was running (its result came too late to be kept)"


@dataclass(frozen=True)
class WorkOrder:
    job_json: str
    run_dir: str
    chunk: Chunk
    attempt: int = 0
    # False where workers cannot see the run directory: records travel back to the driver.
    write: bool = True
    # Wall-clock time after which the chunk file must not appear: the driver has consolidated
    # the run by then (MPI's deadline_s); the chunk's tasks count as cut off instead.
    write_until: float | None = None


@dataclass
class ChunkResult:
    chunk: Chunk
    ok: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # task index -> one-line error
    records: list[dict[str, Any]] | None = None
    seconds: float = 0.0
    path: str | None = None
    # Dask, a task stuck past timeout_s in C code: the tasks of the chunk that never started
    # (the backend runs them as a chunk of their own) and the worker to restart.
    unfinished: tuple[int, ...] = ()
    restart_worker: str | None = None
    # The chunk's worker died or vanished under it: one of its tasks may be the cause, so a
    # retry runs each of them in a chunk of its own.
    lost_worker: bool = False
    # Why no task of this run can succeed on this worker, as (field, value, why): it does not
    # see the run directory or the data file, or its Python has other versions of the packages
    # that decide the numbers. The driver stops the run with this line.
    fatal: tuple[str, str, str] | None = None

    @classmethod
    def lost(cls, chunk: Chunk, reason: str) -> "ChunkResult":
        """A chunk whose worker died or vanished: every task in it failed with ``reason``."""
        return cls(chunk, failed={i: reason for i in chunk.indices}, lost_worker=True)


class TaskLookup:
    """The job's tasks by index, each built when asked for (a worker holds none it does not run)."""

    def __init__(self, job):
        self.job, self.n = job, job.n_tasks
        self.plan, self.options = job.plan, job.spec.plan.options  # looked up once, not per task
        self._task_id, self._params_at = self.plan.task_id, self.plan.params_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Task:
        return Task(index, self._task_id(index), self._params_at(self.options, index))


@functools.lru_cache(maxsize=4)
def _job_and_tasks(job_json: str):
    from hpcml.spec import Job  # the spec and the data import the backends, which import this module

    job = Job.from_json(job_json)
    return job, TaskLookup(job)


def job_of(job_json: str):
    """The job of a work order, as this process's workers hold it (built once per job)."""
    return _job_and_tasks(job_json)[0]


@functools.lru_cache(maxsize=8)
def _shared(job_json: str, n: int) -> dict[str, Any]:
    """Per-process cache of what all tasks of the job share (CV folds, the sweep holdout)."""
    job, _ = _job_and_tasks(job_json)
    return job.plan.shared(job, n)


def _scratch_dir(run_dir: str, task_id: str) -> Path:
    return Path(run_dir, task_folder(task_id))


def task_context(job, task: Task, run_dir: str | None, generators: TaskGenerators | None = None) -> FitContext:
    """The task's context; its generator from ``generators`` (those of the task's chunk or
    group, seeded together) or seeded alone."""
    spec = job.spec
    if generators is None:
        generators = TaskGenerators(spec.seed, (task.index,))
    # The generator and the scratch path are built only if the model asks for them.
    return FitContext(rng_factory=functools.partial(generators.generator, task.index), threads=spec.threads_per_task,
                      scratch_factory=functools.partial(_scratch_dir, run_dir, task.id) if run_dir else None,
                      log=log, task_id=task.id, task_index=task.index, task_params=task.params, seed=spec.seed)


def run_task(job, data: Dataset, task: Task, run_dir: str | None, shared: dict[str, Any]) -> dict[str, Any]:
    """One task's record of outputs (raises on failure; the caller records it)."""
    return job.plan.run_task(job, data, task, task_context(job, task, run_dir), shared)


class GroupContexts(Sequence):
    """The contexts of a group's members (in order), each built when first read; ``rngs``
    gives members' generators without building their contexts (for a plan that needs nothing
    else of them: a context costs about as much as its generator)."""

    def __init__(self, job, members: list[Task], run_dir: str | None, generators: TaskGenerators):
        self.job, self.members, self.run_dir, self.generators = job, members, run_dir, generators
        self.built: dict[int, FitContext] = {}

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = k + len(self) if k < 0 else k
        ctx = self.built.get(k)
        if ctx is None:
            ctx = self.built[k] = task_context(self.job, self.members[k], self.run_dir, self.generators)
        return ctx

    def rngs(self, ks) -> list:
        """The generators of members ``ks``, as seeded (those their contexts' ``rng`` would give)."""
        return [self.generators.generator(self.members[k].index) for k in ks]

    def seed_words(self, ks) -> "np.ndarray":
        """The words members ``ks``' generators are seeded from ((len(ks), 4) uint64)."""
        return self.generators.seed_words([self.members[k].index for k in ks])


def _run_groups(job, data, tasks: TaskLookup, indices: tuple[int, ...], size: int, run_dir: str | None,
                shared: dict[str, Any], watch: TaskWatch | None) -> dict[int, tuple[dict[str, Any], float, Task]]:
    """Records (with seconds each, and each task as built for its group) of the tasks a plan runs
    in groups of ``size`` fixed by task index. A task the group leaves out (the plan's batched path declined it), and every task of
    a group that fails, then runs one by one, so each failure is recorded against its own task
    and a task's numbers never depend on how its group fared."""
    groups: dict[int, set[int]] = {}
    for i in indices:
        groups.setdefault(i // size, set()).add(i)
    done: dict[int, tuple[dict[str, Any], float, Task]] = {}
    ranges = {g: range(g * size, min((g + 1) * size, len(tasks))) for g in sorted(groups)}
    generators = TaskGenerators(job.spec.seed, [i for members in ranges.values() for i in members])  # seeded together
    for g, wanted in sorted(groups.items()):
        members = [tasks[i] for i in ranges[g]]
        t0 = time.perf_counter()
        try:
            limit = job.spec.timeout_s * len(wanted) if job.spec.timeout_s else None
            with watched(watch, sorted(wanted), limit), deadline(limit):
                records = job.plan.run_group(job, data, members, GroupContexts(job, members, run_dir, generators),
                                             shared, wanted)
        except Exception as err:
            log.info("group %d ran into %s; its tasks run one by one", g, failure_message(err))
            continue
        kept = [i for i in sorted(wanted) if i in records]
        seconds = (time.perf_counter() - t0) / max(1, len(kept))
        done.update({i: (records[i], seconds, members[i - ranges[g].start]) for i in kept})
    return done


@functools.lru_cache(maxsize=16)
def _sees_run_dir(run_dir: str) -> bool:
    """Whether this process sees the run directory the driver prepared (its spec.json and
    chunks folder), looked at without creating anything; once per process and directory."""
    return os.path.isfile(os.path.join(run_dir, "spec.json")) and os.path.isdir(os.path.join(run_dir, "chunks"))


def _unseen_run_dir(order: WorkOrder) -> tuple[ChunkResult, list[dict[str, Any]]] | None:
    """The chunk's result and records where this worker does not see the run directory it
    must write to: every task failed, ``fatal`` saying which node and path; no task runs."""
    if not order.write or _sees_run_dir(order.run_dir):
        return None
    _sees_run_dir.cache_clear()  # not cached while unseen: a mount may yet appear
    why = (f"the run directory {order.run_dir} is not visible on node {socket.gethostname()}: put it (--out, "
           "output) on a file system every worker shares")
    log.error("%s", why)
    result = ChunkResult(order.chunk, failed={i: why for i in order.chunk.indices},
                         fatal=("output", order.run_dir, why))
    return result, [failure_record(i, _task_id(order, i), why, "", order.attempt) for i in order.chunk.indices]


def _other_versions(order: WorkOrder) -> tuple[ChunkResult, list[dict[str, Any]]] | None:
    """The chunk's result and records where this worker's numpy, hpcml, ... differ from the
    versions the driver recorded in the run directory: every task failed, ``fatal`` naming the
    node, the package and both versions; no task runs."""
    if not order.write:  # records travel back: the Dask backend compared the versions as it started
        return None
    fatal = against_run(order.run_dir, order.job_json)
    if fatal is None:
        return None
    why = fatal[2]
    log.error("%s", why)
    result = ChunkResult(order.chunk, failed={i: why for i in order.chunk.indices}, fatal=fatal)
    return result, [failure_record(i, _task_id(order, i), why, "", order.attempt) for i in order.chunk.indices]


def _unseen_data(err: BaseException) -> tuple[str, str, str] | None:
    """(field, value, why) when the driver's data file is missing on this worker's node."""
    from hpcml.data.frames import is_frame_file  # only where a chunk could not load its data
    from hpcml.errors import SpecError  # only where a chunk could not load its data

    if not isinstance(err, SpecError):
        return None
    for field_, value, message in err.problems:
        if field_ == "data.source" and message == "file not found":
            where = (": data handed over in memory are written under the cache directory (HPCML_CACHE_DIR), "
                     "which every worker's node must share" if is_frame_file(str(value))
                     else ": put the data on a file system every worker shares")
            why = f"the data file {value} is not visible on node {socket.gethostname()}{where}"
            log.error("%s", why)
            return "data.source", str(value), why
    return None


def execute_chunk(order: WorkOrder) -> ChunkResult:
    """Run every task of the chunk; never raises. Writes the chunk file when ``order.write``."""
    start_chunk = time.perf_counter()
    return deliver(order, *run_chunk(order), start_chunk)


def run_chunk(order: WorkOrder, watch: TaskWatch | None = None) -> tuple[ChunkResult, list[dict[str, Any]]]:
    """The chunk's result and records, not yet written. With ``watch``, each task runs under it
    and its records go to ``watch.records`` as they are made (another thread may take them)."""
    from hpcml.data import load_dataset  # (see _job_and_tasks) shards plans on a file: each task reads its rows

    unseen = _unseen_run_dir(order) or _other_versions(order)
    if unseen is not None:
        return unseen
    if order.write:  # `hpcml status` counts it running until ``deliver`` has written its file
        running.mark(order.run_dir, order.chunk.indices)
    result = ChunkResult(order.chunk)
    records: list[dict[str, Any]] = watch.records if watch is not None else []
    try:
        job, tasks = _job_and_tasks(order.job_json)
        job.model.check_code(job.params)  # per chunk: a code file edited mid-run fails its tasks
        data = load_dataset(job)
        shared = _shared(order.job_json, data.n)
    except KeyboardInterrupt:  # Ctrl-C of a chunk run in the driver ends the run, as anywhere else
        raise
    except BaseException as err:  # the whole chunk fails the same way
        tb = traceback.format_exc()
        result.fatal = _unseen_data(err)
        for i in order.chunk.indices:
            result.failed[i] = failure_message(err)
            records.append(failure_record(i, _task_id(order, i), failure_message(err), tb, order.attempt))
    else:
        _warm_model(job)
        with thread_pools().limit(limits=job.spec.threads_per_task):
            group = job.plan.group_size(job)
            grouped = _run_groups(job, data, tasks, order.chunk.indices, group, order.run_dir, shared, watch) \
                if group > 1 else {}
            plan, timeout_s = job.plan, job.spec.timeout_s
            generators = TaskGenerators(job.spec.seed, [i for i in order.chunk.indices if i not in grouped])
            for i in order.chunk.indices:
                if i in grouped:
                    outputs, seconds, task = grouped[i]
                    result.ok.append(i)
                    records.append(ok_record(task.id, i, order.attempt, seconds, outputs))
                    continue
                task = tasks[i]
                t0 = time.perf_counter()
                try:
                    if timeout_s:
                        with watched(watch, [i], timeout_s), deadline(timeout_s):
                            outputs = plan.run_task(job, data, task, task_context(job, task, order.run_dir, generators), shared)
                    else:  # no deadline to arm, nothing for a watcher to give up on: no context manager per task
                        outputs = plan.run_task(job, data, task, task_context(job, task, order.run_dir, generators), shared)
                except Exception as err:
                    result.failed[i] = failure_message(err)
                    records.append(failure_record(i, task.id, failure_message(err), traceback.format_exc(),
                                                  order.attempt, time.perf_counter() - t0))
                    continue
                result.ok.append(i)
                records.append(ok_record(task.id, i, order.attempt, time.perf_counter() - t0, outputs))
    return result, records


def deliver(order: WorkOrder, result: ChunkResult, records: list[dict[str, Any]], start_chunk: float) -> ChunkResult:
    """Write the chunk's file (``order.write``) or send its records back with the result."""
    from hpcml.rundir.store import write_chunk_records  # loaded where a worker writes its own files

    try:
        if order.write and result.fatal is None:  # (a worker that cannot see the run directory carries them back)
            path = write_chunk_records(order.run_dir, order.chunk, records, until=order.write_until)
            if path is None:
                result.ok = []
                result.failed = {i: TOO_LATE for i in order.chunk.indices}
            else:
                result.path = str(path)
        else:
            result.records = records
    finally:
        if order.write:  # the chunk's file is written (or its records go back): it runs no more
            running.unmark(order.run_dir, order.chunk.indices)
    result.seconds = time.perf_counter() - start_chunk
    return result


def warm_cache(job_json: str) -> None:
    """Load the job and its data into this process's caches before its first chunk arrives.

    Backends call this as a worker starts (pool initializer, worker plugin). It loads what
    ``execute_chunk`` will ask for: for a shards plan on a file, only the file's metadata.
    """
    from hpcml.data import load_dataset  # the spec and the data import the backends, which import this module

    try:
        job, _ = _job_and_tasks(job_json)
        load_dataset(job)
    except Exception:
        return  # the chunk itself reports the error as task failures
    _warm_model(job)


def warm_r() -> None:
    """Start this process's embedded R before any job of an R kind arrives (a pool started
    early for an R session's first loop); a machine without R fails later, in the tasks."""
    try:
        from hpcml.models.r.bridge import r  # rpy2 only where R kinds run

        r()
    except Exception:
        pass


def _warm_model(job) -> None:
    """The model kind's code (a user's function, its items) loaded before any task's deadline."""
    try:
        job.model.warm(job.params)
    except Exception:
        pass  # each task reports the error in its own record, as it would have


def _task_id(order: WorkOrder, index: int) -> str:
    """The plan's id of a task, even where the job itself could not be rebuilt."""
    try:
        from hpcml.spec import spec_from_json  # the spec and the data import the backends, which import this module

        return PLANS[spec_from_json(order.job_json).plan.kind].task_id(index)
    except Exception:
        return f"task/{index:06d}"

