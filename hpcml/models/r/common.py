"""What every R task kind shares: the seed R gets, and a base without scores or refits."""
from __future__ import annotations

from hpcml.models.base import Dataset, FitContext, ModelKind


def r_seed(ctx: FitContext) -> int:
    """The integer R's set.seed gets: the first draw of the task's own generator."""
    return int(ctx.rng.integers(1, 2**31 - 1))


class RKindBase(ModelKind):
    needs_target = False
    cheap_refit = False  # summaries never refit R code on the driver

    def outputs(self, params, fitted: dict[str, float], data: Dataset) -> dict[str, float]:
        return dict(fitted)

    def score(self, params, fitted, data: Dataset, mask) -> dict[str, float]:
        return {}
