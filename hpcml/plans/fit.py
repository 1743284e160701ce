"""``fit``: one fit of the model on the whole data; the model kind adds its report on that
fit (R's summary table, PCA's loadings, k-means' clusters) and saves its files."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from hpcml.models.base import WholeDataFit
from hpcml.models.passes import KINDS
from hpcml.plans.base import Plan, PlanOptions, register_plan
from hpcml.report.tables import json_number, ok_rows, output_columns
from hpcml.rundir.paths import task_folder


class FitOptions(PlanOptions):
    pass


@register_plan
class FitPlan(Plan):
    name = "fit"
    Options = FitOptions
    single_fit = True
    row_block_kinds = KINDS

    def params_at(self, options: FitOptions, index: int) -> dict[str, Any]:
        return {}

    def count(self, options: FitOptions) -> int:
        return 1

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        fitted = job.model.fit(job.params, data, None, ctx)
        if ctx.scratch is not None:  # a run directory: the fit's files beside its record
            job.model.save_whole_data_files(job.params, fitted, data, Path(ctx.scratch))
        return {**job.model.outputs(job.params, fitted, data), **job.model.score(job.params, fitted, data, None)}

    def over_row_blocks(self, job, blocks) -> dict[str, Any]:
        """One global fit: the record of task 0 and the kind's report on it (``summary(lm)``,
        loadings...) from the statistics of every row."""
        from hpcml.models.over_row_blocks import drive, fit_for  # only for data larger than a node

        t = time.perf_counter()
        try:
            record, report = drive(fit_for(job.model.name, job.params, blocks.features, job.spec.seed, blocks.n_rows),
                                   blocks.run_pass)
        except (blocks.PassFailed, ValueError) as err:
            blocks.write([(0, None, f"{type(err).__name__}: {err}", time.perf_counter() - t)])
            return {"table": []}
        blocks.write([(0, record, None, time.perf_counter() - t)])
        return {"table": [{"output": c, "value": json_number(v)} for c, v in record.items()], **report}

    def whole_data_fit(self, job, ok, run_dir: Path | None, data: Callable[[], Any] | None) -> WholeDataFit:
        return WholeDataFit(record=ok.iloc[0], run_dir=None if run_dir is None else Path(run_dir),
                            files=task_folder(self.task_id(0)), load=data, threads=job.spec.threads_per_task)

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        ok = ok_rows(results)
        if not len(ok):
            return {"table": []}
        body = {"table": [{"output": c, "value": json_number(ok[c].iloc[0])} for c in output_columns(ok)]}
        if data is None:  # the kind's report refits in memory: the data is too large for that here
            return {**body, "notes": ["no whole-data report (summary table, loadings): it refits in one process, "
                                      "and the data is larger than data.blocks_above_mb"]}
        body.update(job.model.whole_data_summary(job.params, self.whole_data_fit(job, ok, run_dir, data)))
        return body

    def plots(self, job, ok, summary, plot_dir: Path) -> None:
        fit = self.whole_data_fit(job, ok, Path(plot_dir).parent, None)
        job.model.whole_data_plots(job.params, fit, Path(plot_dir))
