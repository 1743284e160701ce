"""``sweep``: a grid of model parameters (times repeats); every task fits on the same rows and
is scored on the same held-out rows, and the summary is a leaderboard."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field, ValidationError

from hpcml.errors import pydantic_problems
from hpcml.plans.base import DrawnSplit, Plan, PlanOptions, fit_and_record, register_plan, shared_rng
from hpcml.report.tables import json_number, ok_rows
from hpcml.rundir.columns import param_columns

HOLDOUT_KEY = 0x5EED  # spawn key of the holdout draw
SPLIT_KEY = 0x5EEE  # spawn key of the validation-split seed every task shares


class SweepOptions(PlanOptions):
    grid: dict[str, list[Any]] = Field(min_length=1, description="model parameter -> list of values; tasks = product x repeats")
    repeats: int = Field(1, gt=0)
    holdout: float = Field(0.25, gt=0, lt=1, description="fraction of rows held out for scoring")


def holdout_mask(seed: int, n: int, fraction: float) -> np.ndarray:
    """Rows held out for scoring a sweep; the same for every task of the job."""
    rng = shared_rng(seed, HOLDOUT_KEY)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: max(1, int(round(fraction * n)))]] = True
    return mask


@register_plan
class SweepPlan(Plan):
    name = "sweep"
    Options = SweepOptions
    parameters = ("repeat",)  # and a grid point, ``params`` (a command's {params.NAME})
    records = ("repeat",)  # and param_<name> for each grid parameter (param_<name>.<key> of a mapping)
    compares_settings = True
    splits_by_draw = True

    def params_at(self, options: SweepOptions, index: int) -> dict[str, Any]:
        # Grid points in itertools.product order (the last parameter varies fastest), each
        # repeated ``repeats`` times in a row.
        combo, repeat = divmod(index, options.repeats)
        place = np.unravel_index(combo, [len(v) for v in options.grid.values()])
        return {"repeat": repeat, "params": {k: options.grid[k][int(j)] for k, j in zip(options.grid, place)}}

    def count(self, options: SweepOptions) -> int:
        return math.prod(len(v) for v in options.grid.values()) * options.repeats

    def shared(self, job, n: int) -> dict[str, Any]:
        split_seed = int(shared_rng(job.spec.seed, SPLIT_KEY, 0).integers(2 ** 63))
        return {"holdout": holdout_mask(job.spec.seed, n, job.spec.plan.sweep.holdout), "split_seed": split_seed}

    def check_spec(self, model, params, options: SweepOptions) -> list[tuple[str, Any, str]]:
        """Every grid parameter is one of the model's, and every grid point valid parameters."""
        problems = []
        for name, values in options.grid.items():
            if name not in model.Params.model_fields and not model.open_grid:
                problems.append((f"plan.sweep.grid.{name}", values, f"not a parameter of model {model.name!r}"))
            elif not values:
                problems.append((f"plan.sweep.grid.{name}", values, "needs at least one value"))
        if problems:
            return problems
        for combo in itertools.product(*options.grid.values()):
            try:
                model.with_params(params, dict(zip(options.grid, combo)))
            except ValidationError as err:
                return pydantic_problems(err, "plan.sweep.grid")
        return []

    def size_options(self, options: SweepOptions) -> dict[str, tuple[int, Any]]:
        points = self.count(options) // options.repeats
        return {**super().size_options(options), "grid": (points, f"{points} grid points")}

    def check_model(self, job, data) -> list[tuple[str, Any, str]]:
        return []  # the base alone may lack the grid's arguments: ``check`` checks each grid point

    def check(self, job, data) -> list[tuple[str, Any, str]]:
        problems = []  # the model's check of each grid point once, no task built
        options = job.spec.plan.sweep
        for point in range(0, self.count(options), options.repeats):
            problems += job.model.check(job.params_with(self.params_at(options, point)["params"]), data)
        return problems

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        params = job.params_with(task.params["params"])
        holdout = shared["holdout"]
        ctx.split_seed = shared.get("split_seed")  # every configuration validates on the same rows
        fitted, outputs = fit_and_record(job, data, (~holdout).astype(np.float64), ctx, params)
        return {"repeat": task.params["repeat"], **param_columns(task.params["params"]),
                **{f"test_{k}": v for k, v in job.model.score(params, fitted, data, holdout).items()}, **outputs}

    def drawn_split(self, job, index: int) -> DrawnSplit:
        """Every grid point holds out the same rows, u < holdout of the draws under the job's
        seed; a repeat r refits with seed + r."""
        task = self.params_at(job.spec.plan.sweep, index)
        record = {"repeat": task["repeat"], **param_columns(task["params"])}
        return DrawnSplit(draw=0, low=0.0, high=job.spec.plan.sweep.holdout, record=record,
                          overrides=task["params"], fit_seed=task["repeat"])

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        ok = ok_rows(results)
        keys = [c for c in ok.columns if c.startswith("param_")]  # a mapping's keys one column each
        metric, greater = job.model.sweep_metric(job.params)
        if ok.empty or metric not in ok:
            return {"metric": metric, "table": []}
        grouped = ok.groupby(keys, dropna=False) if keys else ok.groupby(lambda _: 0)
        # repeats: the setting's tasks, also where the metric is undefined (k-means' index at k = 1)
        board = grouped[metric].agg(["mean", "std"]).join(grouped.size().rename("count"))
        board = (board.reset_index() if keys else board).sort_values("mean", ascending=not greater, kind="stable")
        # Row by row as records: each column keeps its own type (an integer setting stays one).
        rows = [{**{k[len("param_"):]: json_number(r[k]) for k in keys}, f"{metric}_mean": json_number(r["mean"]),
                 f"{metric}_sd": json_number(r["std"]), "repeats": int(r["count"])} for r in board.to_dict("records")]
        body = {"metric": metric, "greater_is_better": greater, "best": rows[0] if rows else None,
                "grid": [k[len("param_"):] for k in keys], "table": rows}
        body.update(job.model.grid_summary(job.params, ok))
        return body

    def plots(self, job, ok, summary, plot_dir: Path) -> None:
        from hpcml.report.plots import leaderboard  # matplotlib loads only where a run draws

        leaderboard(summary, plot_dir / "leaderboard.png")
        job.model.grid_plots(job.params, ok, summary, plot_dir)
