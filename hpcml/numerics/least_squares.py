"""Ordinary least squares with observation weights, as R's ``lm`` computes it.

A bootstrap replicate arrives as a weight vector of counts (``np.bincount`` of the drawn
indices), never as a resampled copy: the weighted normal equations X'WX b = X'Wy give exactly
the coefficients of the resampled copy, at the cost of one pass over the data.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg

from hpcml.numerics.weights import as_weights, keep_rows
from hpcml.numerics.normal_equations import ALIAS_TOL, cholesky_full_rank
from hpcml.numerics.inference import aliased_note, clean, coef_names, coefficient_table

# Bootstrap replicates fitted together by one matrix product (see batched_ols).
BOOTSTRAP_GROUP = 64

@dataclass
class OLSFit:
    coef: np.ndarray  # intercept first when fit_intercept; NaN where aliased
    fit_intercept: bool
    sigma2: float  # weighted RSS / (n_eff - rank)
    n_eff: float  # sum of weights (= rows of the resampled copy)
    rank: int
    method: str  # "cholesky" or "qr" (rank-deficient or ill-conditioned designs)
    aliased: np.ndarray | None = None  # bool per coefficient, as R's is.na(coef(lm))

    def __post_init__(self):
        if self.aliased is None:
            self.aliased = np.isnan(self.coef)

    @property
    def intercept(self) -> float:
        return float(self.coef[0]) if self.fit_intercept else 0.0

    @property
    def slopes(self) -> np.ndarray:
        return self.coef[1:] if self.fit_intercept else self.coef


# Rows per block of the normal equations: the centred, weighted block stays in cache, so a
# fit reads the data three times (means, moments, residuals) and copies none of it.
BLOCK_ROWS = 4096


def _blocks(n: int) -> range:
    return range(0, n, BLOCK_ROWS)


def _centred_moments(X: np.ndarray, y: np.ndarray, w: np.ndarray, xm: np.ndarray, ym: float):
    """Xc' W Xc and Xc' W yc for Xc = X - xm, yc = y - ym, accumulated block by block."""
    p = X.shape[1]
    G, b = np.zeros((p, p)), np.zeros(p)
    for s in _blocks(X.shape[0]):
        sw = np.sqrt(w[s : s + BLOCK_ROWS])
        Z = (X[s : s + BLOCK_ROWS] - xm) * sw[:, None]
        G += Z.T @ Z
        b += Z.T @ ((y[s : s + BLOCK_ROWS] - ym) * sw)
    return G, b


def _weighted_rss(X: np.ndarray, y: np.ndarray, w: np.ndarray, xm: np.ndarray, ym: float, beta: np.ndarray) -> float:
    rss = 0.0
    for s in _blocks(X.shape[0]):
        r = (y[s : s + BLOCK_ROWS] - ym) - (X[s : s + BLOCK_ROWS] - xm) @ beta
        rss += float(w[s : s + BLOCK_ROWS] @ (r * r))
    return rss


def kept_columns(Z: np.ndarray, norms: np.ndarray, tol: float = ALIAS_TOL) -> np.ndarray:
    """Indices of the columns of ``Z`` that R's pivoted QR (LINPACK dqrdc2) keeps.

    Columns are taken left to right; one whose residual on the kept columns before it has
    norm below ``tol`` times ``norms[j]`` (its norm in the design as given) is aliased. ``Z``
    is the design with the intercept already projected out (centred), so the intercept,
    first in R's design, is always kept. Classical Gram-Schmidt with reorthogonalisation.
    """
    n, p = Z.shape
    Q = np.empty((n, min(n, p)))
    kept: list[int] = []
    for j in range(p):
        v = Z[:, j].copy()
        if kept:
            Qk = Q[:, : len(kept)]
            v -= Qk @ (Qk.T @ v)
            v -= Qk @ (Qk.T @ v)
        r = float(np.linalg.norm(v))
        if r > 0 and r >= tol * norms[j] and len(kept) < Q.shape[1]:
            Q[:, len(kept)] = v / r
            kept.append(j)
    return np.array(kept, dtype=np.intp)


def _prepare(X: Any, y: Any, weights: Any, fit_intercept: bool):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows, y has {y.shape[0]}")
    w = as_weights(weights, X.shape[0])
    n_rows, n_coef = int(np.count_nonzero(w)), X.shape[1] + int(fit_intercept)
    if n_rows < n_coef:
        # R's lm would report NA for the coefficients the rows cannot determine; a task
        # fails instead, so no summary ever averages numbers that were never estimated.
        raise ValueError(f"{n_rows} row{'s' if n_rows != 1 else ''} with positive weight cannot "
                         f"determine {n_coef} coefficients")
    return X, y, w


def fit_ols(X: Any, y: Any, weights: Any = None, fit_intercept: bool = True) -> OLSFit:
    """Weighted least squares; equals lstsq on the resampled copy when weights are counts.

    Rank-deficient designs are handled as R's ``lm``: a column that is (numerically) a
    linear combination of the columns before it, or constant when there is an intercept,
    is aliased: its coefficient is NaN (R's NA) and the others are the fit without it.
    Fewer rows with positive weight than coefficients is an error (ValueError).
    """
    X, y, w = _prepare(X, y, weights, fit_intercept)
    n_eff = float(w.sum())
    p = X.shape[1]
    # Centring by the weighted means removes the intercept column and its collinearity
    # with the features, which is what keeps the normal equations well conditioned.
    # Zero-weight rows (a bootstrap's undrawn rows) add exactly nothing to the sums.
    xm = w @ X / n_eff if fit_intercept else np.zeros(p)
    ym = float(w @ y / n_eff) if fit_intercept else 0.0
    G, b = _centred_moments(X, y, w, xm, ym)
    # Each column's squared norm in R's (uncentred) design: centred sum of squares + n xm^2.
    norms2 = np.diag(G) + n_eff * xm**2
    beta = cholesky_full_rank(G, b, norms2, ALIAS_TOL) if p else np.zeros(0)
    method, rank = "cholesky", p
    if beta is None:
        wk, Xk, yk = keep_rows(w, X, y)
        sw = np.sqrt(wk)
        Z = (Xk - xm) * sw[:, None]
        kept = kept_columns(Z, np.sqrt(norms2))
        beta = np.full(p, np.nan)
        if kept.size:  # as R: a QR of the kept columns
            Q, R = np.linalg.qr(Z[:, kept])
            beta[kept] = linalg.solve_triangular(R, Q.T @ ((yk - ym) * sw), check_finite=False)
        method, rank = "qr", int(kept.size)
    rank_tot = int(rank) + int(fit_intercept)
    dof = n_eff - rank_tot
    b0 = np.nan_to_num(beta)
    sigma2 = _weighted_rss(X, y, w, xm, ym, b0) / dof if dof > 0 else float("nan")
    coef = np.concatenate([[ym - xm @ b0], beta]) if fit_intercept else beta
    return OLSFit(coef, fit_intercept, sigma2, n_eff, rank_tot, method)


# A downdated sum of squares smaller than this fraction of the full one has lost too many digits.
DOWNDATE_KEEP = 1e-6


def _group_rows(labels: np.ndarray, groups: int) -> list[np.ndarray | slice]:
    """Each group's rows: a slice where they are contiguous (the jackknife's blocks), else indices."""
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=groups)[:groups])])
    out: list[np.ndarray | slice] = []
    for g in range(groups):
        rows = order[bounds[g] : bounds[g + 1]]
        contiguous = rows.size == 0 or rows[-1] - rows[0] + 1 == rows.size
        out.append(slice(int(rows[0]), int(rows[-1]) + 1) if contiguous and rows.size else rows)
    return out


def _centred_sums(X: np.ndarray, y: np.ndarray, rows: np.ndarray | slice, mx: np.ndarray, my: float):
    """Z'Z, Z'u, sum Z, sum u over ``rows`` for Z = X - mx, u = y - my, one block at a time."""
    p = X.shape[1]
    G, b, sx, sy = np.zeros((p, p)), np.zeros(p), np.zeros(p), 0.0
    if isinstance(rows, slice):
        blocks = [slice(s, min(s + BLOCK_ROWS, rows.stop)) for s in range(rows.start, rows.stop, BLOCK_ROWS)]
    else:
        blocks = [rows[s : s + BLOCK_ROWS] for s in range(0, rows.size, BLOCK_ROWS)]
    for r in blocks:
        Z, u = X[r] - mx, y[r] - my
        G += Z.T @ Z
        b += Z.T @ u
        sx += Z.sum(axis=0)
        sy += float(u.sum())
    return G, b, sx, sy


def leave_group_out_coefs(X: np.ndarray, y: np.ndarray, labels: np.ndarray, groups: int,
                          fit_intercept: bool = True) -> np.ndarray:
    """Coefficients of the fits that leave out each group of rows, shape (groups, n_coef).

    BCa's jackknife needs one refit per group; downdating the Gram matrix of the whole data
    by each group's rows costs two passes over the data instead of ``groups`` passes, and
    copies only a block of rows at a time (never the kept rows). Rows are centred by the
    overall means first, so the downdate does not cancel large offsets. A group whose
    downdated system is ill-conditioned is refitted directly, with 0/1 weights.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.intp)
    n, p = X.shape
    mx = X.mean(axis=0) if fit_intercept else np.zeros(p)
    my = float(y.mean()) if fit_intercept else 0.0
    G, b, sx, sy = _centred_sums(X, y, slice(0, n), mx, my)
    out = np.empty((groups, p + int(fit_intercept)))
    for g, rows in enumerate(_group_rows(labels, groups)):
        Gg, bg, sxg, syg = _centred_sums(X, y, rows, mx, my)
        m = n - (rows.stop - rows.start if isinstance(rows, slice) else rows.size)
        Gm, bm, beta = G - Gg, b - bg, None
        if m > 0:
            if fit_intercept:
                # The kept rows' means differ from the overall means by (dx, dy).
                dx, dy = (sx - sxg) / m, (sy - syg) / m
                Gm, bm = Gm - m * np.outer(dx, dx), bm - m * dx * dy
            # R's rank test on the kept rows' columns (uncentred norms, as fit_ols), and a
            # guard on cancellation: a column that loses all but 1e-6 of its sum of squares
            # to the downdate has too few digits left, so that group is refitted directly.
            means = mx + dx if fit_intercept else 0.0
            norms2 = np.diag(Gm) + m * means**2
            if np.all(np.diag(Gm) >= DOWNDATE_KEEP * np.diag(G)):
                beta = cholesky_full_rank(Gm, bm, norms2, ALIAS_TOL)
        if beta is None:
            out[g] = fit_ols(X, y, (labels != g).astype(np.float64), fit_intercept).coef
        elif fit_intercept:
            out[g] = np.concatenate([[my + dy - (mx + dx) @ beta], beta])
        else:
            out[g] = beta
    return out


