"""OLS against numpy lstsq on explicitly resampled copies, and the ``ols`` adapter."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score

from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.numerics.least_squares import fit_ols, predict

X, Y = load_diabetes(return_X_y=True)
FEATURES = list(load_diabetes().feature_names)


def _ref(A, y):
    return np.linalg.lstsq(np.column_stack([np.ones(len(y)), A]), y, rcond=None)[0]


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_unweighted_equals_lstsq():
    fit = fit_ols(X, Y)
    assert fit.method == "cholesky"
    assert _rel(fit.coef, _ref(X, Y)) < 1e-10
    resid = Y - predict(fit, X)
    assert fit.sigma2 == pytest.approx(resid @ resid / (len(Y) - X.shape[1] - 1), rel=1e-12)


def test_no_intercept_equals_lstsq():
    fit = fit_ols(X, Y, fit_intercept=False)
    assert fit.coef.shape == (X.shape[1],)
    assert _rel(fit.coef, np.linalg.lstsq(X, Y, rcond=None)[0]) < 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bincount_weights_equal_resampled_copy(seed):
    idx = np.random.default_rng(seed).integers(0, len(Y), len(Y))
    w = np.bincount(idx, minlength=len(Y))
    fit = fit_ols(X, Y, w)
    assert _rel(fit.coef, _ref(X[idx], Y[idx])) < 1e-10
    assert fit.n_eff == len(Y)


def test_rank_deficient_aliases_the_later_column_as_r():
    X2 = np.column_stack([X, 2 * X[:, 0]])  # exactly collinear column
    fit = fit_ols(X2, Y)
    assert fit.method == "qr" and fit.rank == X.shape[1] + 1
    # R's lm: the later of the collinear columns is NA, the others are the fit without it.
    assert np.isnan(fit.coef[-1]) and fit.aliased.tolist() == [False] * (X.shape[1] + 1) + [True]
    np.testing.assert_allclose(fit.coef[:-1], fit_ols(X, Y).coef, rtol=1e-10)
    np.testing.assert_allclose(predict(fit, X2), predict(fit_ols(X, Y), X), rtol=1e-9)


def test_constant_column_is_aliased_with_intercept_only():
    Xc = np.column_stack([X[:, :3], np.full(len(Y), 5.0)])
    assert np.isnan(fit_ols(Xc, Y).coef[-1])
    assert np.isfinite(fit_ols(Xc, Y, fit_intercept=False).coef).all()  # it is the intercept then


def test_fewer_rows_than_coefficients_fails():
    with pytest.raises(ValueError, match="1 row with positive weight cannot determine 11 coefficients"):
        fit_ols(X[:1], Y[:1])
    w = np.zeros(len(Y))
    w[:3] = 5  # a bootstrap draw of 3 distinct rows, 15 rows in all
    with pytest.raises(ValueError, match="3 rows with positive weight"):
        fit_ols(X, Y, w)


def test_near_collinear_uses_qr_and_stays_accurate():
    noise = np.random.default_rng(0).standard_normal(len(Y))
    X2 = np.column_stack([X, X[:, 0] + 1e-5 * noise])  # cond(X) ~ 1e4: cond(X'X) ~ 1e8
    fit = fit_ols(X2, Y)
    assert fit.method == "qr" and not fit.aliased.any()  # above R's tolerance: kept
    assert _rel(fit.coef, _ref(X2, Y)) < 1e-10


def test_badly_scaled_columns_stay_accurate():
    Xs = X * np.logspace(-6, 6, X.shape[1])
    assert _rel(fit_ols(Xs, Y).coef[1:] * np.logspace(-6, 6, X.shape[1]), _ref(X, Y)[1:]) < 1e-9


def test_bad_weights_rejected():
    with pytest.raises(ValueError, match="length"):
        fit_ols(X, Y, np.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        fit_ols(X, Y, -np.ones(len(Y)))


def _data():
    return Dataset(X=X, y=Y, features=FEATURES, target="progression")


def test_adapter_outputs_and_score():
    kind, data = get_model("ols"), _data()
    params = kind.Params()
    fitted = kind.fit(params, data, None, FitContext(rng=np.random.default_rng(0)))
    out = kind.outputs(params, fitted, data)
    assert list(out) == ["coef_(Intercept)"] + [f"coef_{f}" for f in FEATURES]
    assert all(type(v) is float for v in out.values())
    mask = np.arange(len(Y)) % 3 == 0
    sc = kind.score(params, fitted, data, mask)
    yhat = predict(fitted, X[mask])
    assert sc["r2"] == pytest.approx(r2_score(Y[mask], yhat), rel=1e-12)
    assert sc["rmse"] == pytest.approx(np.sqrt(sc["mse"]))
    assert kind.primary_metric == "r2" and kind.greater_is_better and kind.needs_target


def test_adapter_params_and_check():
    kind = get_model("ols")
    with pytest.raises(ValidationError):
        kind.Params(intercept=True)  # unknown key
    assert kind.Params(fit_intercept=False).fit_intercept is False
    tiny = Dataset(X=X[:5], y=Y[:5], features=FEATURES, target="progression")
    assert kind.check(kind.Params(), tiny)[0][:2] == ("data", 5)
    assert kind.check(kind.Params(), _data()) == []
    nolabel = Dataset(X=X, y=None, features=FEATURES)
    assert kind.check(kind.Params(), nolabel)[0][0] == "data.target"


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("shuffled", [False, True])
def test_leave_group_out_equals_refitting_each_group(fit_intercept, offset, shuffled):
    """The downdated jackknife (BCa) equals a direct fit without each group, even with large
    offsets, for contiguous groups (the bootstrap's) and for groups scattered over the rows."""
    from hpcml.numerics.least_squares import leave_group_out_coefs

    rng = np.random.default_rng(3)
    X = rng.standard_normal((1003, 4)) + offset
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 7.0 + rng.standard_normal(1003)
    groups = 17
    labels = np.arange(len(y)) * groups // len(y)
    if shuffled:
        labels = rng.permutation(labels)
    got = leave_group_out_coefs(X, y, labels, groups, fit_intercept)
    for g in range(groups):
        ref = fit_ols(X[labels != g], y[labels != g], None, fit_intercept).coef
        np.testing.assert_allclose(got[g], ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("cached", [True, False])
def test_batched_bootstrap_on_compact_counts_is_bit_identical(cached, monkeypatch):
    """A group's counts held as uint8 give exactly the numbers of float64 counts, on both
    routes (cached column products, and products rebuilt block by block)."""
    from hpcml.numerics import batched_ols
    from hpcml.plans.bootstrap import resample_count_rows, resample_counts

    if not cached:
        monkeypatch.setattr(batched_ols, "CACHE_BYTES", 0)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3001, 6))
    y = X @ np.arange(6.0) + rng.standard_normal(3001)
    W = resample_count_rows([np.random.default_rng(i) for i in range(64)], len(y))
    W64 = np.stack([resample_counts(np.random.default_rng(i), len(y)) for i in range(64)])
    assert W.dtype == np.uint8 and np.array_equal(W, W64)
    got = np.stack(batched_ols.ols_coefs_batch(X, y, W))
    batched_ols._CACHE.clear()
    assert np.array_equal(got, np.stack(batched_ols.ols_coefs_batch(X, y, W64)))
    np.testing.assert_allclose(got[7], fit_ols(X, y, W64[7]).coef, rtol=1e-9)


