"""Logistic IRLS against scikit-learn's unpenalised Newton solver, and the ``logistic`` adapter."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.numerics.irls import fit_logistic, predict_proba

_bc = load_breast_cancer()
X = _bc.data[:, :10]
X = (X - X.mean(0)) / X.std(0)  # the 10 "mean" features: not separable, MLE exists
Y = _bc.target
FEATURES = [f.replace(" ", "_") for f in _bc.feature_names[:10]]


def _sk(X, y, w=None, fit_intercept=True):
    m = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000, fit_intercept=fit_intercept)
    m.fit(X, y, sample_weight=w)
    return np.r_[m.intercept_, m.coef_.ravel()] if fit_intercept else m.coef_.ravel()


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_equals_sklearn_unpenalised():
    fit = fit_logistic(X, Y)
    assert _rel(fit.coef, _sk(X, Y)) < 1e-7
    assert fit.classes == [0, 1]


def test_no_intercept_equals_sklearn():
    fit = fit_logistic(X[:, :4], Y, fit_intercept=False)
    assert _rel(fit.coef, _sk(X[:, :4], Y, fit_intercept=False)) < 1e-7


def test_bincount_weights_equal_resampled_copy():
    idx = np.random.default_rng(3).integers(0, len(Y), len(Y))
    w = np.bincount(idx, minlength=len(Y))
    fit = fit_logistic(X, Y, w)
    assert _rel(fit.coef, fit_logistic(X[idx], Y[idx]).coef) < 1e-9
    assert _rel(fit.coef, _sk(X[idx], Y[idx])) < 1e-7


def test_string_labels_map_to_sorted_classes():
    y = np.where(Y == 1, "malignant?", "b")
    fit = fit_logistic(X[:, :3], y)
    assert fit.classes == ["b", "malignant?"]
    np.testing.assert_allclose(fit.coef, fit_logistic(X[:, :3], Y).coef, rtol=1e-12)


@pytest.mark.parametrize(
    "x, y",
    [([1, 2, 3, 4], [0, 0, 1, 1]), ([1, 2, 3, 3, 4, 5], [0, 0, 0, 1, 1, 1])],
    ids=["complete", "quasi"],
)
def test_separation_is_a_warning_not_a_failure(x, y):
    fit = fit_logistic(np.array(x, float), y)
    assert fit.warning is not None and "separation" in fit.warning
    assert np.isfinite(fit.coef).all() and abs(fit.coef[1]) > 5  # where the fit stopped, as R's glm
    kind = get_model("logistic")
    data = Dataset(X=np.array(x, float)[:, None], y=np.array(y, float), features=["x"], target="y")
    out = kind.outputs(kind.Params(), kind.fit(kind.Params(), data, None, FitContext(rng=np.random.default_rng(0))), data)
    assert out["warning"] == fit.warning


def test_aliased_and_too_few_rows():
    Xa = np.column_stack([X[:, :3], X[:, 0] - X[:, 1], np.ones(len(Y))])
    fit = fit_logistic(Xa, Y)
    assert fit.aliased.tolist() == [False, False, False, False, True, True]
    np.testing.assert_allclose(fit.coef[:4], fit_logistic(X[:, :3], Y).coef, rtol=1e-9)
    assert fit.warning is None
    with pytest.raises(ValueError, match="2 rows with positive weight cannot determine 4 coefficients"):
        fit_logistic(X[:2, :3], [0, 1])


def test_nonconvergence_and_bad_target_raise():
    with pytest.raises(ValueError, match="did not converge"):
        fit_logistic(X, Y, max_iter=2)
    with pytest.raises(ValueError, match="found 3"):
        fit_logistic(X[:150], load_iris().target)


def _data():
    return Dataset(X=X, y=Y, features=FEATURES, target="malignant")


def test_adapter_outputs_and_score():
    kind, data = get_model("logistic"), _data()
    params = kind.Params()
    assert (params.max_iter, params.tol) == (100, 1e-10)
    fitted = kind.fit(params, data, None, FitContext(rng=np.random.default_rng(0)))
    out = kind.outputs(params, fitted, data)
    assert list(out) == ["coef_(Intercept)"] + [f"coef_{f}" for f in FEATURES]
    mask = np.arange(len(Y)) % 2 == 1
    sc = kind.score(params, fitted, data, mask)
    p = predict_proba(fitted, X[mask])
    assert sc["accuracy"] == pytest.approx(np.mean((p >= 0.5) == Y[mask]))
    assert sc["log_loss"] == pytest.approx(log_loss(Y[mask], p), rel=1e-9)
    assert sc["auc"] == pytest.approx(roc_auc_score(Y[mask], p), rel=1e-12)
    assert kind.task_type == "classification" and kind.primary_metric == "accuracy"


def test_adapter_params_and_check():
    kind = get_model("logistic")
    for bad in ({"max_iter": 0}, {"tol": 0.0}, {"solver": "lbfgs"}):
        with pytest.raises(ValidationError):
            kind.Params(**bad)
    iris = load_iris()
    data = Dataset(X=iris.data, y=iris.target, features=list(iris.feature_names), target="species")
    assert kind.check(kind.Params(), data) == [("data.target", "species", "logistic needs 2 classes, found 3")]
    assert kind.check(kind.Params(), _data()) == []


def _logit_data(n=3000, p=5, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + offset
    eta = (X - offset) @ np.linspace(-0.8, 0.8, p) - 0.4
    return X, (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)


def _count_rows(n, G=64, seed=0):
    from hpcml.plans.bootstrap import resample_count_rows

    return resample_count_rows([np.random.default_rng(seed + i) for i in range(G)], n)


@pytest.mark.parametrize("fit_intercept,offset", [(True, 0.0), (False, 0.0), (True, 300.0)])
def test_batched_replicates_equal_irls_on_their_counts(fit_intercept, offset):
    """A group of 64 replicates fitted together (Newton from the full fit) equals IRLS on each
    replicate's counts, also for a column whose mean is 300 times its spread; counts held as
    uint8 give the bits of float64 counts."""
    from hpcml.numerics.batched_logistic import logistic_coefs_batch

    X, y = _logit_data(offset=offset)
    W = _count_rows(len(y))
    got = logistic_coefs_batch(X, y, W, fit_intercept)
    assert all(c is not None for c in got)
    for g in (0, 17, 63):
        ref = fit_logistic(X, y, W[g].astype(float), fit_intercept, tol=1e-14).coef
        np.testing.assert_allclose(got[g], ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    assert np.array_equal(np.stack(got), np.stack(logistic_coefs_batch(X, y, W.astype(np.float64), fit_intercept)))


def test_a_batched_replicate_does_not_depend_on_the_rest_of_its_group():
    """Members not wanted (rows of zero counts) and members that leave early change no other
    member's numbers, bit for bit: a chunk holding part of a group gets the group's numbers."""
    from hpcml.numerics.batched_logistic import logistic_coefs_batch

    X, y = _logit_data(seed=1)
    W = _count_rows(len(y), seed=100)
    whole = logistic_coefs_batch(X, y, W)
    part = W.copy()
    part[1:40] = 0
    part[45] = 0
    part[45, :4] = 1  # 4 rows: cannot determine 6 coefficients, left to IRLS
    got = logistic_coefs_batch(X, y, part)
    assert all(got[g] is None for g in [*range(1, 40), 45])
    for g in [0, *range(40, 45), *range(46, 64)]:
        assert np.array_equal(got[g], whole[g])


def test_replicates_that_are_not_clearly_well_posed_are_left_to_irls():
    """A column that is non-zero in three rows only: replicates that miss them have an aliased
    column, those that draw them are close to separation. Neither is batched; every batched
    one equals IRLS. Data whose full fit is nearly separated (breast cancer) are not batched."""
    from hpcml.numerics.batched_logistic import logistic_coefs_batch

    Xr, yr = _logit_data(n=400, p=3, seed=2)
    Xr[:, 2] = 0.0
    Xr[:3, 2] = [1.0, -2.0, 0.5]
    W = _count_rows(len(yr), seed=7)
    got = logistic_coefs_batch(Xr, yr, W)
    missed = [g for g in range(64) if not W[g, :3].any()]
    assert missed and all(got[g] is None for g in missed)
    assert np.isnan(fit_logistic(Xr, yr, W[missed[0]].astype(float)).coef[3])  # R's NA
    for g, c in enumerate(got):
        if c is not None:
            np.testing.assert_allclose(c, fit_logistic(Xr, yr, W[g].astype(float), tol=1e-14).coef, rtol=1e-8)
    # breast cancer: the full fit's linear predictor reaches 55 (probabilities within 1e-23 of 0 or 1)
    assert logistic_coefs_batch(X, Y, _count_rows(len(Y), G=3)) == [None, None, None]


def test_the_logistic_kind_fits_bootstrap_replicates_in_groups():
    from hpcml.models.base import Dataset

    kind = get_model("logistic")
    Xs, ys = _logit_data(n=500, p=3, seed=3)
    data = Dataset(X=Xs, y=ys, features=["a", "b", "c"])
    params = kind.Params()
    assert kind.batch_size(params) == 64
    W = _count_rows(500, G=4)
    outs = kind.outputs_batch(params, data, W)
    for w, out in zip(W, outs):
        ref = kind.outputs(params, kind.fit(params, data, w.astype(float), FitContext(rng=np.random.default_rng(0))), data)
        assert out.keys() == ref.keys()
        np.testing.assert_allclose([out[k] for k in ref], [ref[k] for k in ref], rtol=1e-9)


def test_a_column_of_zeros_is_aliased_as_in_r():
    """R's glm gives NA for a column that is all zeros (among the rows with weight), with or
    without an intercept; the other coefficients are the fit without it."""
    Xz = np.column_stack([X[:, :2], np.zeros(len(Y))])
    for fit_intercept in (True, False):
        fit = fit_logistic(Xz, Y, fit_intercept=fit_intercept)
        assert np.isnan(fit.coef[-1])
        np.testing.assert_allclose(fit.coef[:-1], fit_logistic(X[:, :2], Y, fit_intercept=fit_intercept).coef, rtol=1e-12)
    w = np.ones(len(Y))
    Xz[:3, 2], w[:3] = 1.0, 0.0
    assert np.isnan(fit_logistic(Xz, Y, w).coef[-1])


def test_columns_with_a_large_mean_are_no_sign_of_separation():
    """Columns whose mean is 300 times their spread make the uncentred Hessian too
    ill-conditioned for Cholesky; the fit (by QR) is still plain and carries no warning."""
    Xs, ys = _logit_data(offset=300.0)
    fit = fit_logistic(Xs, ys)
    assert fit.warning is None
    np.testing.assert_allclose(fit.coef[1:], fit_logistic(Xs - 300.0, ys).coef[1:], rtol=1e-9)


def test_the_jackknife_for_bca_equals_leave_group_out_refits():
    """BCa's leave-group-out fits come from the batched path (IRLS where it declines)."""
    from hpcml.models.base import Dataset

    kind = get_model("logistic")
    Xs, ys = _logit_data(n=700, p=3, seed=4)
    data = Dataset(X=Xs, y=ys, features=["a", "b", "c"])
    params = kind.Params()
    labels = np.arange(700) * 70 // 700
    got = kind.jackknife(params, data, labels, 70)
    assert len(got) == 70
    for g in (0, 33, 69):
        ref = kind.outputs(params, kind.fit(params, data, (labels != g).astype(float), FitContext(rng=np.random.default_rng(0))), data)
        np.testing.assert_allclose([got[g][k] for k in ref], [ref[k] for k in ref], rtol=1e-9)
