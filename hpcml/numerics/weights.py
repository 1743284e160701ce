"""Observation weights and row masks, as every model kind takes them: a bootstrap replicate
is a vector of counts, a CV fold a 0/1 vector, a score a boolean row mask."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_weights(weights: Any, n: int) -> np.ndarray:
    """Validated float64 weights of length n (None -> ones)."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape[0] != n:
        raise ValueError(f"weights has length {w.shape[0]}, data has {n} rows")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    if not np.any(w > 0):
        raise ValueError("all weights are zero: no rows to fit")
    return w


def keep_rows(w: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Rows with positive weight (zero-weight rows add nothing); no copy when all are kept."""
    keep = w > 0
    if keep.all():
        return [w, *arrays]
    return [w[keep], *(a[keep] for a in arrays)]


def positive_rows(w: np.ndarray) -> np.ndarray | None:
    """Indices of the rows with positive weight, or None when every row has one: what a fit
    passes block by block instead of the copy ``keep_rows`` makes (``hpcml.numerics.gram``)."""
    keep = w > 0
    return None if keep.all() else np.flatnonzero(keep)


def row_mask(mask: Any, n: int) -> np.ndarray:
    """A boolean row selector (None -> all rows)."""
    if mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(mask, dtype=bool).ravel()
    if m.shape[0] != n:
        raise ValueError(f"mask has length {m.shape[0]}, data has {n} rows")
    return m
