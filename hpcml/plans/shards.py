"""``shards``: task i fits only shard i, a contiguous block of rows (each core its own part of
the data, as the lecture notes split files by hand); the summary combines the shards."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from hpcml.plans.base import block_share
from hpcml.plans.base import Plan, PlanOptions, register_plan
from hpcml.report.tables import json_number, ok_rows, output_columns


class ShardsOptions(PlanOptions):
    n: int = Field(gt=0, description="number of data shards; task i fits shard i only")


def rows_of(data, start: int, stop: int):
    """The rows [start, stop) of a data set (a lazy data set reads only those)."""
    from dataclasses import replace

    return replace(data, X=data.X[start:stop], y=None if data.y is None else data.y[start:stop])


@register_plan
class ShardsPlan(Plan):
    name = "shards"
    Options = ShardsOptions
    parameters = ("shard", "n_shards")
    records = ("shard", "rows")
    reads_rows_lazily = True  # task i reads shard i only

    def count(self, options: ShardsOptions) -> int:
        return options.n

    def params_at(self, options: ShardsOptions, index: int) -> dict[str, Any]:
        return {"shard": index, "n_shards": options.n}

    def check(self, job, data) -> list[tuple[str, Any, str]]:
        n = job.spec.plan.shards.n
        return [("plan.shards.n", n, f"more shards than rows ({data.n})")] if n > data.n else []

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        rows = block_share(data.n, task.params["shard"], task.params["n_shards"])
        start, stop = rows.start, rows.stop
        part = rows_of(data, start, stop)
        fitted = job.model.fit(job.params, part, None, ctx)
        return {"shard": task.params["shard"], "rows": stop - start, **job.model.outputs(job.params, fitted, part),
                **job.model.score(job.params, fitted, part, None)}

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        ok = ok_rows(results)
        if ok.empty:
            return {"shards": 0, "table": []}
        columns = output_columns(ok)
        weights = ok["rows"].to_numpy(dtype=float)
        # Combined estimate: the row-weighted mean of the shard estimates.
        table = [{"output": c, "combined": json_number(np.average(ok[c].to_numpy(dtype=float), weights=weights)),
                  "sd_across_shards": json_number(ok[c].std(ddof=1)) if len(ok) > 1 else None} for c in columns]
        return {"shards": int(len(ok)), "table": table}