@pytest.mark.parametrize("how", ["grouped", "whole", "chunks"])
def test_compact_counts_widen_when_a_row_is_drawn_often(how, monkeypatch):
    """Counts are drawn for several replicates together, for one at once or in chunks (the
    same draws as one call each); counts above 255 (possible only for tiny data) are kept
    exactly, in a wider type."""
    from types import SimpleNamespace

    from hpcml.plans import bootstrap
    from hpcml.plans.bootstrap import resample_count_rows, resample_counts

    monkeypatch.setattr(bootstrap, "DRAW_CHUNK", 97)
    if how != "grouped":
        monkeypatch.setattr(bootstrap, "SMALL_DRAW", 0)
    if how == "chunks":
        monkeypatch.setattr(bootstrap, "WHOLE_DRAW", 0)
    W = resample_count_rows([np.random.default_rng(i) for i in range(3)], 1000)
    assert W.dtype == np.uint8 and np.array_equal(W[2], resample_counts(np.random.default_rng(2), 1000))
    assert resample_count_rows([np.random.default_rng(0)], 1).tolist() == [[1]]

    class Many:  # a generator whose draws all land on row 0
        bit_generator = SimpleNamespace(state=None)

        def integers(self, low, high, size):
            return np.zeros(size, dtype=np.int64)

    W = resample_count_rows([np.random.default_rng(0), Many()], 300)
    assert W[1, 0] == 300 and W.dtype == np.uint16 and W[0].sum() == 300
    assert np.array_equal(W[0], resample_counts(np.random.default_rng(0), 300))


def test_leave_group_out_with_scattered_groups_and_an_aliased_one():
    """Groups need not be contiguous; a group whose removal leaves a constant column is refitted."""
    from hpcml.numerics.least_squares import leave_group_out_coefs

    rng = np.random.default_rng(4)
    X = rng.standard_normal((600, 3))
    X[:, 2] = 0.0
    labels = rng.permutation(np.arange(600) % 7)
    X[labels == 3, 2] = rng.standard_normal(int(np.sum(labels == 3)))  # only group 3 varies column 2
    y = X @ np.array([1.0, 2.0, 3.0]) + rng.standard_normal(600)
    got = leave_group_out_coefs(X, y, labels, 7)
    for g in range(7):
        ref = fit_ols(X[labels != g], y[labels != g]).coef
        np.testing.assert_allclose(got[g], ref, rtol=1e-8, atol=1e-8, equal_nan=True)
    assert np.isnan(got[3][3]) and not np.isnan(got[2]).any()


def test_wide_designs_fit_each_replicate_on_its_own(monkeypatch):
    """Past MAX_PRODUCTS column products a group is not batched (its blocks would be large):
    every replicate is left to the ordinary fit."""
    from hpcml.numerics import batched_ols

    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((400, 5)), rng.standard_normal(400)
    W = np.ones((3, 400), dtype=np.uint8)
    assert all(c is not None for c in batched_ols.ols_coefs_batch(X, y, W))
    monkeypatch.setattr(batched_ols, "MAX_PRODUCTS", 27)  # p = 5: 28 products per row
    assert batched_ols.ols_coefs_batch(X, y, W) == [None, None, None]
