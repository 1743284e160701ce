"""Fits and bootstraps of data larger than a node: passes over row blocks, on any backend.

A ``fit`` (or ``bootstrap``) of ols, logistic, pca or kmeans whose data file is larger than
``data.blocks_above_mb`` runs here. The fit (``models/over_row_blocks.py``) asks for passes;
each pass is a job of the ``row_blocks`` plan, one task per block, run on the backend
started once for the whole fit through the same retry loop as every run; the blocks'
statistics come back as npz bytes and are combined along the fixed tree. No process,
the driver included, holds more than a block and the statistics.

The bootstrap draws Poisson(1) row weights keyed by (seed, replicate, row)
(``numerics/counter_draws.py``), 64 replicates a pass; each group's records are written as a
chunk file, so a resumed run repeats only the groups it had not finished.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable

from hpcml.backends import make_backend
from hpcml.data.row_blocks import block_reader, source_bytes
from hpcml.drivers.attempts import run_attempts
from hpcml.drivers.finish import RunResult, finish, is_finished, recorded
from hpcml.drivers.in_memory import MemoryRecords
from hpcml.errors import SpecError
from hpcml.models.over_row_blocks import FITS, Pass, ols_poisson_bootstrap
from hpcml.numerics.block_stats import UNIT_ROWS, block_units, from_bytes, tree
from hpcml.report.progress import Progress
from hpcml.report.tables import json_number
from hpcml.rundir.opening import open_run
from hpcml.rundir.paths import check_output
from hpcml.rundir.store import Chunk, RunStore, write_chunk_records
from hpcml.spec import Job
from hpcml.spec.schema import JobSpec
from hpcml.tasks.task_records import failure_record, ok_record

log = logging.getLogger("hpcml")

# Bootstrap replicates computed in one pass over the data.
REPLICATES_PER_PASS = 64
# The default block: about this many bytes of rows (and at least two blocks a worker).
BLOCK_BYTES = 64 << 20


def uses_row_blocks(job) -> bool:
    """Whether ``job`` runs as passes over row blocks (its data is larger than
    ``data.blocks_above_mb`` and its plan and model kind have such a fit); SpecError where the
    data is that large but only an in-memory run could do the job."""
    plan = job.plan.over_row_blocks
    if plan is None:
        return False
    size = source_bytes(job.spec.data)
    if size is None or size < job.spec.data.blocks_above_mb * 2**20:
        return False
    kinds = ("ols",) if plan == "bootstrap" else tuple(FITS)
    if job.model.name in kinds:
        return True
    if job.model.name in FITS:  # a bootstrap of another built-in kind would load every row
        raise SpecError.one("model.kind", job.model.name, f"a bootstrap of data above data.blocks_above_mb "
                            f"({job.spec.data.blocks_above_mb:g} MB; this is {size / 2**20:.0f} MB) runs over row "
                            "blocks for ols only; raise blocks_above_mb to resample it in memory")
    return False


def block_rows_for(job, n_rows: int, n_features: int, workers: int) -> int:
    """Rows per block: the spec's, or about BLOCK_BYTES with at least two blocks a worker,
    rounded down to UNIT_ROWS times a power of two (the combining tree's shape)."""
    wanted = job.spec.data.block_rows
    if wanted is None:
        wanted = min(max(UNIT_ROWS, BLOCK_BYTES // (8 * (n_features + 1))), -(-n_rows // (2 * max(1, workers))))
    return UNIT_ROWS * block_units(wanted)


class Passes:
    """Runs the passes a fit asks for on a started backend; each pass's statistics combined."""

    def __init__(self, job, backend, run_dir, block_rows: int, n_rows: int, progress: bool):
        self.job, self.backend, self.run_dir = job, backend, run_dir
        self.block_rows, self.n_rows, self.progress = block_rows, n_rows, progress
        self.count = 0

    def job_for(self, step: Pass) -> Job:
        spec = self.job.spec.model_dump(mode="json")
        spec["plan"] = {"row_blocks": {"step": step.step, "state": step.state, "block_rows": self.block_rows,
                                       "n_rows": self.n_rows}}
        return Job(JobSpec.model_validate(spec))

    def __call__(self, step: Pass) -> dict:
        job = self.job_for(step)
        n_blocks = job.n_tasks
        self.count += 1
        label = f"{self.job.spec.name} [{self.backend.name}] pass {self.count}: {step.label}"
        log.info("%s (%d blocks of %d rows)", label, n_blocks, self.block_rows)
        records = MemoryRecords(self.run_dir, n_blocks)
        bar = Progress(n_blocks, label, enabled=self.progress)
        try:
            failed = run_attempts(job, records, range(n_blocks), 1, self.backend.run, writes_own_files=False,
                                  progress=bar)
        finally:
            bar.close()
        if failed:
            raise _pass_error(records.latest[failed[0]].get("error") or "lost", failed[0], step)
        return tree([from_bytes(records.latest[b]["block_stats"]) for b in range(n_blocks)])


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


def drive(fit, run_pass: Callable[[Pass], dict]) -> tuple[Any, dict[str, Any]]:
    """Run a fit generator to its end, each pass it asks for by ``run_pass``."""
    request = next(fit)
    while True:
        try:
            request = fit.send(run_pass(request))
        except StopIteration as done:
            return done.value


def _fit_generator(job, reader):
    p, features = job.params, reader.features
    kind = job.model.name
    if kind == "ols":
        return FITS[kind](features, p.fit_intercept)
    if kind == "logistic":
        return FITS[kind](features, p.fit_intercept, p.max_iter, p.tol)
    if kind == "pca":
        return FITS[kind](features, p.n_components, p.variance, p.scale)
    return FITS[kind](features, p.k, p.max_iter, p.tol, job.spec.seed, reader.n)


def _check(job, reader) -> None:
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


def execute_over_row_blocks(job, *, backend=None, resume: bool = False, overwrite: bool = False,
                            progress: bool = True, plots: bool = True) -> RunResult:
    """Run a ``fit`` or ``bootstrap`` job as passes over row blocks (see the module)."""
    t0 = time.perf_counter()
    spec = job.spec
    check_output(job.output)
    reader = block_reader(spec.data, spec.model.features, job.model.needs_target)
    _check(job, reader)
    if resume and is_finished(job, RunStore(job.output)):
        with open_run(job, resume=True) as run:
            if is_finished(job, run.store):
                return recorded(job, run.store)
    if backend is None:
        backend = make_backend(spec.backend.name, spec.backend.workers, spec.backend.model_extra)
    block_rows = block_rows_for(job, reader.n, len(reader.features), backend.workers)
    with open_run(job, resume=resume, overwrite=overwrite) as run:
        store = run.store
        passes = Passes(job, backend, store.path, block_rows, reader.n, progress)
        backend.start(passes.job_for(Pass("scan")).to_json(), store.log_dir)
        try:
            if job.plan.over_row_blocks == "bootstrap":
                body = _bootstrap(job, reader, store, passes, run.keep)
            else:
                body = _fit(job, reader, store, passes, run.keep)
        finally:
            backend.stop()
        extra = {"row_blocks": {"block_rows": block_rows, "blocks": -(-reader.n // block_rows), "rows": reader.n,
                                "passes": passes.count}}
        return finish(job, store, time.perf_counter() - t0, plots=plots, run_extra=extra, body=body)


def _kept_after_first(passes: Passes, keep: Callable[[], None]) -> Callable[[Pass], dict]:
    """``passes`` that keep the run directory once a pass has read every row without a
    problem: bad data found in the first pass leaves no run directory behind."""
    def run_pass(step: Pass) -> dict:
        out = passes(step)
        keep()
        return out
    return run_pass


def _fit(job, reader, store, passes: Passes, keep) -> dict[str, Any]:
    t, task_id = time.perf_counter(), job.task_id(0)
    try:
        record, report = drive(_fit_generator(job, reader), _kept_after_first(passes, keep))
    except (PassFailed, ValueError) as err:
        keep()
        write_chunk_records(store.path, Chunk((0,)), [failure_record(0, task_id, f"{type(err).__name__}: {err}", "",
                                                                     0, time.perf_counter() - t)])
        return {"table": []}
    write_chunk_records(store.path, Chunk((0,)), [ok_record(task_id, 0, 0, time.perf_counter() - t,
                                                            {"rows": reader.n, **record})])
    table = [{"output": c, "value": json_number(v)} for c, v in record.items()]
    return {"table": table, **report}


def _bootstrap(job, reader, store, passes: Passes, keep) -> dict[str, Any]:
    from hpcml.plans.bootstrap import interval_table  # the bootstrap's own table
    from hpcml.report.tables import ok_rows, output_columns

    replicates = job.spec.plan.options.replicates
    run_pass = _kept_after_first(passes, keep)
    done = store.completed()
    for first in range(0, replicates, REPLICATES_PER_PASS):
        last = min(replicates, first + REPLICATES_PER_PASS)
        if all(i in done for i in range(first, last)):
            continue
        t = time.perf_counter()
        group, _ = drive(ols_poisson_bootstrap(reader.features, job.params.fit_intercept, first, last), run_pass)
        seconds = (time.perf_counter() - t) / (last - first)
        records = [ok_record(job.task_id(i), i, 0, seconds, {"replicate": i, **out}) if out is not None else
                   failure_record(i, job.task_id(i), "LinAlgError: the replicate's design is singular", "", 0, seconds)
                   for i, out in zip(range(first, last), group)]
        write_chunk_records(store.path, Chunk(range(first, last)), records)
    full, _ = drive(FITS["ols"](reader.features, job.params.fit_intercept), run_pass)
    results = store.consolidate_table().to_pandas()
    ok = ok_rows(results)
    columns = output_columns(ok)
    level = 0.95
    return {"replicates": int(len(ok)), "level": level, "weights": "poisson",
            "table": interval_table(ok, columns, full, {}, level),
            "notes": ["Poisson bootstrap over row blocks: each row's weight in a replicate is Poisson(1), drawn from "
                      "(seed, replicate, row); the estimate is the fit of all rows; no BCa intervals (they need a "
                      "jackknife of the whole data)"]}
