"""Which design columns R's pivoted QR keeps, decided from the Gram matrix in one pass.

R (LINPACK dqrdc2) takes columns left to right and drops one whose residual on the kept
columns before it is below ``tol`` times its own norm. Here the residuals come from an
incremental Cholesky factor of the centred, weighted Gram matrix (one ``dsyrk`` pass over
the data). The Gram matrix knows a squared residual only to about eps times the squared
norm, so a column is decided from it only when its relative residual is clearly large
(``CLEAR`` = 1e-4, far above 1e-11 and far above the Gram route's noise of ~1e-8). For any
other column (the aliased ones and the near-misses) the residual is recomputed from the
data: the least-squares fit on the kept columns from the factor, refined once with the
residual's own correlations (two matrix-vector passes), which is accurate to rounding as
long as the kept columns themselves are well determined -- they passed the clear test.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from hpcml.numerics.gram import gram

CLEAR = 1e-4


def _residual_norm(X, center, sw, kept, j, R, rows=None) -> float:
    """||z_j - Z_k c|| from the data, c the refined least-squares fit (z = (x[rows] - center) * sw)."""
    def z_times(c_kept):  # Z_k c, one entry per row taken
        c = np.zeros(X.shape[1])
        c[kept] = c_kept
        out = X @ c - center @ c
        out = out if rows is None else out[rows]
        return out * sw if sw is not None else out

    def zt(v):  # Z_k' v
        u = v * sw if sw is not None else v
        if rows is not None:  # the rows left out get 0: X' u without a copy of X[rows]
            u_all = np.zeros(X.shape[0])
            u_all[rows] = u
            u = u_all
        return (X.T @ u - center * u.sum())[kept]

    zj = (X[:, j] if rows is None else X[rows, j]) - center[j]
    if sw is not None:
        zj = zj * sw
    v = zj - z_times(linalg.cho_solve((R, False), zt(zj), check_finite=False))
    v -= z_times(linalg.cho_solve((R, False), zt(v), check_finite=False))
    return float(np.linalg.norm(v))


def kept_columns_gram(X: np.ndarray, w: np.ndarray, center: np.ndarray, tol: float,
                      rows: np.ndarray | None = None) -> np.ndarray | None:
    """Indices of the columns of ``(X - center) * sqrt(w)`` that R's QR keeps at ``tol``, or
    None when some column is a near miss (kept, with a relative residual between ``tol``
    and ``CLEAR``): then only a QR of the data decides the columns after it reliably.

    ``center`` is the weighted column mean when the design has an intercept (which R takes
    first and always keeps), else zeros. A column's norm for the test is its norm in the
    design as given (uncentred), as R's. ``rows``: the rows taken (``w`` has one weight per
    row taken), None all of them; X[rows] is never copied.
    """
    n, p = X.shape if rows is None else (rows.size, X.shape[1])
    sw = None if np.all(w == 1.0) else np.sqrt(w)
    G = gram(X, center, sw, rows)
    norms2 = np.diag(G) + float(w.sum()) * center**2  # sum w x^2: a sum of positive terms
    kept: list[int] = []
    R = np.zeros((0, 0))
    for j in range(p):
        if len(kept) >= min(n, p):
            break
        r = linalg.solve_triangular(R, G[kept, j], trans="T", check_finite=False) if kept else np.zeros(0)
        res2 = G[j, j] - float(r @ r)
        if not (res2 > 0 and res2 >= CLEAR**2 * norms2[j]):  # not clearly kept (a zero column has norm 0)
            res2 = _residual_norm(X, center, sw, kept, j, R, rows) ** 2 if kept else G[j, j]
            if res2 > 0 and res2 >= tol**2 * norms2[j]:
                return None  # a near miss, kept: let the QR decide
            continue  # aliased
        k = len(kept)
        R2 = np.zeros((k + 1, k + 1))
        R2[:k, :k], R2[:k, k], R2[k, k] = R, r, np.sqrt(res2)
        R, kept = R2, kept + [j]
    return np.array(kept, dtype=np.intp)
