"""A model kind defined outside the package: registered with ``hpcml.register_model`` and run
end to end under bootstrap on worker processes, its replicates, reference fit and standard
error equal an independent NumPy computation of the same resamples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcml
from hpcml.models.base import MODEL_KINDS, ModelKind, ModelParams

N, REPLICATES, SEED = 57, 30, 4


def weighted_median(x: np.ndarray, weights: np.ndarray | None) -> float:
    """The median of ``x`` with each value repeated ``weights`` times (integer weights)."""
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    xs, cw = x[order], np.cumsum(w[order])
    total = int(round(cw[-1]))
    lo, hi = (total - 1) // 2, total // 2  # positions of the middle value(s), 0-based
    return float((xs[np.searchsorted(cw, lo, side="right")] + xs[np.searchsorted(cw, hi, side="right")]) / 2)


class WeightedMedian(ModelKind):
    name = "weighted_median"
    Params = ModelParams
    needs_target = False
    primary_metric = "median"

    def fit(self, params, data, weights, ctx):
        return weighted_median(np.asarray(data.X[:, 0], dtype=np.float64), weights)

    def outputs(self, params, fitted, data):
        return {"median": fitted}

    def score(self, params, fitted, data, mask):
        return {}


@pytest.fixture
def toy_kind():
    assert hpcml.register_model(WeightedMedian) is WeightedMedian
    yield WeightedMedian
    MODEL_KINDS.pop(WeightedMedian.name)


def test_a_registered_kind_runs_under_bootstrap(tmp_path, toy_kind):
    x = np.random.default_rng(1).lognormal(size=N)
    pd.DataFrame({"x": x}).to_parquet(tmp_path / "x.parquet")
    spec = {"name": "toy-kind", "seed": SEED, "data": {"source": str(tmp_path / "x.parquet")},
            "model": {"kind": "weighted_median", "features": ["x"]},
            "plan": {"bootstrap": {"replicates": REPLICATES, "bca": False}},
            # forked workers inherit the kind registered here; several chunks, in the pool
            "backend": {"name": "local", "workers": 2, "chunk_size": 4, "start_method": "fork",
                        "reuse_workers": False, "in_driver": False},
            "output": str(tmp_path / "run")}
    result = hpcml.run(spec, progress=False, plots=False)
    assert result.ok and result.n_tasks == REPLICATES

    # Replicate i: n draws with replacement from SeedSequence(seed, spawn_key=(i,)), as documented.
    expected = []
    for i in range(REPLICATES):
        rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(i,)))
        expected.append(np.median(x[rng.integers(0, N, N)]))
    records = result.results.sort_values("task_index")
    np.testing.assert_array_equal(records["median"].to_numpy(), np.array(expected))

    (row,) = result.summary["table"]
    assert row["output"] == "median"
    assert row["estimate"] == np.median(x)  # the fit on all rows
    assert row["se"] == pytest.approx(np.std(expected, ddof=1), rel=1e-12)
    assert row["pct_low"] == pytest.approx(np.quantile(expected, 0.025), rel=1e-12)
