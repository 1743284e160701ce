"""A kind's report on one fit of the whole data, refitted on the driver from the data the plan
gives it (for kinds whose report needs the fitted model, not only the task's record)."""
from __future__ import annotations

from typing import Any

import numpy as np

from hpcml.models.base import FitContext, WholeDataFit


def refit_whole_data(kind, params, fit: WholeDataFit) -> tuple[Any, Any]:
    """(fitted, data): the kind fitted again on ``fit``'s data, all rows weighted 1."""
    data = fit.data()
    ctx = FitContext(rng=np.random.default_rng(0), threads=fit.threads)
    return kind.fit(params, data, None, ctx), data
