"""The Gram route of SVD and PCA against NumPy's SVD, and its fallback on ill-conditioned data.

Stated tolerance: singular values and explained variances within 1e-10 relative of NumPy's
SVD, components within 1e-8 (up to sign), wherever the route is taken; where the predicted
error would exceed that, the accurate route must run instead.
"""
import numpy as np
import pytest

from hpcml.models.pca_svd import pca, svd
from hpcml.numerics.gram import GRAM_RTOL, gram, gram_ok

EPS = np.finfo(float).eps


def _matrix(n, p, cond, seed=0, offset=0.0):
    """n x p with singular values log-spaced from 1e3 down to 1e3 / cond (after centring)."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, p)))[0]
    U -= U.mean(axis=0)  # centred columns: the centred matrix keeps the spectrum below
    U = np.linalg.qr(U)[0]
    V = np.linalg.qr(rng.standard_normal((p, p)))[0]
    return (U * np.logspace(3, 3 - np.log10(cond), p)) @ V.T + offset


def _numpy_pca(X):
    Xc = X - X.mean(axis=0)
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    return s, Vt, s**2 / (X.shape[0] - 1), s**2 / np.sum(s**2)


def _same_axes(a, b, tol):
    np.testing.assert_allclose(np.abs(np.sum(a * b, axis=1)), 1.0, atol=tol)  # |cos| = 1: up to sign


# Largest condition number the route accepts for all p components: p eps cond^2 <= GRAM_RTOL.
P = 20
COND_MAX = np.sqrt(GRAM_RTOL / (P * EPS))


@pytest.mark.parametrize("cond", [1.0 + 1e-3, 10.0, 0.9 * COND_MAX])
def test_pca_gram_route_equals_numpy_svd(cond):
    X = _matrix(5000, P, cond, offset=7.0)
    fit = pca(X)
    assert fit.route == "gram"
    s, Vt, var, ratio = _numpy_pca(X)
    np.testing.assert_allclose(fit.singular_values, s, rtol=1e-10)
    np.testing.assert_allclose(fit.explained_variance, var, rtol=1e-10)
    np.testing.assert_allclose(fit.explained_variance_ratio, ratio, rtol=1e-10)
    _same_axes(fit.components, Vt, 1e-8 if cond < 100 else 1e-6)  # distinct eigenvalues here
    np.testing.assert_allclose(fit.mean, X.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("cond", [1.2 * COND_MAX, 1e6])
def test_pca_ill_conditioned_falls_back_to_svd(cond):
    X = _matrix(5000, P, cond, offset=7.0)
    fit = pca(X)
    assert fit.route == "svd"  # the Gram route would lose accuracy: the fallback must run
    s, Vt, var, _ = _numpy_pca(X)
    np.testing.assert_allclose(fit.singular_values, s, rtol=1e-9)
    np.testing.assert_allclose(fit.explained_variance, var, rtol=1e-9)
    _same_axes(fit.components[:5], Vt[:5], 1e-9)


def test_rank_deficient_falls_back_but_few_leading_components_need_not():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3000, 4)) @ rng.standard_normal((4, 30))  # rank 4
    assert pca(X).route == "svd"
    assert svd(X).route == "full"
    few = pca(X, n_components=3, method="randomized", rng=rng)  # only 3 returned: well conditioned
    assert few.route == "gram"
    s, Vt, var, ratio = _numpy_pca(X)
    np.testing.assert_allclose(few.singular_values, s[:3], rtol=1e-10)
    np.testing.assert_allclose(few.explained_variance_ratio, ratio[:3], rtol=1e-10)
    _same_axes(few.components, Vt[:3], 1e-8)


@pytest.mark.parametrize("cond, route", [(10.0, "gram"), (1e5, "full")])
def test_svd_gram_route_and_fallback_equal_numpy(cond, route):
    A = _matrix(3000, P, cond, seed=3)
    got = svd(A)
    assert got.route == route
    U0, s0, Vt0 = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(got.s, s0, rtol=1e-10)
    _same_axes(got.Vt, Vt0, 1e-9)
    np.testing.assert_allclose(got.U.T @ got.U, np.eye(P), atol=1e-13)  # orthonormal as LAPACK's
    np.testing.assert_allclose(got.U * got.s @ got.Vt, A, atol=1e-10)


def test_weighted_scaled_gram_pca_equals_resampled_copy():
    X = _matrix(2000, 8, 5.0, seed=4, offset=-3.0) * np.arange(1, 9)
    counts = np.random.default_rng(5).poisson(1.0, X.shape[0])
    ours = pca(X, weights=counts, scale=True)
    copy = pca(np.repeat(X, counts, axis=0), scale=True)
    assert ours.route == copy.route == "gram"
    np.testing.assert_allclose(ours.singular_values, copy.singular_values, rtol=1e-11)
    np.testing.assert_allclose(ours.scale, copy.scale, rtol=1e-12)
    Xs = np.repeat(X, counts, axis=0)
    Xs = (Xs - Xs.mean(0)) / Xs.std(0, ddof=1)
    np.testing.assert_allclose(ours.singular_values, np.linalg.svd(Xs, compute_uv=False), rtol=1e-10)


def test_gram_is_the_centred_weighted_cross_product():
    rng = np.random.default_rng(6)
    A, c, w = rng.standard_normal((50_000, 7)), rng.standard_normal(7), rng.random(50_000)
    B = (A - c) * w[:, None]
    np.testing.assert_allclose(gram(A, c, w), B.T @ B, rtol=1e-12)
    np.testing.assert_allclose(gram(np.asfortranarray(A)), A.T @ A, rtol=1e-12)
    assert gram_ok(np.array([4.0, 1.0]), 2, 2) and not gram_ok(np.array([1.0, 0.0]), 2, 2)
    assert not gram_ok(np.array([1.0, 1e-8]), 2, 2)  # 10 eps / 1e-8 > 1e-10


@pytest.mark.parametrize("a_order,b_order", [("C", "C"), ("C", "F"), ("F", "C"), ("F", "F")])
def test_dot_is_a_matrix_product_for_any_layout(a_order, b_order):
    """gram.dot passes each operand as it is or transposed (no copy), whatever its order."""
    from hpcml.numerics.gram import dot

    rng = np.random.default_rng(0)
    a = np.asarray(rng.standard_normal((7, 300)), order=a_order)
    b = np.asarray(rng.standard_normal((300, 5)), order=b_order)
    np.testing.assert_allclose(dot(a, b), a @ b, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(dot(b.T, a.T), (a @ b).T, rtol=1e-13, atol=1e-12)
