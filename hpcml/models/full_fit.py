"""The summary a kind builds from one fit of the whole data, for a ``fit`` plan."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hpcml.data import load_dataset
from hpcml.models.base import FitContext


def fit_plan_summary(kind, job, build: Callable[[Any, Any, Any], dict[str, Any]]) -> dict[str, Any]:
    """For a ``fit`` plan: ``build(params, fitted, data)`` on one fit of the whole data."""
    if job.plan_kind != "fit":
        return {}
    data = load_dataset(job)
    ctx = FitContext(rng=np.random.default_rng(0), threads=job.spec.threads_per_task)
    return build(job.params, kind.fit(job.params, data, None, ctx), data)
