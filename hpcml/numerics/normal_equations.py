"""Solving normal equations safely: Cholesky where the (equilibrated) Gram matrix is well
conditioned and of full rank by R's test, else None so the caller takes the QR route."""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

# Cholesky is trusted only when the equilibrated Gram matrix is this well conditioned;
# its error grows like cond(X)^2 * eps, so 1e-6 keeps coefficients ~1e-10 relative.
RCOND_MIN = 1e-6


# R's lm: qr(x, tol = 1e-07). A column whose residual, after projecting out the columns
# before it (the intercept first), is below this fraction of its own norm is aliased.
ALIAS_TOL = 1e-7


def equilibrated_cholesky(G: np.ndarray):
    """(Cholesky factor, lower, scale d, equilibrated G) of G scaled by its diagonal, or None."""
    d = np.sqrt(np.diag(G))
    if not np.all(d > 0):
        return None
    Gs = G / np.outer(d, d)
    try:
        c, lower = linalg.cho_factor(Gs, lower=False, check_finite=False)
    except linalg.LinAlgError:
        return None
    return c, lower, d, Gs


def _well_conditioned(c: np.ndarray, Gs: np.ndarray) -> bool:
    rcond, info = lapack.dpocon(c, np.abs(Gs).sum(axis=0).max())
    return info == 0 and rcond >= RCOND_MIN


def solve_spd(G: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Solve G x = b for symmetric positive definite G, or None if G is ill-conditioned.

    Equilibrating by the diagonal first makes the condition test (and the solve) insensitive
    to the units of the columns.
    """
    factored = equilibrated_cholesky(G)
    if factored is None or not _well_conditioned(factored[0], factored[3]):
        return None
    c, lower, d, _ = factored
    return linalg.cho_solve((c, lower), b / d, check_finite=False) / d


def cholesky_full_rank(G: np.ndarray, b: np.ndarray, norms2: np.ndarray, tol: float) -> np.ndarray | None:
    """Solve the centred normal equations when the design is clearly of full rank, else None.

    Full rank means R's test passes for every column: the Cholesky factor's diagonal is the
    norm of each column's residual on the columns before it, compared with the column's
    norm (``norms2``, squared, uncentred as R's QR sees it). The equilibrated condition test
    of :func:`solve_spd` guards the accuracy of the solve itself.
    """
    factored = equilibrated_cholesky(G)
    if factored is None:
        return None
    c, lower, d, Gs = factored
    if not np.all((np.diag(c) * d) ** 2 >= tol**2 * norms2) or not _well_conditioned(c, Gs):
        return None
    return linalg.cho_solve((c, lower), b / d, check_finite=False) / d
