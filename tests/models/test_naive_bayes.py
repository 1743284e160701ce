"""The single-node ``naive_bayes`` kind: Spark MLlib's formulas (smoothed priors and
conditional probabilities, written out here), weights as row counts, and its scores."""
from __future__ import annotations

import numpy as np
import pytest

from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.plans import task_rng


def _data(binary: bool = False) -> Dataset:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300).astype(np.float64)
    X = (rng.random((300, 4)) < 0.4).astype(float) if binary else rng.poisson(2.0 + y[:, None], (300, 4)).astype(float)
    return Dataset(X=X, y=y, features=["a", "b", "c", "d"], target="y", classes=["no", "maybe", "yes"])


def _fit(data: Dataset, weights=None, **params):
    kind = get_model("naive_bayes")
    p = kind.Params(**params)
    fitted = kind.fit(p, data, weights, FitContext(rng=task_rng(0, 0)))
    return kind, p, fitted


@pytest.mark.parametrize("model_type", ["multinomial", "bernoulli"])
def test_outputs_are_sparks_formulas(model_type):
    data = _data(binary=model_type == "bernoulli")
    kind, p, fitted = _fit(data, model_type=model_type, smoothing=0.7)
    out = kind.outputs(p, fitted, data)
    for i, c in enumerate(["no", "maybe", "yes"]):
        rows = data.X[data.y == i]
        prior = np.log((len(rows) + 0.7) / (data.n + 3 * 0.7))
        assert out[f"log_prior_{c}"] == pytest.approx(prior, rel=1e-12)
        if model_type == "multinomial":
            theta = np.log((rows.sum(axis=0) + 0.7) / (rows.sum() + 4 * 0.7))
        else:
            theta = np.log((rows.sum(axis=0) + 0.7) / (len(rows) + 2 * 0.7))
        assert [out[f"theta_{c}_{f}"] for f in data.features] == pytest.approx(theta, rel=1e-12)


def test_weights_count_rows_and_scores_are_accuracy_and_log_loss():
    data = _data()
    weights = np.zeros(data.n)
    weights[:200] = 1.0
    kind, p, fitted = _fit(data, weights)
    subset = Dataset(X=data.X[:200], y=data.y[:200], features=data.features, target="y", classes=data.classes)
    _, _, alone = _fit(subset)
    assert kind.outputs(p, fitted, data) == pytest.approx(kind.outputs(p, alone, subset), rel=1e-12)
    test = np.arange(data.n) >= 200
    scores = kind.score(p, fitted, data, test)
    proba = fitted.model.predict_proba(data.X[test])
    truth = data.y[test].astype(int)
    assert scores["accuracy"] == pytest.approx(np.mean(proba.argmax(axis=1) == truth))
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(truth.size), truth])))


def test_gaussian_outputs_means_and_variances():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200).astype(np.float64)
    X = rng.normal(y[:, None] * 2.0, 1.0, (200, 2))
    data = Dataset(X=X, y=y, features=["u", "v"], target="y")
    kind, p, fitted = _fit(data, model_type="gaussian")
    out = kind.outputs(p, fitted, data)
    assert out["log_prior_0"] == pytest.approx(np.log(np.mean(y == 0)), rel=1e-12)
    assert out["theta_1_u"] == pytest.approx(X[y == 1, 0].mean(), rel=1e-12)
    assert out["var_1_v"] == pytest.approx(X[y == 1, 1].var() + 1e-9 * X.var(axis=0).max(), rel=1e-12)


def test_check_refuses_negative_counts():
    data = _data()
    data.X[0, 0] = -1.0
    kind = get_model("naive_bayes")
    assert kind.check(kind.Params(), data)[0][0] == "model.model_type"
