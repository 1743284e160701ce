"""A function that changes its input in place never changes another task's or call's numbers:
the whole data set, cached per process, is handed over read-only; a resampled copy is the
task's own. And ``hpcml.bootstrap`` gives NaN, with its notes, where the summary has no number."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hpcml

X = np.random.default_rng(5).lognormal(size=300)


def _doubling(a, axis=-1):
    a *= 2.0
    return np.mean(a, axis=axis)


def _sorting_median(a):
    a.sort()
    return a[len(a) // 2]


def _frame_changing(df, weights):
    df.iloc[0, 0] = 1e9  # in place, on the whole data (a weights statistic gets it whole)
    return float(np.average(df["x"], weights=weights))


def _frame_adding(df, weights):
    df["twice"] = df["x"] * 2  # a column of its own DataFrame
    return float(np.average(df["twice"], weights=weights))


@pytest.mark.parametrize("vectorized,changing", [(True, _doubling), (False, _sorting_median)],
                         ids=["vectorized", "one-by-one"])
def test_a_statistic_changing_its_input_in_place_changes_no_later_call(vectorized, changing):
    before = hpcml.bootstrap(np.mean, X, replicates=200, vectorized=vectorized)
    with pytest.warns(RuntimeWarning, match="read-only"):
        changed = hpcml.bootstrap(changing, X, replicates=200, vectorized=vectorized)
    assert np.isnan(changed.estimate) and np.isnan(changed.bca[0]) and "read-only" in changed.notes[0]
    assert np.isfinite(changed.se)  # its replicates, each on a copy of its own, stand
    after = hpcml.bootstrap(np.mean, X, replicates=200, vectorized=vectorized)
    assert np.array_equal(before.replicates.to_numpy(), after.replicates.to_numpy())
    assert (before.estimate, before.se, before.bca) == (after.estimate, after.se, after.bca)
    assert before.estimate == pytest.approx(X.mean(), rel=1e-12)


def test_the_whole_data_frame_cannot_be_changed_in_place_but_a_new_column_is_its_own():
    frame = pd.DataFrame({"x": X})
    reference = hpcml.bootstrap(_frame_adding, frame, replicates=50, workers=1, resample="weights")
    again = hpcml.bootstrap(_frame_adding, frame, replicates=50, workers=1, resample="weights")
    assert np.array_equal(reference.replicates.to_numpy(), again.replicates.to_numpy())
    with pytest.raises(hpcml.RunFailed, match="read-only"):
        hpcml.bootstrap(_frame_changing, frame, replicates=20, workers=1, resample="weights")
    assert hpcml.bootstrap(_frame_adding, frame, replicates=50, workers=1, resample="weights").se == reference.se


def test_missing_summary_numbers_are_nan_not_a_crash():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own, of one replicate's SE
        one = hpcml.bootstrap(np.mean, X, replicates=1)
    assert np.isnan(one.se) and np.isfinite(one.estimate)
    # the estimate lies outside every replicate: no BCa interval
    outside = hpcml.bootstrap(lambda a: len(np.unique(a)), np.arange(50.0), replicates=100)
    assert outside.estimate == 50.0 and np.isnan(outside.bca[0]) and np.isnan(outside.bca[1])


@pytest.mark.parametrize("level", ["0.9", True, None, 1.5, float("nan")])
def test_a_level_that_is_not_a_number_in_0_1_is_one_line(level):
    with pytest.raises(hpcml.SpecError, match=r"^level: must be a number between 0 and 1"):
        hpcml.bootstrap(np.mean, X, replicates=10, level=level)
