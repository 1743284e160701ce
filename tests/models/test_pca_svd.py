"""SVD and PCA against numpy.linalg.svd and scikit-learn's PCA, and the ``svd``/``pca`` adapters."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_diabetes
from sklearn.decomposition import PCA

from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.models.pca_svd import pca, svd

X = load_diabetes().data  # 442 x 10
FEATURES = list(load_diabetes().feature_names)
_rng = np.random.default_rng(0)
LOWRANK = _rng.standard_normal((400, 6)) @ _rng.standard_normal((6, 60)) + 1e-8 * _rng.standard_normal((400, 60))


def _abs_close(a, b, tol):
    np.testing.assert_allclose(np.abs(a), np.abs(b), atol=tol)


@pytest.mark.parametrize("method, block_rows", [("full", None), ("tsqr", None), ("tsqr", 25)])
@pytest.mark.parametrize("A", [X, X.T[:, :200]], ids=["tall", "wide"])
def test_exact_methods_equal_numpy(method, block_rows, A):
    U0, s0, Vt0 = np.linalg.svd(A, full_matrices=False)
    r = svd(A, method=method, block_rows=block_rows)
    np.testing.assert_allclose(r.s, s0, rtol=1e-10)
    _abs_close(r.Vt, Vt0, 1e-9)
    _abs_close(r.U, U0, 1e-9)
    np.testing.assert_allclose(r.U * r.s @ r.Vt, A, atol=1e-12)
    np.testing.assert_allclose(r.U.T @ r.U, np.eye(len(s0)), atol=1e-12)


def test_sign_convention_and_truncation():
    r = svd(X, k=3, method="tsqr")
    assert r.Vt.shape == (3, 10) and r.U.shape == (442, 3)
    big = r.Vt[np.arange(3), np.abs(r.Vt).argmax(1)]
    assert np.all(big > 0)
    np.testing.assert_allclose(r.Vt, svd(X, k=3).Vt, atol=1e-10)  # same signs as "full"


def test_randomized_power_iterations_recover_decaying_spectrum():
    r = np.random.default_rng(3)
    A = (r.standard_normal((300, 30)) * 0.7 ** np.arange(30)) @ r.standard_normal((30, 80))
    ref = svd(A, k=5)
    got = svd(A, k=5, method="randomized", rng=np.random.default_rng(1), n_oversamples=5, n_iter=4)
    np.testing.assert_allclose(got.s, ref.s, rtol=1e-10)


def test_randomized_close_on_low_rank_and_deterministic():
    ref = svd(LOWRANK, k=6)
    a = svd(LOWRANK, k=6, method="randomized", rng=np.random.default_rng(4))
    b = svd(LOWRANK, k=6, method="randomized", rng=np.random.default_rng(4))
    np.testing.assert_allclose(a.s, ref.s, rtol=1e-10)
    np.testing.assert_allclose(a.Vt, ref.Vt, atol=1e-8)
    assert np.array_equal(a.Vt, b.Vt) and np.array_equal(a.s, b.s)
    with pytest.raises(ValueError, match="rng"):
        svd(LOWRANK, k=6, method="randomized")


@pytest.mark.parametrize("method", ["full", "tsqr", "randomized"])
def test_pca_matches_sklearn(method):
    rng = np.random.default_rng(1)
    sk = PCA(0.9, svd_solver="full").fit(X)
    ours = pca(X, variance=0.9, method=method, rng=rng)
    assert ours.n_components == sk.n_components_ == 7
    np.testing.assert_allclose(ours.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance, sk.explained_variance_, rtol=1e-9)
    _abs_close(ours.components, sk.components_, 1e-8)
    np.testing.assert_allclose(ours.mean, sk.mean_, atol=1e-15)


def test_pca_weights_equal_resampled_copy():
    idx = np.random.default_rng(8).integers(0, len(X), len(X))
    w = np.bincount(idx, minlength=len(X))
    ours = pca(X, n_components=4, weights=w)
    sk = PCA(4, svd_solver="full").fit(X[idx])
    np.testing.assert_allclose(ours.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(ours.singular_values, sk.singular_values_, rtol=1e-10)
    _abs_close(ours.components, sk.components_, 1e-9)


def _data():
    return Dataset(X=X, y=None, features=FEATURES)


def test_pca_params():
    P = get_model("pca").Params
    # Neither n_components nor variance: every component, as prcomp.
    assert P().variance is None and P().n_components is None and P().method == "full" and P().scale is False
    assert P(n_components=3).variance is None
    for bad in ({"n_components": 2, "variance": 0.8}, {"variance": 1.5}, {"n_components": 0}, {"method": "arpack"}):
        with pytest.raises(ValidationError):
            P(**bad)


def test_pca_adapter():
    kind, data = get_model("pca"), _data()
    params = kind.Params(variance=0.8)
    fitted = kind.fit(params, data, None, FitContext(rng=np.random.default_rng(0)))
    out = kind.outputs(params, fitted, data)
    k = int(out["n_components"])
    assert k == PCA(0.8, svd_solver="full").fit(X).n_components_
    # Every component's variance (the scree, k for 80/90/95 %), n_components of them kept.
    assert set(out) == {"n_components"} | {f"{s}_{j}" for s in ("evr", "cum_evr", "sv") for j in range(1, 11)}
    assert out["cum_evr_10"] == pytest.approx(1.0)
    assert out[f"cum_evr_{k}"] >= 0.8 > out[f"cum_evr_{k - 1}"]
    mask = np.arange(len(X)) % 4 == 0
    Xc = X[mask] - fitted.mean
    expect = np.mean((Xc - Xc @ fitted.components.T @ fitted.components) ** 2)
    assert kind.score(params, fitted, data, mask)["reconstruction_mse"] == pytest.approx(expect, rel=1e-12)
    assert kind.check(kind.Params(n_components=11), data) == [
        ("model.n_components", 11, "n_components=11 exceeds min(n, p) = 10")
    ]
    assert not kind.greater_is_better and kind.primary_metric == "reconstruction_mse" and not kind.needs_target


def test_svd_adapter_weights_and_determinism():
    kind, data = get_model("svd"), _data()
    params = kind.Params(k=3, method="randomized")
    idx = np.random.default_rng(2).integers(0, len(X), len(X))
    w = np.bincount(idx, minlength=len(X))
    outs = [kind.outputs(params, kind.fit(params, data, w, FitContext(rng=np.random.default_rng(7))), data) for _ in range(2)]
    assert outs[0] == outs[1] and list(outs[0]) == ["sv_1", "sv_2", "sv_3"]
    exact = np.linalg.svd(X[idx], compute_uv=False)[:3]
    np.testing.assert_allclose([outs[0][f"sv_{j}"] for j in (1, 2, 3)], exact, rtol=1e-6)
    full = kind.fit(kind.Params(), data, None, FitContext(rng=np.random.default_rng(0)))
    assert kind.score(kind.Params(), full, data, None)["reconstruction_mse"] < 1e-28
    assert kind.check(kind.Params(k=20), data)[0][:2] == ("model.k", 20)
