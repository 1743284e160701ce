"""What every R task kind shares: the seed R gets, and a base without scores or refits."""
from __future__ import annotations

from typing import Any

from hpcml.models.base import Dataset, FitContext, ModelKind
from hpcml.rundir.columns import not_outputs


def r_seed(ctx: FitContext) -> int:
    """The integer R's set.seed gets: the first draw of the task's own generator."""
    return int(ctx.rng.integers(1, 2**31 - 1))


def user_outputs(fitted: dict[str, Any]) -> dict[str, Any]:
    """R's outputs as record columns. An output named like a column hpcml writes itself
    (bookkeeping, a plan's own: ``rundir.columns.not_outputs``) is renamed ``output_<name>``,
    so it neither replaces hpcml's value (a ``rows`` output would change the shards plan's
    weights) nor vanishes from the summary. ``result`` is the serialized value of ``result: object``."""
    reserved = not_outputs()
    return {(f"output_{k}" if k in reserved or k.startswith("param_") or k.startswith("test_") else k): v
            for k, v in fitted.items()}


class RKindBase(ModelKind):
    needs_target = False
    cheap_refit = False  # summaries never refit R code on the driver

    def outputs(self, params, fitted: dict[str, float], data: Dataset) -> dict[str, float]:
        return user_outputs(fitted)

    def score(self, params, fitted, data: Dataset, mask) -> dict[str, float]:
        return {}
