"""Random draws addressed by (seed, stream, row): the same number for a row wherever it is read.

A bootstrap of data that no process holds cannot draw a replicate's n indices in one place.
Instead each row's weight in replicate r is a function of (seed, r, row) alone, drawn from
NumPy's counter-based Philox generator keyed by (seed, stream) at the row's counter position,
so any block of rows, read by any worker on any backend, sees the same weights.

Poisson(1) weights are the Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012,
"Estimating uncertainty for massive data streams"): each row appears Poisson(1) times instead
of the multinomial's exactly-n draws in total. The replicate's size then varies around n
(standard deviation sqrt(n)); for large n its standard errors agree with the multinomial
bootstrap's to O(1/sqrt(n)).
"""
from __future__ import annotations

import math

import numpy as np

# Streams of the job seed that are not bootstrap replicates (replicates use 0, 1, 2, ...).
SAMPLE_STREAM = 2**63 + 1  # k-means' starting sample

# P(Poisson(1) <= k), k = 0..19: past 19 the remaining mass is below 2**-64.
_POISSON1_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])


def uniforms(seed: int, stream: int, start: int, stop: int) -> np.ndarray:
    """U(0, 1) draws of rows [start, stop) of ``stream``: row i is the i-th 64-bit output of
    Philox keyed by (seed, stream), whatever block it is read in."""
    gen = np.random.Philox(key=np.array([seed % 2**64, stream % 2**64], dtype=np.uint64))
    first = start - start % 4  # Philox makes 4 outputs per counter step; advance() counts steps
    gen.advance(first // 4)
    raw = gen.random_raw(stop - first)[start - first:]
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53


def poisson_weights(seed: int, replicate: int, start: int, stop: int) -> np.ndarray:
    """Poisson(1) weights of rows [start, stop) in bootstrap ``replicate`` (uint8)."""
    u = uniforms(seed, replicate, start, stop)
    return np.searchsorted(_POISSON1_CDF, u, side="right").astype(np.uint8)


def sampled_rows(seed: int, stream: int, start: int, stop: int, rate: float) -> np.ndarray:
    """The rows of [start, stop) kept by a Bernoulli(rate) sample of ``stream`` (row numbers)."""
    return start + np.flatnonzero(uniforms(seed, stream, start, stop) < rate)
