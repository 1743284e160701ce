"""The end of every run, however it was driven: consolidate the chunk files, summarize, plot."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hpcml.store import RunStore

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


def summarize(job, results: pd.DataFrame, run_dir: Path) -> dict[str, Any]:
    """The plan's summary, plus what the model kind adds to it (R-hat, variance thresholds...)."""
    from hpcml.data import load_dataset
    from hpcml.plans.tables import ok_rows

    body = job.plan.summarize(job, results, run_dir, lambda: load_dataset(job))
    ok = ok_rows(results)
    if len(ok):
        body.update(job.model.summarize_extra(job, ok, run_dir))
    return {"plan": job.plan_kind, "model": job.model.name, "name": job.spec.name, **body}


def write_plots(job, results: pd.DataFrame, summary: dict[str, Any], plot_dir: Path) -> list[Path]:
    from hpcml.plans.tables import ok_rows

    ok = ok_rows(results)
    if ok.empty:
        return []
    job.plan.plots(job, ok, summary, plot_dir)
    job.model.plots(job, ok, summary, plot_dir)
    return sorted(plot_dir.glob("*.png")) if plot_dir.exists() else []


def finish(job, store: RunStore, seconds: float, plots: bool = True) -> RunResult:
    """Consolidate, summarize, plot: the run directory's final state."""
    results = store.consolidate()
    n_tasks = job.n_tasks
    n_failed = n_tasks - int((results["status"] == "ok").sum()) if not results.empty else n_tasks
    summary = summarize(job, results, store.path)
    summary["run"] = {"tasks": n_tasks, "failed": n_failed, "seconds": round(seconds, 3),
                      "backend": job.spec.backend.name}
    store.write_summary(summary)
    if plots:  # callers that only want the numbers (the R package) skip a second of drawing
        try:
            write_plots(job, results, summary, store.path / "plots")
        except Exception as err:  # a plot must never cost the results
            log.warning("plots skipped: %s", err)
    if job.spec.tracking is not None:
        _track(job, store.path, results, summary)
    return RunResult(store.path, results, summary, n_tasks, n_failed, seconds)


def _track(job, run_dir: Path, results: pd.DataFrame, summary: dict[str, Any]) -> None:
    """Experiment tracking (MLflow): a warning if it fails, never a lost result."""
    try:
        from hpcml.drivers.tracking import log_run

        run_id = log_run(job, run_dir, results, summary)
        if run_id:
            log.info("mlflow run %s in %s", run_id, job.spec.tracking.mlflow.uri)
    except ImportError as err:
        log.warning("tracking skipped: MLflow is not installed (pip install 'hpcml[tracking]'): %s", err)
    except Exception as err:
        log.warning("tracking skipped: %s: %s", type(err).__name__, err)
