"""k-means against scikit-learn's inertia, weights vs resampled copies, and the ``kmeans`` adapter."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, make_blobs

import hpcml.models.kmeans as cl
from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.models.kmeans import assign, kmeans

IRIS = load_iris()
BLOBS, _ = make_blobs(500, centers=4, n_features=3, cluster_std=2.5, random_state=7)


@pytest.mark.parametrize("name, X, k", [("iris", IRIS.data, 2), ("iris", IRIS.data, 3), ("blobs", BLOBS, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_inertia_no_worse_than_sklearn(name, X, k, seed):
    ours = kmeans(X, k, np.random.default_rng(seed), n_init=10)
    ref = KMeans(k, n_init=10, random_state=seed).fit(X).inertia_
    assert ours.inertia <= ref * (1 + 1e-6)
    assert ours.converged


def test_weights_equal_resampled_copy():
    X = IRIS.data
    idx = np.random.default_rng(11).integers(0, len(X), len(X))
    w = np.bincount(idx, minlength=len(X))
    fit = kmeans(X, 3, np.random.default_rng(0), w)
    # The weighted inertia is the inertia of the resampled copy for the same centers ...
    _, d2 = assign(X[idx], fit.centers)
    assert fit.inertia == pytest.approx(d2.sum(), rel=1e-12)
    # ... and is as good as scikit-learn on that copy.
    assert fit.inertia <= KMeans(3, n_init=10, random_state=0).fit(X[idx]).inertia_ * (1 + 1e-6)


def test_centers_canonical_and_labels_nearest():
    fit = kmeans(BLOBS, 4, np.random.default_rng(2))
    c = fit.centers
    assert [tuple(r) for r in c] == sorted(tuple(r) for r in c)
    d = ((BLOBS[:, None, :] - c[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(fit.labels, d.argmin(1))
    assert fit.inertia == pytest.approx(d.min(1).sum(), rel=1e-12)


def test_chunking_does_not_change_result(monkeypatch):
    full = kmeans(BLOBS, 4, np.random.default_rng(5))
    monkeypatch.setattr(cl, "_CACHE_FLOATS", 40)  # 10 rows per block
    chunked = kmeans(BLOBS, 4, np.random.default_rng(5))
    np.testing.assert_array_equal(full.centers, chunked.centers)
    assert full.inertia == chunked.inertia


def test_few_distinct_points_and_too_large_k():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]), 4, axis=0)
    fit = kmeans(X, 3, np.random.default_rng(0))
    np.testing.assert_allclose(fit.centers, [[0, 0], [1, 0], [5, 5]])
    assert fit.inertia == 0.0
    with pytest.raises(ValueError, match="exceeds"):
        kmeans(X, 3, np.random.default_rng(0), weights=np.r_[np.ones(2), np.zeros(10)])


def _data():
    return Dataset(X=IRIS.data, y=None, features=["sl", "sw", "pl", "pw"])


def _run(seed, params=None):
    kind, data = get_model("kmeans"), _data()
    params = params or kind.Params()
    w = np.bincount(np.random.default_rng(99).integers(0, data.n, data.n), minlength=data.n)
    fitted = kind.fit(params, data, w, FitContext(rng=np.random.default_rng(seed)))
    return kind, params, fitted, kind.outputs(params, fitted, data)


def test_adapter_deterministic_and_keys():
    kind, params, fitted, out = _run(42)
    _, _, _, again = _run(42)
    assert out == again  # bit-identical for the same seed
    assert list(out)[:2] == ["inertia", "n_iter"]
    assert [k for k in out if k.startswith("center_1_")] == ["center_1_sl", "center_1_sw", "center_1_pl", "center_1_pw"]
    assert len(out) == 2 + 3 * 4 + 3  # and size_1..size_3
    assert not kind.needs_target and kind.primary_metric == "inertia" and not kind.greater_is_better


def test_adapter_score_on_mask():
    kind, params, fitted, _ = _run(1)
    mask = np.arange(150) < 50
    sc = kind.score(params, fitted, _data(), mask)
    d = ((IRIS.data[mask, None, :] - fitted.centers[None]) ** 2).sum(-1).min(1)
    assert sc["inertia"] == pytest.approx(d.sum(), rel=1e-12)
    assert sc["mean_sq_dist"] == pytest.approx(d.mean(), rel=1e-12)


def test_adapter_params_and_check():
    kind = get_model("kmeans")
    p = kind.Params()
    assert (p.k, p.n_init, p.max_iter, p.tol) == (3, 10, 300, 0.0)  # tol 0: until no row moves, as R
    for bad in ({"k": 0}, {"n_init": 0}, {"tol": -1.0}, {"init": "random"}):
        with pytest.raises(ValidationError):
            kind.Params(**bad)
    assert kind.check(kind.Params(k=500), _data()) == [("model.k", 500, "k=500 exceeds the number of rows (150)")]
    assert kind.check(kind.Params(k=150), _data()) == []


@pytest.mark.parametrize("tol", [0.0, 1e-1])
def test_centres_are_the_means_of_their_clusters(tol):
    """R's kmeans reports the cluster means; an early stop by tol must too (one more mean step)."""
    from hpcml.models.kmeans import kmeans

    X = np.random.default_rng(5).normal(size=(400, 3)) + np.repeat(np.eye(3) * 2.5, [150, 150, 100], axis=0)
    fit = kmeans(X, 3, np.random.default_rng(0), tol=tol)
    for j in range(3):
        np.testing.assert_allclose(fit.centers[j], X[fit.labels == j].mean(axis=0), rtol=1e-12)
    assert fit.sizes.tolist() == np.bincount(fit.labels, minlength=3).tolist()


