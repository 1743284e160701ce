"""``fit``: one fit of the model on the whole data."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hpcml.plans.base import Plan, PlanOptions
from hpcml.report.tables import json_number, ok_rows, output_columns


class FitOptions(PlanOptions):
    pass


class FitPlan(Plan):
    name = "fit"
    Options = FitOptions

    def params_at(self, options: FitOptions, index: int) -> dict[str, Any]:
        return {}

    def count(self, options: FitOptions) -> int:
        return 1

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        fitted = job.model.fit(job.params, data, None, ctx)
        return {**job.model.outputs(job.params, fitted, data), **job.model.score(job.params, fitted, data, None)}

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        ok = ok_rows(results)
        return {"table": [{"output": c, "value": json_number(ok[c].iloc[0])} for c in output_columns(ok)] if len(ok) else []}
