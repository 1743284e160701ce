"""A fit over row blocks as a conversation: it asks for passes, it is sent their statistics.

Kept apart from the fits themselves (``over_row_blocks``, which load SciPy) so that the
driver, which only carries passes to a backend, imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator

import numpy as np

# The built-in kinds that have a fit over row blocks (``over_row_blocks.fit_for``).
KINDS = ("ols", "logistic", "pca", "kmeans")


@dataclass
class Pass:
    step: str
    state: dict[str, Any] = field(default_factory=dict)
    label: str = ""


Stats = dict[str, np.ndarray]
Fit = Generator[Pass, Stats, tuple[dict[str, float], dict[str, Any]]]


def drive(fit: Fit, run_pass) -> Any:
    """Run a fit to its end, each pass it asks for by ``run_pass`` (statistics back)."""
    request = next(fit)
    while True:
        try:
            request = fit.send(run_pass(request))
        except StopIteration as done:
            return done.value
