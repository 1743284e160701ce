"""Aliased columns from the Gram matrix against the QR-style reference (Gram-Schmidt with
reorthogonalisation, R's rule) and against logistic fits without the aliased columns."""
import numpy as np
import pytest

from hpcml.numerics.aliasing import kept_columns_gram
from hpcml.numerics.irls import GLM_ALIAS_TOL, fit_logistic
from hpcml.numerics.least_squares import kept_columns

rng = np.random.default_rng(0)
N = 3000
BASE = rng.standard_normal((N, 5)) * [1.0, 10.0, 0.1, 3.0, 1e3] + [0.0, 5.0, -2.0, 100.0, 0.0]


def _reference(X, w, intercept):
    xm = w @ X / w.sum() if intercept else np.zeros(X.shape[1])
    return kept_columns((X - xm) * np.sqrt(w)[:, None], np.sqrt(w @ (X * X)), GLM_ALIAS_TOL), xm


DESIGNS = {
    "full rank": BASE,
    "copy": np.column_stack([BASE, BASE[:, 1]]),
    "sum in the middle": np.column_stack([BASE[:, :2], BASE[:, 0] - 3 * BASE[:, 1], BASE[:, 2:]]),
    "constant": np.column_stack([np.full(N, 7.5), BASE]),
    "clearly independent (1e-3)": np.column_stack([BASE, BASE[:, 0] + 1e-3 * rng.standard_normal(N)]),
    "one-hot with intercept": np.column_stack([BASE[:, :2], np.eye(3)[rng.integers(0, 3, N)]]),
}


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_gram_decision_equals_the_qr_rule(name, intercept, weighted):
    X = DESIGNS[name]
    w = rng.poisson(1.0, N).astype(float) + 1.0 if weighted else np.ones(N)
    ref, xm = _reference(X, w, intercept)
    got = kept_columns_gram(X, w, xm, GLM_ALIAS_TOL)
    np.testing.assert_array_equal(got, ref)


def test_a_near_miss_is_handed_back_to_the_qr():
    X = np.column_stack([BASE, BASE[:, 0] + 1e-8 * rng.standard_normal(N)])  # kept by R (1e-8 > 1e-11)
    w = np.ones(N)
    assert kept_columns_gram(X, w, X.mean(axis=0), GLM_ALIAS_TOL) is None
    assert _reference(X, w, True)[0].size == 6


def test_logistic_on_aliased_design_is_the_fit_on_the_kept_columns():
    X = BASE[:, :4] / [1.0, 10.0, 0.1, 3.0]
    y = (X @ [1.0, -0.5, 0.25, 0.0] + rng.logistic(size=N) > 0).astype(int)
    both = fit_logistic(np.column_stack([X, X[:, 0] + X[:, 1], X[:, 2]]), y)
    kept = fit_logistic(X, y)
    assert np.isnan(both.coef[5:]).all() and not np.isnan(both.coef[:5]).any()
    np.testing.assert_allclose(both.coef[:5], kept.coef, rtol=1e-10)
    assert both.deviance == pytest.approx(kept.deviance, rel=1e-12)
