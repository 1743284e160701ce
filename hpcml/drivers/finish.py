"""The end of every run, however it was driven: consolidate the chunk files, summarize, plot."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and Arrow are imported where a table is built (a map's driver builds none)
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

from hpcml.rundir import records, running
from hpcml.rundir.store import RunStore
from hpcml.data import load_dataset
from hpcml.report.tables import ok_rows

log = logging.getLogger("hpcml")


class RunResult:
    """A finished run: its directory (None for a run kept in memory), one record per task (read
    from results.parquet on first use when the run was not run here), its summary, counts and seconds."""

    def __init__(self, run_dir: Path | None, results: pd.DataFrame | pa.Table | None, summary: dict[str, Any],
                 n_tasks: int, n_failed: int, seconds: float):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._results, self.summary = results, summary
        self.n_tasks, self.n_failed, self.seconds = n_tasks, n_failed, seconds

    @property
    def results(self) -> pd.DataFrame:
        """One row per task (built on first use: a command line run of a million tasks that
        only reports its summary never holds them as Python objects)."""
        import pyarrow as pa  # loaded with the first table: a map's driver builds none

        if self._results is None:
            self._results = RunStore(self.run_dir).results()
        elif isinstance(self._results, pa.Table):
            self._results = self._results.to_pandas()
        return self._results

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def failures(self) -> pd.DataFrame:
        return self.results.loc[self.results["status"] != "ok"]

    def __repr__(self) -> str:
        return (f"RunResult(run_dir={str(self.run_dir)!r}, n_tasks={self.n_tasks}, n_failed={self.n_failed}, "
                f"seconds={self.seconds})")


def summary_frame(table: pa.Table) -> pd.DataFrame:
    """The records as the plans' summaries read them: text columns stay in Arrow's buffers
    (a million task ids are not a million Python strings); numbers are NumPy columns, but an
    integer grid parameter with empty cells is Int64, so the leaderboard names 8, not 8.0."""
    import pandas as pd  # loaded with the first table: a map's driver builds none
    import pyarrow as pa  # (as above)

    return records.with_int_params(table.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get),
                                   table.schema)


def summarize(job, results: pd.DataFrame, run_dir: Path, body: dict[str, Any] | None = None,
              load_data: bool = True) -> dict[str, Any]:
    """The plan's summary (or ``body``, what a driver that made the fit itself reports: a
    fit over row blocks), plus what the model kind adds to it (R-hat, variance thresholds...).
    ``load_data`` False: the plan summarizes without reading the data into this process."""

    data = (lambda: load_dataset(job)) if load_data else None
    body = dict(body) if body is not None else job.plan.summarize(job, results, run_dir, data)
    ok = ok_rows(results)
    if len(ok):
        body.update(job.model.summarize_extra(job, ok, run_dir))
    return {"plan": job.plan_kind, "model": job.model.name, "name": job.spec.name, **body}


def write_plots(job, results: pd.DataFrame, summary: dict[str, Any], plot_dir: Path) -> list[Path]:
    ok = ok_rows(results)
    if ok.empty:
        return []
    job.plan.plots(job, ok, summary, plot_dir)
    job.model.plots(job, ok, summary, plot_dir)
    return sorted(plot_dir.glob("*.png")) if plot_dir.exists() else []


def run_facts(job, n_failed: int, seconds: float, **extra: Any) -> dict[str, Any]:
    """The summary's ``run`` section: how the run went (an engine adds its own facts)."""
    return {"tasks": job.n_tasks, "failed": n_failed, "seconds": round(seconds, 3),
            "backend": job.spec.backend.name, **extra}


def finish(job, store: RunStore, seconds: float, plots: bool = True,
           run_extra: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
           load_data: bool = True) -> RunResult:
    """Consolidate, summarize, plot: the run directory's final state. ``run_extra``: what
    an engine adds to the summary's ``run`` section; ``body``: the summary a driver made
    itself, in place of the plan's; ``load_data`` False: the summary must not read the data
    into this process (an engine fitted data too large for it)."""
    import pyarrow.compute as pc  # loaded with the first table: a map's driver builds none

    table = store.consolidate_table()
    running.clear(store.path)  # every chunk is over: a marker left (a lost worker's) runs nothing
    results = summary_frame(table)
    n_tasks = job.n_tasks
    n_failed = n_tasks - int(pc.sum(pc.equal(table["status"], "ok")).as_py() or 0)
    summary = summarize(job, results, store.path, body, load_data)
    earlier = store.earlier_seconds()  # a resumed run: the parts before this one count too
    summary["run"] = run_facts(job, n_failed, earlier + seconds, **(run_extra or {}),
                               **({"seconds_this_session": round(seconds, 3)} if earlier else {}))
    store.write_summary(summary)
    if plots:  # callers that only want the numbers (the R package) skip a second of drawing
        try:
            write_plots(job, results, summary, store.path / "plots")
        except Exception as err:  # a plot must never cost the results
            log.warning("plots skipped: %s", err)
    if job.spec.tracking is not None:
        _track(job, store.path, results, summary)
    _write_report(store.path)
    return RunResult(store.path, table, summary, n_tasks, n_failed, seconds)


def _write_report(run_dir: Path) -> None:
    """report.html: a warning if it cannot be written, never a lost result."""
    try:
        from hpcml.report.html import write_report  # only where a run directory is finished

        write_report(run_dir)
    except Exception as err:
        log.warning("report.html skipped: %s: %s", type(err).__name__, err)


def is_finished(job, store: RunStore) -> bool:
    """Whether every task has an ok record, consolidated and summarized (read from
    results.parquet's status column; no chunk file is read)."""
    import pyarrow.compute as pc  # loaded with the first table: a map's driver builds none

    statuses = store.consolidated(["status"]) if store.read_summary() is not None else None
    return statuses is not None and statuses.num_rows == job.n_tasks and \
        statuses["status"].null_count == 0 and pc.all(pc.equal(statuses["status"], "ok")).as_py() is True


def recorded(job, store: RunStore) -> RunResult:
    """The finished run as it was recorded (its results are read when first asked for)."""
    summary = store.read_summary() or {}
    seconds = float((summary.get("run") or {}).get("seconds", 0.0))
    return RunResult(store.path, None, summary, job.n_tasks, 0, seconds)


def _track(job, run_dir: Path, results: pd.DataFrame, summary: dict[str, Any]) -> None:
    """Experiment tracking (MLflow): a warning if it fails, never a lost result."""
    try:
        from hpcml.report.tracking import log_run  # MLflow is an optional extra

        run_id = log_run(job, run_dir, results, summary)
        if run_id:
            log.info("mlflow run %s in %s", run_id, job.spec.tracking.mlflow.uri)
    except ImportError as err:
        log.warning("tracking skipped: MLflow is not installed (pip install 'hpcml[tracking]'): %s", err)
    except Exception as err:
        log.warning("tracking skipped: %s: %s", type(err).__name__, err)
