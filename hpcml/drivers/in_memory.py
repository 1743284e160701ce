"""Driving a run whose records stay in memory: no run directory, provenance or results.parquet.

``hpcml.map`` and ``hpcml.bootstrap`` without ``out``, and the R package's loops without
``out`` (``loop_values.run_loop``), run this way: their run would be
deleted as soon as it ended, so fsynced chunk files and a consolidated table would buy
nothing. Workers send their records back over the backend's own channel (the local pool's
pipe, Dask's results), as they do for a backend without a shared filesystem, and the same
retry loop as every other run (``attempts.py``) keeps the latest record of each task. Seeds,
retries, ``timeout_s``, a dead worker and the summary are those of a run directory's run.

``in_driver``: the caller's own function, already running in this process (a small
``hpcml.bootstrap`` of a vectorized statistic), may run here as ``scipy.stats.bootstrap``
would, when the backend allows it (local's ``in_driver``): the same chunks, seeds and
records as in a worker, without starting one or sending anything through a pipe.
"""
from __future__ import annotations

import itertools
import operator
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and Arrow are imported where a table is built (a map's driver builds none)
    import pandas as pd
    import pyarrow as pa

from hpcml.backends import make_backend
from hpcml.rundir.store import Chunk
from hpcml.tasks.chunks import chunk_size_for
from hpcml.drivers.attempts import backend_running, in_this_process, run_attempts
from hpcml.drivers.finish import RunResult, run_facts, summarize, summary_frame
from hpcml.drivers.run import check_job, may_run_in_driver
from hpcml.report.progress import Progress
from hpcml.rundir.records import tidy
from hpcml.spec import Job, load_job


class MemoryRecords:
    """A run's records held here: the latest record of each task, an ``ok`` one never replaced
    by a later failure (the rule ``records.latest`` applies to chunk files).

    ``path`` is the run directory a task's ``scratch`` would live in; nothing is written
    there unless a task asks for its scratch directory.
    """

    def __init__(self, path: str | Path, n_tasks: int):
        self.path, self.n_tasks = Path(path), n_tasks
        self.latest: dict[int, dict[str, Any]] = {}
        self.seconds = 0.0

    def write_records(self, chunk: Chunk, records: list[dict[str, Any]]) -> None:
        latest = self.latest
        for record in records:
            old = latest.get(record["task_index"])
            if old is None or old["status"] != "ok":
                latest[record["task_index"]] = record

    def completed(self) -> set[int]:
        return {i for i, r in self.latest.items() if r["status"] == "ok"}

    @property
    def n_failed(self) -> int:
        return self.n_tasks - len(self.completed())

    def ordered(self) -> list[dict[str, Any]]:
        """The latest records in task order."""
        return [self.latest[i] for i in sorted(self.latest)]

    def table(self) -> pa.Table:
        """The records as results.parquet would hold them (same columns, in the same order)."""
        import pyarrow as pa  # loaded with the first table: a map's driver builds none

        records = self.ordered()
        columns = list(dict.fromkeys(itertools.chain.from_iterable(records)))
        # Where every record has every column (a run whose tasks all ended alike), C-level
        # lookups: a quarter of the time of ``get`` per cell for 2,000 small records.
        every = all(len(r) == len(columns) for r in records)
        return tidy(pa.table({c: list(map(operator.itemgetter(c), records)) if every else [r.get(c) for r in records]
                              for c in columns}))

    def result(self, job: Job) -> RunResult:
        """The run as ``finish`` would report it (``run_dir`` None): its records as a table and
        the summary, plan's and model kind's. Built only when asked for: ``map`` needs neither."""
        table = self.table()
        summary = summarize(job, summary_frame(table), self.path)
        summary["run"] = run_facts(job, self.n_failed, self.seconds)
        return RunResult(None, table, summary, self.n_tasks, self.n_failed, self.seconds)


def execute_in_memory(job: Job, *, progress: bool = False, in_driver: bool = False) -> MemoryRecords:
    """Run every task of ``job`` on its backend, keeping the records here. ``job.output`` is
    checked like any output path; it names where a task's scratch directory and the backend's
    logs go, if any is asked for (nothing else is written there). ``in_driver``: the caller
    allows this process to run the tasks (see the module's note)."""
    t0 = time.perf_counter()
    spec = job.spec
    backend = make_backend(spec.backend.name, spec.backend.workers, spec.backend.model_extra)
    here = in_driver and may_run_in_driver(job, backend, own_code=True)
    check_job(job, keep=here)  # run here: the data checked is the data the tasks use, loaded once
    records = MemoryRecords(job.output, job.n_tasks)
    todo = range(job.n_tasks)
    if here:
        bar = Progress(len(todo), f"{spec.name} [in the driver]", enabled=progress)
        try:
            run_attempts(job, records, todo, chunk_size_for(job, len(todo), 1), in_this_process,
                         writes_own_files=False, progress=bar)
        finally:
            bar.close()
    else:
        with backend_running(job, backend, records.path / "logs", len(todo), progress=progress) as bar:
            run_attempts(job, records, todo, chunk_size_for(job, len(todo), backend.workers), backend.run,
                         writes_own_files=False, progress=bar)
    records.seconds = time.perf_counter() - t0
    return records

