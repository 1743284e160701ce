"""``cv``: K-fold cross-validation, optionally repeated; each task fits on K-1 folds and scores
the held-out fold. Fold labels are drawn once per repeat from the job seed, so every task
(on any worker) sees the same folds."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from hpcml.plans.base import DrawnSplit, Plan, PlanOptions, fit_and_record, register_plan, shared_rng
from hpcml.report.tables import json_number, mean_sd_table, ok_rows, output_columns

FOLDS_KEY = 0xF01D  # spawn key of the fold draws (length-2 keys never collide with tasks')


class CVOptions(PlanOptions):
    folds: int = Field(5, ge=2)
    repeats: int = Field(1, gt=0)


def cv_folds(seed: int, n: int, folds: int, repeat: int) -> np.ndarray:
    """Fold label of each row for one CV repeat: a seeded permutation cut into near-equal parts."""
    rng = shared_rng(seed, FOLDS_KEY, repeat)
    labels = np.empty(n, dtype=np.int64)
    labels[rng.permutation(n)] = np.arange(n) % folds
    return labels


@register_plan
class CVPlan(Plan):
    name = "cv"
    Options = CVOptions
    parameters = ("repeat", "fold")
    records = ("repeat", "fold")
    splits_by_draw = True

    def params_at(self, options: CVOptions, index: int) -> dict[str, Any]:
        repeat, fold = divmod(index, options.folds)
        return {"repeat": repeat, "fold": fold}

    def count(self, options: CVOptions) -> int:
        return options.repeats * options.folds

    def shared(self, job, n: int) -> dict[str, Any]:
        cv = job.spec.plan.cv
        # Drawn per repeat when a task first needs it (a chunk's tasks are a repeat's folds in a
        # row), not all at once: repeats x rows labels would not fit for a million repeats.
        return {"folds": functools.lru_cache(maxsize=2)(functools.partial(cv_folds, job.spec.seed, n, cv.folds))}

    def check(self, job, data) -> list[tuple[str, Any, str]]:
        folds = job.spec.plan.cv.folds
        return [("plan.cv.folds", folds, f"more folds than rows ({data.n})")] if folds > data.n else []

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        fold, repeat = task.params["fold"], task.params["repeat"]
        test = shared["folds"](repeat) == fold
        fitted, outputs = fit_and_record(job, data, (~test).astype(np.float64), ctx)
        model, params = job.model, job.params
        return {"repeat": repeat, "fold": fold,
                **{f"test_{k}": v for k, v in model.score(params, fitted, data, test).items()},
                **{f"train_{k}": v for k, v in model.score(params, fitted, data, ~test).items()},
                **outputs}

    def drawn_split(self, job, index: int) -> DrawnSplit:
        """Repeat r's folds from the draws under seed + r: fold f holds f/K <= u < (f+1)/K."""
        folds = job.spec.plan.cv.folds
        task = self.params_at(job.spec.plan.cv, index)
        return DrawnSplit(draw=task["repeat"], low=task["fold"] / folds, high=(task["fold"] + 1) / folds,
                          record=task, score_train=True)

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        ok = ok_rows(results)
        # Built-in kinds score test and train rows; user code names its own outputs.
        metrics = [c for c in output_columns(ok) if c.startswith(("test_", "train_"))] or output_columns(ok)
        per_repeat = ok.groupby("repeat")[metrics].mean().reset_index().to_dict("records") if metrics else []
        return {"folds": job.spec.plan.cv.folds, "repeats": job.spec.plan.cv.repeats,
                "table": mean_sd_table(ok, metrics),
                "per_repeat": [{k: json_number(v) for k, v in r.items()} for r in per_repeat]}

    def plots(self, job, ok, summary, plot_dir: Path) -> None:
        from hpcml.report.plots import boxplots  # matplotlib loads only where a run draws

        metrics = [c for c in output_columns(ok) if c.startswith("test_")]
        boxplots(ok, metrics, f"{job.spec.name}: {job.spec.plan.cv.folds}-fold CV", plot_dir / "cv.png")
