"""A vectorized statistic's values, many resamples of one column to a call.

A vectorized statistic (``scipy.stats.bootstrap``'s convention: ``axis=-1``) is handed a (G, m)
array whose rows are G copies of the data and returns G numbers. Each row is exactly the copy
the statistic would get on its own, so its values are those of G separate calls.
"""
from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from hpcml.models.base import Dataset

Statistic = Callable[[np.ndarray], Any]

# A call's batch holds at most this many values (4 MiB of float64) unless MIN_BATCH resamples
# need more: few calls for small data (each call of scipy.stats' statistics costs about 0.3 ms
# besides its work), no batch larger than 64 resamples for large data.
BATCH_VALUES = 1 << 19
MIN_BATCH = 64
_buffers = threading.local()  # each thread's reused batch buffer (batch_buffer)


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


@contextmanager
def batch_buffer(rows: int, n: int) -> Iterator[np.ndarray]:
    """A (rows, n) float64 array for a batch: this thread's one buffer of BATCH_VALUES values,
    reused, where the batch fits in it; else a new array. A new 4 MiB array each call cost
    about a millisecond more than the statistic's work on it: the allocator maps such a block
    afresh each time and hands it back to the system when it is freed, so every call faulted
    its pages in again (8,600 page faults per bootstrap of 2,000 resamples of 1,000 values,
    5,900 with the buffer alone, 4 with ``_heap_for_copies`` too; scipy's batches of 64 rows
    fault none). The buffer is taken while in use: a statistic that runs a vectorized
    bootstrap of its own (a double bootstrap) gets another buffer for it."""
    if rows * n > BATCH_VALUES:
        yield np.empty((rows, n), dtype=np.float64)
        return
    buffer = getattr(_buffers, "batch", None)
    if buffer is None:
        _heap_for_copies()
        buffer = np.empty(BATCH_VALUES, dtype=np.float64)
    _buffers.batch = None
    try:
        yield buffer[:rows * n].reshape(rows, n)
    finally:
        _buffers.batch = buffer


@functools.lru_cache(maxsize=1)
def _heap_for_copies() -> None:
    """Once a process: free one block twice a batch's size, never touched. glibc then raises
    its mmap threshold to that size (mallopt(3), the dynamic threshold), so the copies a
    statistic makes of each batch (``trim_mean`` partitions one, 4 MiB) are reused from the
    heap instead of mapped afresh and faulted in on every call: 5,900 page faults a bootstrap
    of 2,000 resamples of 1,000 values before, 4 after. The allocator would do the same after
    any freed array of that size; other allocators ignore it."""
    np.empty(2 * BATCH_VALUES + 1, dtype=np.float64)


def resampled_values(statistic: Statistic, column: np.ndarray, resamples) -> list[dict[str, Any]]:
    """One record per replicate of ``resamples`` (a group's resamples:
    ``plans.bootstrap.GroupResamples``), whose ``values(column, out)`` is the (G, n) batch whose
    row k holds the column's rows in order, each repeated as often as replicate k drew it. The
    batch is this thread's reused buffer: its values are read out (``tolist``) before the
    next batch overwrites it, even where the statistic returns a view of the batch."""
    if not len(resamples):
        return []
    with batch_buffer(len(resamples), column.size) as out:
        return [{"value": value} for value in batch_values(statistic, resamples.values(column, out)).tolist()]


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
