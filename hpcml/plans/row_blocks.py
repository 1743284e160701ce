"""``row_blocks``: one pass of a fit over row blocks (``drivers/row_blocks.py`` writes it; a
spec names ``fit`` or ``bootstrap`` and never this plan itself).

Task i reads block i of the data (rows [i * block_rows, (i + 1) * block_rows)) and returns
the pass's statistics of those rows (``numerics.block_steps``), combined unit by unit along
the fixed tree, as npz bytes: arrays only, never a pickle.
"""
from __future__ import annotations

import resource
from pathlib import Path
from typing import Any, Callable

from pydantic import Field

from hpcml.plans.base import Plan, PlanOptions, register_plan


class RowBlocksOptions(PlanOptions):
    step: str = Field(description="the per-unit statistics of this pass (numerics/block_steps.py)")
    state: dict[str, Any] = Field(default_factory=dict, description="what the pass needs: coefficients, centres")
    block_rows: int = Field(gt=0, description="rows per block: 1024 times a power of two")
    n_rows: int = Field(ge=0, description="rows of the data")

    @property
    def blocks(self) -> int:
        return -(-self.n_rows // self.block_rows)


def pass_spec(spec: dict[str, Any], step: str, state: dict[str, Any], block_rows: int, n_rows: int) -> dict[str, Any]:
    """A job spec (a dumped one) made one pass: its plan replaced by this one."""
    return {**spec, "plan": {"row_blocks": {"step": step, "state": state, "block_rows": block_rows, "n_rows": n_rows}}}


class PassStatistics:
    """Where a pass's records go (in place of a run directory's store): each block's
    statistics folded into the fixed tree as it comes back, in any order, and then dropped;
    a failed block's error kept until a retry of it succeeds."""

    def __init__(self, path: str | Path, n_blocks: int):
        from hpcml.numerics.block_stats import ArrivingTree  # arrays in, arrays out

        self.path, self.tree = Path(path), ArrivingTree(n_blocks)
        self.ok: set[int] = set()
        self.errors: dict[int, str] = {}
        self.peak_rss_mb = 0.0  # the largest of the workers'

    def write_records(self, chunk, records: list[dict[str, Any]]) -> None:
        from hpcml.numerics.block_stats import from_bytes  # arrays in, arrays out

        for record in records:
            index = record["task_index"]
            if index in self.ok:
                continue
            if record["status"] == "ok":
                self.ok.add(index)
                self.errors.pop(index, None)
                self.tree.add(index, from_bytes(record["block_stats"]))
                self.peak_rss_mb = max(self.peak_rss_mb, float(record.get("peak_rss_mb") or 0.0))
            else:
                self.errors[index] = record.get("error") or "failed"

    def completed(self) -> set[int]:
        return set(self.ok)

    @property
    def statistics(self):
        """The statistics of every row (once every block is in)."""
        return self.tree.root


@register_plan
class RowBlocksPlan(Plan):
    name = "row_blocks"
    Options = RowBlocksOptions
    records = ("block_stats", "rows", "peak_rss_mb")
    reads_blocks = True

    def count(self, options: RowBlocksOptions) -> int:
        return options.blocks

    def params_at(self, options: RowBlocksOptions, index: int) -> dict[str, Any]:
        return {}

    def size_options(self, options: RowBlocksOptions) -> dict[str, tuple[int, Any]]:
        return {"block_rows": (options.blocks, options.block_rows)}

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        from hpcml.numerics.block_stats import to_bytes  # arrays in, arrays out
        from hpcml.numerics.block_steps import block_statistics

        options = job.spec.plan.options
        start = task.index * options.block_rows
        stop = min(options.n_rows, start + options.block_rows)
        X, y = data.meta["blocks"].read(start, stop)
        stats = block_statistics(options.step, X, y, start, options.state, job.spec.seed)
        # The worker's peak memory so far: what a block costs it, reported in the run's summary.
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"block_stats": to_bytes(stats), "rows": stop - start, "peak_rss_mb": peak_mb}

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        return {"table": []}
