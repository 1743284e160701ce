"""Logistic IRLS against scikit-learn's unpenalised Newton solver, and the ``logistic`` adapter."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.models.glm import fit_logistic, predict_proba

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
