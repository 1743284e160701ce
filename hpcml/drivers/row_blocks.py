"""Fits and bootstraps of data larger than a node: passes over row blocks, on any backend.

A plan with ``row_block_kinds`` (``fit``: ols, logistic, pca, kmeans; ``bootstrap``: ols, logistic)
whose data file is larger than ``data.blocks_above_mb`` runs here. The plan's
``over_row_blocks`` asks for passes (``models/over_row_blocks.py``); each pass is a job of
the ``row_blocks`` plan, one task per block, run on the backend started once for the whole
run, through the same retry loop as every run. The blocks' statistics come back as npz
bytes and are combined along the fixed tree. No process, the driver included, holds more
than a block and the statistics.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable

from hpcml.backends import make_backend
from hpcml.data.row_blocks import block_reader, numeric_features, source_bytes
from hpcml.drivers.attempts import run_attempts
from hpcml.drivers.finish import RunResult, finish, is_finished, recorded
from hpcml.errors import SpecError
from hpcml.models.passes import KINDS, Pass
from hpcml.numerics.block_stats import UNIT_ROWS, block_units
from hpcml.plans.row_blocks import PassStatistics, pass_spec
from hpcml.report.progress import Progress
from hpcml.rundir.opening import open_run
from hpcml.rundir.paths import check_output
from hpcml.rundir.store import Chunk, RunStore, write_chunk_records
from hpcml.spec import Job
from hpcml.spec.schema import JobSpec
from hpcml.tasks.task_records import failure_record, ok_record

log = logging.getLogger("hpcml")

# The default block: about this many bytes of rows (and at least two blocks a worker).
BLOCK_BYTES = 64 << 20


def uses_row_blocks(job) -> bool:
    """Whether ``job`` runs as passes over row blocks (its data is larger than
    ``data.blocks_above_mb`` and its plan runs its model kind so); SpecError where the data
    is that large and only an in-memory run of a built-in kind would do the job."""
    kinds = job.plan.row_block_kinds
    if not kinds:
        return False
    size = source_bytes(job.spec.data)
    if size is None or size < job.spec.data.blocks_above_mb * 2**20:
        return False
    if job.model.name in kinds:
        if not numeric_features(job.spec.data, job.spec.model.features):
            log.info("%s: text features (or columns not found): read into memory, not by row blocks",
                     job.spec.data.source)
            return False
        return True
    if job.model.name in KINDS:  # a built-in kind whose in-memory run would load every row
        raise SpecError.one("model.kind", job.model.name, f"plan {job.plan_kind} of data above data.blocks_above_mb "
                            f"({job.spec.data.blocks_above_mb:g} MB; this is {size / 2**20:.0f} MB) runs over row "
                            f"blocks for {', '.join(kinds)} only; raise blocks_above_mb to run it in memory")
    return False


def block_rows_for(job, n_rows: int, n_features: int, workers: int) -> int:
    """Rows per block: the spec's, or about BLOCK_BYTES with at least two blocks a worker,
    rounded down to UNIT_ROWS times a power of two (the combining tree's shape)."""
    wanted = job.spec.data.block_rows
    if wanted is None:
        wanted = min(max(UNIT_ROWS, BLOCK_BYTES // (8 * (n_features + 1))), -(-n_rows // (2 * max(1, workers))))
    return UNIT_ROWS * block_units(wanted)


class PassFailed(Exception):
    """A block of a pass failed after its retries: the fit cannot go on."""


_SPEC_LINE = re.compile(r"^SpecError: (?P<field>[\w.]+): (?P<message>.*) \(got (?P<value>.*)\)$", re.S)


def _pass_error(error: str, block: int, step: Pass) -> Exception:
    """Bad data found by a worker as the SpecError it is (one line, exit 2); anything else a
    failure of the pass naming the block."""
    first = error.strip().splitlines()[0] if error.strip() else error
    match = _SPEC_LINE.match(first)
    if match:
        return SpecError.one(match["field"], match["value"].strip("'\""), match["message"])
    return PassFailed(f"block {block} failed in the pass {step.label!r}: {error}")


class RowBlocksRun:
    """What a plan's ``over_row_blocks`` works with: passes on the started backend
    (``run_pass``), its records (``write``, ``done``, ``results``), the data's shape."""

    PassFailed = PassFailed

    def __init__(self, job, backend, store: RunStore, reader, block_rows: int, progress: bool,
                 keep: Callable[[], None] = lambda: None):
        self.job, self.backend, self.store = job, backend, store
        self.features, self.n_rows, self.block_rows = reader.features, reader.n, block_rows
        self.progress, self._keep = progress, keep
        self.count = 0
        self.peak_rss_mb = 0.0  # the largest worker's peak memory, over every pass

    def job_for(self, step: Pass) -> Job:
        spec = pass_spec(self.job.spec.model_dump(mode="json"), step.step, step.state, self.block_rows, self.n_rows)
        return Job(JobSpec.model_validate(spec))

    def run_pass(self, step: Pass) -> dict:
        """The statistics of every row for ``step``. The run directory is kept once a pass has
        read every row without a problem: bad data found in the first pass leaves none."""
        job = self.job_for(step)
        n_blocks = job.n_tasks
        self.count += 1
        label = f"{self.job.spec.name} [{self.backend.name}] pass {self.count}: {step.label}"
        log.info("%s (%d blocks of %d rows)", label, n_blocks, self.block_rows)
        records = PassStatistics(self.store.path, n_blocks)
        bar = Progress(n_blocks, label, enabled=self.progress)
        try:
            failed = run_attempts(job, records, range(n_blocks), 1, self.backend.run, writes_own_files=False,
                                  progress=bar)
        finally:
            bar.close()
        if failed:
            raise _pass_error(records.errors.get(failed[0], "lost"), failed[0], step)
        self._keep()
        self.peak_rss_mb = max(self.peak_rss_mb, records.peak_rss_mb)
        return records.statistics

    def write(self, outcomes: list[tuple[int, dict[str, Any] | None, str | None, float]]) -> None:
        """Records of tasks (index, outputs or None, error or None, seconds) as one chunk file."""
        self._keep()
        job = self.job
        records = [ok_record(job.task_id(i), i, 0, seconds, outputs) if outputs is not None else
                   failure_record(i, job.task_id(i), error or "failed", "", 0, seconds)
                   for i, outputs, error, seconds in outcomes]
        write_chunk_records(self.store.path, Chunk(tuple(i for i, *_ in outcomes)), records)

    def done(self) -> set[int]:
        return self.store.completed()

    def results(self):
        return self.store.consolidate_table().to_pandas()


def execute_over_row_blocks(job, *, backend=None, resume: bool = False, overwrite: bool = False,
                            progress: bool = True, plots: bool = True) -> RunResult:
    """Run a job as passes over row blocks (see the module)."""
    t0 = time.perf_counter()
    spec = job.spec
    reader = check_over_row_blocks(job)
    if resume and is_finished(job, RunStore(job.output)):
        with open_run(job, resume=True) as run:
            if is_finished(job, run.store):
                return recorded(job, run.store)
    if backend is None:
        backend = make_backend(spec.backend.name, spec.backend.workers, spec.backend.model_extra)
    block_rows = block_rows_for(job, reader.n, len(reader.features), backend.workers)
    with open_run(job, resume=resume, overwrite=overwrite) as run:
        blocks = RowBlocksRun(job, backend, run.store, reader, block_rows, progress, run.keep)
        backend.start(blocks.job_for(Pass("scan")).to_json(), run.store.log_dir)
        try:
            body = job.plan.over_row_blocks(job, blocks)
        finally:
            backend.stop()
        extra = {"row_blocks": {"block_rows": block_rows, "blocks": -(-reader.n // block_rows), "n_rows": reader.n,
                                "passes": blocks.count, "worker_peak_rss_mb": round(blocks.peak_rss_mb, 1)}}
        return finish(job, run.store, time.perf_counter() - t0, plots=plots, run_extra=extra, body=body)


def check_over_row_blocks(job):
    """What can be known wrong before any row is read (the output, the columns, the
    parameters against the data's shape); the reader of the rows."""
    check_output(job.output)
    reader = block_reader(job.spec.data, job.spec.model.features, job.model.needs_target)
    _check(job, reader)
    return reader


def _check(job, reader) -> None:
    """The parameters against the data's shape, before anything is read or written."""
    kind, p, n, width = job.model.name, job.params, reader.n, len(reader.features)
    problems = []
    if kind == "kmeans" and p.k > n:
        problems.append(("model.k", p.k, f"k={p.k} exceeds the number of rows ({n})"))
    if kind == "pca" and p.n_components is not None and p.n_components > min(n, width):
        problems.append(("model.n_components", p.n_components, f"n_components={p.n_components} exceeds min(n, p) = "
                         f"{min(n, width)}"))
    if kind == "pca" and p.method != "full":
        problems.append(("model.method", p.method, "a PCA over row blocks is exact (TSQR): leave method out"))
    if kind in ("ols", "logistic") and n < width + int(p.fit_intercept):
        problems.append(("data", n, f"{n} rows cannot determine {width + int(p.fit_intercept)} coefficients"))
    if problems:
        raise SpecError(problems)
