"""OLS against numpy lstsq on explicitly resampled copies, and the ``ols`` adapter."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score

from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.models.linear import fit_ols, predict

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
    from hpcml.models.linear import leave_group_out_coefs

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
