"""``hpcml.bootstrap(statistic, x, vectorized=True)``: the statistic gets G resamples at once as
a (G, n) array with ``axis=-1``, as ``scipy.stats.bootstrap``'s vectorized statistics do; the
replicates are bit for bit those of the statistic called once per resample, on every backend."""
from __future__ import annotations

import os
from functools import partial

import numpy as np
import pytest
import scipy.stats as st

import hpcml

X = np.random.default_rng(1).normal(size=300)
TRIMMED = partial(st.trim_mean, proportiontocut=0.1)


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_vectorized_replicates_equal_one_call_per_resample(backend):
    if backend == "dask":
        pytest.importorskip("distributed")
    one = hpcml.bootstrap(TRIMMED, X, replicates=150, seed=5, workers=2)
    batched = hpcml.bootstrap(TRIMMED, X, replicates=150, seed=5, workers=2, vectorized=True, backend=backend)
    assert np.array_equal(one.replicates.to_numpy(), batched.replicates.to_numpy())
    assert (one.estimate, one.se, one.percentile, one.bca) == (batched.estimate, batched.se, batched.percentile,
                                                               batched.bca)
    # scipy's own vectorized bootstrap of the same statistic agrees on the standard error
    ref = st.bootstrap((X,), TRIMMED, n_resamples=2000, vectorized=True, random_state=0, method="percentile")
    assert batched.se == pytest.approx(ref.standard_error, rel=0.2)


def test_vectorized_bad_input_is_one_line():
    with pytest.raises(hpcml.SpecError, match="vectorized: a vectorized statistic takes 1-D data"):
        hpcml.bootstrap(np.median, np.ones((20, 2)), replicates=10, vectorized=True)
    with pytest.raises(hpcml.RunFailed, match="one number per resample"):
        hpcml.bootstrap(lambda x, axis: np.ones(3), X, replicates=10, vectorized=True, workers=1)



CALLS: list[int] = []  # the process of each call of the statistic seen here


def _trimmed_noted(x, axis):
    CALLS.append(os.getpid())
    return TRIMMED(x, axis=axis)


def test_small_vectorized_bootstrap_runs_in_this_process_with_a_worker_runs_numbers():
    # 150 replicates are one batched call; the summary's full fit and jackknife run here either way
    CALLS.clear()
    here = hpcml.bootstrap(_trimmed_noted, X, replicates=150, seed=5, workers=1, vectorized=True)
    in_driver = len(CALLS)
    CALLS.clear()
    there = hpcml.bootstrap(_trimmed_noted, X, replicates=150, seed=5, workers=1, vectorized=True, in_driver=False)
    assert in_driver - len(CALLS) == 1
    assert np.array_equal(here.replicates.to_numpy(), there.replicates.to_numpy())
    assert (here.estimate, here.se, here.percentile, here.bca) == (there.estimate, there.se, there.percentile,
                                                                   there.bca)


def _positional(x, axis=-1):
    """A statistic of the order of its input, not only of its values."""
    x = np.asarray(x)
    return np.take(x, 0, axis=axis) - 2 * np.take(x, -1, axis=axis) + (x * np.linspace(0, 1, x.shape[-1])).sum(axis=axis)


@pytest.mark.parametrize("statistic", [TRIMMED, np.median, _positional], ids=["trim_mean", "median", "positional"])
def test_vectorized_resamples_are_the_one_by_one_copies_in_every_chunking(statistic):
    """The batched resamples (the replicates' sorted draws, taken from the column) are the
    copies the one-by-one path makes by repeating each row by its count, in row order: the
    same replicates bit for bit, for a statistic of the values' order too, with groups of 512
    split over chunks, over calls (2,000 rows: 262 resamples a call) and run by workers."""
    x = np.random.default_rng(8).normal(size=2000)
    one = hpcml.bootstrap(statistic, x, replicates=600, seed=9, workers=2, chunk_size=100)
    for options in ({"workers": 1}, {"workers": 1, "chunk_size": 37}, {"workers": 2, "in_driver": False}):
        batched = hpcml.bootstrap(statistic, x, replicates=600, seed=9, vectorized=True, **options)
        assert np.array_equal(one.replicates.to_numpy(), batched.replicates.to_numpy()), options
        assert (one.estimate, one.se, one.percentile, one.bca) == (batched.estimate, batched.se, batched.percentile,
                                                                   batched.bca), options


def _last_value(x, axis):
    """A view of the batch itself: each resample's last value (that of the last row drawn)."""
    return x[..., -1]


def test_a_statistic_returning_a_view_of_the_batch_keeps_each_groups_values():
    # The batch is one buffer reused by the next group: a statistic that returns a view of it
    # must still give every replicate its own value (read out before the buffer is written again).
    one = hpcml.bootstrap(lambda x: x[-1], X, replicates=1100, seed=9, workers=1)
    batched = hpcml.bootstrap(_last_value, X, replicates=1100, seed=9, workers=1, vectorized=True)
    assert np.array_equal(one.replicates.to_numpy(), batched.replicates.to_numpy())
    assert batched.replicates["value"].nunique() > 1


def _mean_after_an_inner_bootstrap(x, axis):
    """A double bootstrap's outer statistic: a vectorized bootstrap of its own on each of two
    resamples (run in this process, in this thread), then the mean of every resample."""
    for row in np.atleast_2d(x)[:2]:
        hpcml.bootstrap(TRIMMED, row[:60], replicates=40, workers=1, vectorized=True, seed=3)
    return np.mean(x, axis=axis)


def test_a_vectorized_bootstrap_inside_the_statistic_leaves_the_outer_batch_alone():
    plain = hpcml.bootstrap(np.mean, X, replicates=30, seed=4, workers=1, vectorized=True)
    nested = hpcml.bootstrap(_mean_after_an_inner_bootstrap, X, replicates=30, seed=4, workers=1, vectorized=True)
    assert np.array_equal(plain.replicates.to_numpy(), nested.replicates.to_numpy())
