"""A vectorized statistic's values, many resamples of one column to a call.

A vectorized statistic (``scipy.stats.bootstrap``'s convention: ``axis=-1``) is handed a (G, m)
array whose rows are G copies of the data and returns G numbers. Each row is exactly the copy
the statistic would get on its own, so its values are those of G separate calls.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hpcml.models.base import Dataset

Statistic = Callable[[np.ndarray], Any]

# A call's batch holds at most this many values (4 MiB of float64) unless MIN_BATCH resamples
# need more: few calls for small data (each call of scipy.stats' statistics costs about 0.3 ms
# besides its work), no batch larger than 64 resamples for large data.
BATCH_VALUES = 1 << 19
MIN_BATCH = 64
# Resamples taken from the column at a time while a batch is built.
TAKE_ROWS = 64


def vector_batch(n: int) -> int:
    """Resamples of n values a call gets."""
    return max(MIN_BATCH, BATCH_VALUES // max(n, 1))



def one_column(data: Dataset) -> np.ndarray:
    """The data's one column, float64."""
    return np.asarray(data.X, dtype=np.float64)[:, 0]


def batch_values(statistic: Statistic, batch: np.ndarray) -> np.ndarray:
    """The statistic's values of the rows of ``batch``, in one call."""
    values = np.asarray(statistic(batch), dtype=np.float64)
    if values.shape != (batch.shape[0],):
        raise TypeError(f"a vectorized function must return one number per resample: {batch.shape[0]} resamples "
                        f"gave an array of shape {values.shape}")
    return values


def resampled_values(statistic: Statistic, column: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    """One record per replicate: ``rows`` (G x n) holds each replicate's row indices in
    increasing order, so the (G, n) batch ``column[rows]`` has, in each row, the column's rows
    in order, each repeated by its count."""
    if not len(rows):
        return []
    batch = np.empty(rows.shape, dtype=column.dtype)
    for start in range(0, len(rows), TAKE_ROWS):
        # Indices as intp a block at a time (they stay in cache); all are below n, so "clip"
        # changes none and spares the bounds check's copy: 3x faster than column[rows].
        np.take(column, rows[start:start + TAKE_ROWS].astype(np.intp), out=batch[start:start + TAKE_ROWS],
                mode="clip")
    return [{"value": value} for value in batch_values(statistic, batch).tolist()]


def leave_group_out_values(statistic: Statistic, column: np.ndarray, labels: np.ndarray, groups: int,
                           batch_size: int) -> list[dict[str, Any]]:
    """One record per group ``g``: the statistic of the rows whose label is not ``g`` (BCa's
    jackknife), ``batch_size`` groups of one size to a call."""
    sizes = column.size - np.bincount(labels, minlength=groups)
    out: list[dict[str, Any]] = [{} for _ in range(groups)]
    for size in np.unique(sizes):
        same = np.flatnonzero(sizes == size)
        for start in range(0, same.size, batch_size):
            part = same[start:start + batch_size]
            keep = labels != part[:, None]  # row k: the rows left in without group part[k]
            batch = np.broadcast_to(column, keep.shape)[keep].reshape(part.size, -1)  # each row's values in order
            for g, value in zip(part, batch_values(statistic, batch)):
                out[g] = {"value": float(value)}
    return out
