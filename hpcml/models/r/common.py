"""What every R task kind shares: the seed R gets, and a base without scores or refits."""
from __future__ import annotations

from typing import Any

from hpcml.models.base import Dataset, FitContext, ModelKind


def r_seed(ctx: FitContext) -> int:
    """The integer R's set.seed gets: the first draw of the task's own generator."""
    return int(ctx.rng.integers(1, 2**31 - 1))


# Columns of a task's record that hpcml writes itself (bookkeeping and plan parameters): an
# output of R code with one of these names is renamed `output_<name>`, so it neither replaces
# hpcml's value (a `rows` output would change the shards plan's weights) nor vanishes from the
# summary. `result` is the serialized value of `result: object`.
RESERVED = frozenset({"task_id", "task_index", "status", "attempt", "seconds", "error", "traceback",
                      "replicate", "repeat", "fold", "shard", "rows"})


def user_outputs(fitted: dict[str, Any]) -> dict[str, Any]:
    return {(f"output_{k}" if k in RESERVED or k.startswith("param_") or k.startswith("test_") else k): v
            for k, v in fitted.items()}


class RKindBase(ModelKind):
    needs_target = False
    cheap_refit = False  # summaries never refit R code on the driver

    def outputs(self, params, fitted: dict[str, float], data: Dataset) -> dict[str, float]:
        return user_outputs(fitted)

    def score(self, params, fitted, data: Dataset, mask) -> dict[str, float]:
        return {}