def predict(fit: OLSFit, X: Any) -> np.ndarray:
    """Fitted values; aliased coefficients count as 0, as R's predict.lm does."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    return X @ np.nan_to_num(fit.slopes) + fit.intercept


def ols_summary(X: Any, y: Any, fit: OLSFit, features: list[str], weights: Any = None,
                level: float = 0.95) -> dict[str, Any]:
    """R's ``summary(lm)``: the coefficient table and the fit's statistics, JSON-ready.

    Standard errors come from a QR of the kept (non-aliased) centred columns, as R computes
    them; with weights, R's ``lm(weights = )`` (counts: the resampled copy).
    """
    from scipy import stats

    X, y, w = _prepare(X, y, weights, fit.fit_intercept)
    n_eff, p = fit.n_eff, X.shape[1]
    slopes = np.asarray(fit.slopes)
    kept = np.flatnonzero(~np.isnan(slopes))
    xm = w @ X / n_eff if fit.fit_intercept else np.zeros(p)
    wk, Xk, yk = keep_rows(w, X, y)
    sw = np.sqrt(wk)
    # Unscaled covariance of the kept slopes, (Z'Z)^-1 = R^-1 R^-T, with Z the centred columns.
    V = np.zeros((kept.size, kept.size))
    if kept.size:
        R = np.linalg.qr((Xk[:, kept] - xm[kept]) * sw[:, None], mode="r")
        Rinv = linalg.solve_triangular(R, np.eye(kept.size), check_finite=False)
        V = Rinv @ Rinv.T
    var = np.full(p, np.nan)
    var[kept] = np.diag(V)
    if fit.fit_intercept:  # intercept = ym - xm'beta, and ym is uncorrelated with beta
        xk = xm[kept]
        var = np.concatenate([[1.0 / n_eff + xk @ V @ xk], var])
    se = np.sqrt(fit.sigma2 * var)
    dof = n_eff - fit.rank
    names = coef_names(fit.fit_intercept, features)
    fitted = predict(fit, Xk)
    rss = float(wk @ (yk - fitted) ** 2)
    df_int = int(fit.fit_intercept)
    mss = float(wk @ (fitted - (wk @ fitted) / n_eff) ** 2) if fit.fit_intercept else float(wk @ fitted**2)
    r2 = mss / (mss + rss) if mss + rss > 0 else math.nan
    df1 = fit.rank - df_int
    f_stat = (mss / df1) / fit.sigma2 if df1 > 0 and dof > 0 and fit.sigma2 > 0 else math.nan
    statistics = {
        "n": n_eff, "rank": fit.rank, "df_residual": dof,
        "sigma": math.sqrt(fit.sigma2) if fit.sigma2 >= 0 else math.nan,  # R: residual standard error
        "r_squared": r2,
        "adj_r_squared": 1.0 - (1.0 - r2) * ((n_eff - df_int) / dof) if dof > 0 else math.nan,
        "f_statistic": f_stat, "f_df1": df1, "f_df2": dof,
        "f_p_value": float(stats.f.sf(f_stat, df1, dof)) if math.isfinite(f_stat) else math.nan,
    }
    return {"table": coefficient_table(names, fit.coef, se, dof, level), "level": level,
            "statistics": {k: clean(v) for k, v in statistics.items()},
            **aliased_note(names, np.isnan(fit.coef))}


def coef_outputs(coef: np.ndarray, fit_intercept: bool, features: list[str]) -> dict[str, float]:
    """``coef_(Intercept)`` (R's spelling) then ``coef_<feature>``; shared with logistic."""
    names = (["(Intercept)"] if fit_intercept else []) + list(features)
    return {f"coef_{n}": float(c) for n, c in zip(names, coef)}


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    if y.size == 0:
        return {"r2": float("nan"), "rmse": float("nan"), "mse": float("nan")}
    mse = float(np.mean((y - yhat) ** 2))
    tss = float(np.mean((y - y.mean()) ** 2))
    r2 = 1.0 - mse / tss if tss > 0 else float("nan")
    return {"r2": r2, "rmse": float(np.sqrt(mse)), "mse": mse}
