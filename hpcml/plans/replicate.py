"""``replicate``: n runs of the model on the whole data, each with its own generator (random
restarts, MCMC chains, training seeds); the summary is each output's mean and spread."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import Field

from hpcml.plans.base import Plan, PlanOptions, register_plan
from hpcml.report.tables import mean_sd_table, ok_rows, output_columns


class ReplicateOptions(PlanOptions):
    n: int = Field(gt=0)


@register_plan
class ReplicatePlan(Plan):
    name = "replicate"
    Options = ReplicateOptions
    parameters = ("replicate",)
    records = ("replicate",)
    repeat_count_option = "n"  # task i: run i of n, on all the rows

    def count(self, options: ReplicateOptions) -> int:
        return options.n

    def params_at(self, options: ReplicateOptions, index: int) -> dict[str, Any]:
        return {"replicate": index}

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        return self._record(job, data, task, job.model.fit(job.params, data, None, ctx))

    def _record(self, job, data, task, fitted) -> dict[str, Any]:
        return {"replicate": task.params["replicate"], **job.model.outputs(job.params, fitted, data),
                **job.model.score(job.params, fitted, data, None)}

    def group_size(self, job) -> int:
        return job.model.replicate_group(job.params)

    def run_group(self, job, data, tasks, ctxs, shared, wanted) -> dict[int, dict[str, Any]]:
        # Runs of a kind that makes many at once (an R loop's iterations in one call into R):
        # each run still has its own context and generator, so its numbers are those of a run
        # made alone; a run the kind declines (None) is made alone afterwards.
        members = [(task, ctx) for task, ctx in zip(tasks, ctxs) if task.index in wanted]
        fitted = job.model.fit_replicates(job.params, data, [ctx for _, ctx in members])
        return {task.index: self._record(job, data, task, f) for (task, _), f in zip(members, fitted)
                if f is not None}

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        ok = ok_rows(results)
        return {"table": mean_sd_table(ok, output_columns(ok))}

    def plots(self, job, ok, summary, plot_dir: Path) -> None:
        from hpcml.report.plots import histograms  # matplotlib loads only where a run draws

        histograms(ok, output_columns(ok), f"{job.spec.name}: replicate distribution", plot_dir / "replicate.png",
                   summary.get("table"))