def test_given_init_is_sklearn_lloyd_from_the_same_centres():
    from sklearn.cluster import KMeans

    X = np.vstack([BLOBS, BLOBS[::3] * 1.5 + 2.0])
    init = X[[0, 7, 40, 90]]
    ours = kmeans(X, 4, None, init=init)  # one run, no generator needed
    sk = KMeans(4, init=init, n_init=1, tol=0.0, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.centers, sk.cluster_centers_[np.lexsort(sk.cluster_centers_.T[::-1])],
                               rtol=1e-12, atol=1e-12)
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-12)
    with pytest.raises(ValueError, match=r"init has shape \(2, 2\), expected \(4, 3\)"):
        kmeans(X, 4, None, init=init[:2, :2])


def test_iterations_and_max_iter_as_the_numpy_loop():
    """tol 0 runs scikit-learn's passes; iterations count mean updates, as hpcml's own loop."""
    from sklearn.cluster import KMeans

    X = np.vstack([BLOBS, BLOBS[::3] * 1.5 + 2.0])
    init, w = X[[0, 7, 40, 90]], np.ones(len(X))
    full = kmeans(X, 4, None, init=init)
    assert full.converged and full.n_iter >= 3
    assert full.n_iter == KMeans(4, init=init, n_init=1, tol=0.0, algorithm="lloyd").fit(X).n_iter_ - 1
    for max_iter in (full.n_iter - 1, full.n_iter, full.n_iter + 1):
        ours = kmeans(X, 4, None, init=init, max_iter=max_iter)
        centers, fixed, n_iter, conv = cl._lloyd(X, w, init.copy(), max_iter, 0.0)
        assert (ours.n_iter, ours.converged) == (n_iter, conv)
        if fixed is None:  # stopped by max_iter: one more mean step, as kmeans() takes
            sums, mass = cl._weighted_means(X, w, cl.labels_of(X, centers), 4)
            centers = sums / mass[:, None]
        np.testing.assert_allclose(ours.centers, centers[np.lexsort(centers.T[::-1])], rtol=1e-12)


def test_worker_thread_limits_see_sklearn_openmp():
    """Loading the kind brings scikit-learn's OpenMP pool in, so threads_per_task limits it too."""
    import subprocess
    import sys

    code = ("import hpcml.models.kmeans; from threadpoolctl import threadpool_info; "
            "print(sorted({p['internal_api'] for p in threadpool_info()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "openmp" in out


def test_calinski_harabasz_of_scored_rows_equals_sklearn():
    from sklearn.metrics import calinski_harabasz_score

    kind, params, fitted, _ = _run(1)
    mask = np.arange(150) % 3 == 0
    sc = kind.score(params, fitted, _data(), mask)
    labels = assign(IRIS.data[mask], fitted.centers)[0]
    assert sc["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(IRIS.data[mask], labels), rel=1e-10)
    one = cl.calinski_harabasz(IRIS.data, None, np.zeros(150, dtype=np.int64), 3)
    assert np.isnan(one)  # one cluster among the rows: no index


def test_a_sweep_over_k_does_not_rank_the_largest_k_first(tmp_path):
    """Four well separated blobs, k from 2 to 7: the sweep ranks by the held-out
    Calinski-Harabasz index and picks 4, where held-out inertia picks a larger k."""
    import pandas as pd
    from sklearn.datasets import make_blobs

    import hpcml

    X, _ = make_blobs(n_samples=400, centers=4, cluster_std=0.6, random_state=1)
    pd.DataFrame(X, columns=["a", "b"]).to_csv(tmp_path / "blobs.csv", index=False)
    res = hpcml.run({"name": "blobs", "seed": 2, "data": {"source": str(tmp_path / "blobs.csv")},
                     "model": {"kind": "kmeans", "features": ["a", "b"], "n_init": 3},
                     "plan": {"sweep": {"grid": {"k": [2, 3, 4, 5, 6, 7]}}},
                     "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run")}, progress=False)
    assert res.summary["metric"] == "test_calinski_harabasz" and res.summary["greater_is_better"]
    assert res.summary["best"]["k"] == 4
    by_inertia = res.results.sort_values("test_inertia")
    assert int(by_inertia["param_k"].iloc[0]) > 4  # ranking by held-out inertia picks a larger k
