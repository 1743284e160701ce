"""Logistic regression by iteratively reweighted least squares (Newton); the ``logistic`` kind
is in ``logistic``.

Unpenalised, so it equals R's ``glm(family = binomial)`` and scikit-learn's
``LogisticRegression(penalty=None)``. Observation weights multiply each row's log-likelihood,
so count weights reproduce the fit on a resampled copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg
from scipy.linalg import blas
from scipy.special import expit

from hpcml.numerics.aliasing import kept_columns_gram
from hpcml.numerics.gram import block_rows, row_blocks
from hpcml.numerics.normal_equations import solve_spd
from hpcml.numerics.weights import as_weights, positive_rows
from hpcml.numerics.least_squares import kept_columns
from hpcml.numerics.inference import aliased_note, clean, coef_names, coefficient_table

# Beyond this |eta|, e^-|eta| underflows and Newton stops moving: a diverging (separated) fit.
_ETA_MAX = 700.0
_MAX_HALVINGS = 30
# glm.fit's QR tolerance, min(1e-07, epsilon / 1000) with glm.control's epsilon = 1e-8.
GLM_ALIAS_TOL = 1e-11
# R's glm.fit warns "fitted probabilities numerically 0 or 1 occurred" beyond 10 * eps.
_PROB_EPS = 10 * np.finfo(np.float64).eps
SEPARATION_WARNING = ("perfect or quasi-perfect separation: fitted probabilities numerically 0 or 1 "
                      "(the maximum-likelihood estimate does not exist; coefficients and standard errors "
                      "are those where the fit stopped, as R's glm reports them)")


@dataclass
class LogisticFit:
    coef: np.ndarray  # intercept first when fit_intercept; NaN where aliased
    fit_intercept: bool
    classes: list[Any]  # original labels of 0 and 1
    n_iter: int
    deviance: float  # -2 * weighted log-likelihood
    warning: str | None = None  # set when the fit is reported although the MLE does not exist

    @property
    def intercept(self) -> float:
        return float(self.coef[0]) if self.fit_intercept else 0.0

    @property
    def slopes(self) -> np.ndarray:
        return self.coef[1:] if self.fit_intercept else self.coef

    @property
    def aliased(self) -> np.ndarray:
        return np.isnan(self.coef)


def encode_binary(y: Any) -> tuple[np.ndarray, list[Any]]:
    """Map a two-class target to 0/1 (sorted labels: the larger one is 1, as R and sklearn do)."""
    y = np.asarray(y).ravel()
    classes = np.unique(y)
    if classes.size != 2:
        raise ValueError(f"logistic needs 2 classes, found {classes.size}")
    return (y == classes[1]).astype(np.float64), classes.tolist()


def deviance_terms(eta: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """The deviance (-2 * weighted log-likelihood) and e^-|eta|, which the working weights reuse."""
    e = np.exp(-np.abs(eta))
    # log(1 + e^eta) - y*eta = max(eta, 0) - y*eta + log1p(e^-|eta|): neither overflows nor cancels.
    t = np.log1p(e)
    t += np.maximum(eta, 0.0)
    t -= y * eta
    return float(2.0 * (w @ t)), e


def _deviance(eta: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    return deviance_terms(eta, y, w)[0]


def working(eta: np.ndarray, e: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y - mu and w * mu(1 - mu), from e = e^-|eta|: max(mu, 1 - mu) = 1 / (1 + e) and
    min(mu, 1 - mu) = e / (1 + e), so nothing cancels when mu is near 0 or 1."""
    big = 1.0 / (1.0 + e)
    small = e * big
    y1 = y > 0.5
    resid = np.where((eta >= 0) == y1, small, big)  # |y - mu|: small where eta points at y
    resid *= np.where(y1, 1.0, -1.0)
    big *= small
    big *= w
    return resid, big


def _separated(eta: np.ndarray) -> bool:
    """Some fitted probability is numerically 0 or 1 (R's test in glm.fit)."""
    return bool(eta.size) and bool(np.any(expit(-np.abs(eta)) < _PROB_EPS))


class _Design:
    """The IRLS design [1, X[rows][:, kept]] without storing it: every product runs over row
    blocks of X (a view, or one block's rows with positive weight gathered), so neither a
    resampled copy of X nor a copy with an intercept column is made."""

    def __init__(self, X: np.ndarray, rows: np.ndarray | None, kept: np.ndarray, fit_intercept: bool):
        self.X, self.rows, self.kept, self.icpt = X, rows, kept, int(fit_intercept)
        self.all_cols = kept.size == X.shape[1]
        self.m = self.icpt + kept.size  # coefficients
        self.n = X.shape[0] if rows is None else rows.size  # rows taken

    def blocks(self):
        """(start, stop, block of the design's rows) with the intercept column and kept columns."""
        for s, e, B in row_blocks(self.X, self.rows, block_rows(self.X.shape[1] + 1)):
            A = np.empty((e - s, self.m))
            if self.icpt:
                A[:, 0] = 1.0
            A[:, self.icpt:] = B if self.all_cols else B[:, self.kept]
            yield s, e, A

    def times(self, beta: np.ndarray) -> np.ndarray:
        """The design times beta (the linear predictor), one entry per row taken."""
        b = np.zeros(self.X.shape[1])
        b[self.kept] = beta[self.icpt:]
        eta = self.X @ b  # a product with X, no copy of it
        if self.rows is not None:
            eta = eta[self.rows]
        return eta + beta[0] if self.icpt else eta

    def grad_hessian(self, v: np.ndarray, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A'v (one product with X, no copy of it) and A' diag(sh^2) A (by dsyrk over row
        blocks, each block scaled into one reused buffer)."""
        if self.rows is None:
            xv = self.X.T @ v
        else:  # the rows left out get 0: X' v without a copy of X[rows]
            v_all = np.zeros(self.X.shape[0])
            v_all[self.rows] = v
            xv = self.X.T @ v_all
        g = np.empty(self.m)
        if self.icpt:
            g[0] = v.sum()
        g[self.icpt:] = xv[self.kept]
        # Over every column of X (taking the kept ones from each block would copy it again):
        # the aliased rows and columns are dropped from the result.
        width = self.icpt + self.X.shape[1]
        H = np.zeros((width, width), order="F")
        buf = None
        for s, e, B in row_blocks(self.X, self.rows, block_rows(self.X.shape[1] + 1)):
            if buf is None or buf.shape[0] != e - s:
                buf = np.empty((e - s, width))
            if self.icpt:
                buf[:, 0] = sh[s:e]
            np.multiply(B, sh[s:e, None], out=buf[:, self.icpt:])
            H = blas.dsyrk(1.0, buf.T, beta=1.0, c=H, trans=0, overwrite_c=1)
        upper = np.triu(H)
        H = upper + np.triu(upper, 1).T
        if not self.all_cols:
            cols = np.concatenate([[0], self.kept + 1]) if self.icpt else self.kept
            H = H[np.ix_(cols, cols)]
        return g, H

    def r_factor(self, sh: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """R of the QR of [A * sh[:, None], b] (b omitted when None), one row block at a time:
        the singular values and least-squares solutions of A * sh without storing it."""
        R = np.zeros((0, self.m + (b is not None)))
        for s, e, A in self.blocks():
            A *= sh[s:e, None]
            if b is not None:
                A = np.column_stack([A, b[s:e]])
            R = np.linalg.qr(np.vstack([R, A]), mode="r")
        return R


def _design(X: np.ndarray, rows: np.ndarray | None, w: np.ndarray, fit_intercept: bool) -> _Design:
    """The design's kept columns (intercept first), X[rows] taken with weights w.

    R's glm.fit decides aliasing by a QR of the weighted design with tolerance 1e-11; its
    first iteration's working weights are all equal, so the prior weights decide. Decided
    once, from the Gram matrix where that is clear (``hpcml.numerics.aliasing``); IRLS then
    iterates on the kept columns only.
    """
    p = X.shape[1]
    w_all = w if rows is None else np.zeros(X.shape[0])
    if rows is not None:
        w_all[rows] = w
    xm = w_all @ X / w.sum() if fit_intercept else np.zeros(p)
    kept = kept_columns_gram(X, w, xm, GLM_ALIAS_TOL, rows)  # one pass; None: a near miss
    if kept is None:  # a near miss: a QR of the centred, weighted rows (a copy) decides
        Xk = X if rows is None else X[rows]
        sw = np.sqrt(w)
        kept = kept_columns((Xk - xm) * sw[:, None], np.sqrt(w @ (Xk * Xk)), GLM_ALIAS_TOL)
    return _Design(X, rows, kept, fit_intercept)


def _rank(D: _Design, sh: np.ndarray | None = None) -> int:
    """Rank of the design, its rows scaled by ``sh`` (numpy's matrix_rank rule), from its R factor."""
    sv = np.linalg.svd(D.r_factor(np.ones(D.n) if sh is None else sh), compute_uv=False)
    return int(np.sum(sv > sv.max(initial=0.0) * max(D.n, D.m) * np.finfo(np.float64).eps))


def _min_norm_step(D: _Design, sh: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """numpy.linalg.lstsq(A * sh, rhs)'s minimum-norm solution from the R factor of the
    augmented [A * sh, rhs] (Q'rhs is its last column), with lstsq's own cutoff."""
    R = D.r_factor(sh, rhs)
    return np.linalg.lstsq(R[: D.m, : D.m], R[: D.m, D.m], rcond=np.finfo(np.float64).eps * max(D.n, D.m))[0]


def fit_logistic(
    X: Any,
    y: Any,
    weights: Any = None,
    fit_intercept: bool = True,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> LogisticFit:
    """Maximum-likelihood logistic regression.

    Converged when the relative change in deviance, |dev - dev_old| / (|dev| + 0.1), drops
    below ``tol`` (R's rule) and the Newton step is negligible. Aliased columns (exactly
    collinear, or constant with an intercept) get NaN coefficients, as R's NA. Under
    (quasi-)perfect separation the MLE does not exist: the fit stops where the deviance
    settles and carries a ``warning`` (R's glm warns the same way). Raises ValueError on
    non-convergence and when fewer rows than coefficients have positive weight.
    Rows of weight 0 are skipped, block by block: X (float64, e.g. a mapped file) is never
    copied.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y01, classes = encode_binary(y)
    if y01.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows, y has {y01.shape[0]}")
    w = as_weights(weights, X.shape[0])
    rows = positive_rows(w)
    wk, yk = (w, y01) if rows is None else (w[rows], y01[rows])
    n_coef = X.shape[1] + int(fit_intercept)
    if wk.size < n_coef:
        raise ValueError(f"{wk.size} row{'s' if wk.size != 1 else ''} with positive weight cannot "
                         f"determine {n_coef} coefficients")
    D = _design(X, rows, wk, fit_intercept)
    cols = np.concatenate([[0], D.kept + 1]) if fit_intercept else D.kept
    beta = np.zeros(D.m)
    if fit_intercept:  # start at the weighted base rate: one Newton step closer
        pbar = float(np.clip(wk @ yk / wk.sum(), 1e-8, 1 - 1e-8))
        beta[0] = np.log(pbar / (1 - pbar))
    eta = D.times(beta)
    dev, e = deviance_terms(eta, yk, wk)
    dev_flat, singular, converged = False, False, False
    for it in range(1, max_iter + 1):
        resid, hw = working(eta, e, yk, wk)
        grad, hess = D.grad_hessian(wk * resid, np.sqrt(hw))  # A' diag(hw) A by dsyrk
        step = solve_spd(hess, grad)
        singular = step is None
        if singular:  # singular Hessian: separation or collinear columns
            sh = np.sqrt(hw)
            step = _min_norm_step(D, sh, wk * resid / np.where(sh > 0, sh, 1.0))
        # Step halving (as glm.fit) keeps the deviance from increasing.
        for _ in range(_MAX_HALVINGS):
            eta_new = D.times(beta + step)
            dev_new, e_new = deviance_terms(eta_new, yk, wk)
            if np.isfinite(dev_new) and dev_new <= dev * (1 + 1e-12) + 1e-12:
                break
            step = step / 2
        beta = beta + step
        eta, e, dev_old, dev = eta_new, e_new, dev, dev_new
        # Under separation the deviance flattens while the coefficients keep growing by
        # a constant step, so convergence also needs a step that is small relative to beta.
        dev_flat = abs(dev - dev_old) / (abs(dev) + 0.1) < tol
        small_step = np.max(np.abs(step), initial=0.0) <= np.sqrt(tol) * (np.max(np.abs(beta), initial=0.0) + 1.0)
        if dev_flat and small_step:
            converged = True
            break
        if dev_flat and _separated(eta):
            break  # the coefficients run off while the deviance has settled: R's rule stops here
    else:
        if not _separated(eta):
            raise ValueError(f"logistic regression did not converge in {max_iter} iterations (increase max_iter)")
    # A Hessian singular although the kept columns have full rank means rows with weights
    # mu(1 - mu) ~ 0 carry a direction: the fit is running off to infinity along it.
    # (Fitted probabilities near 0 or 1 alone are no sign of it: a converged fit may have them.
    # Nor is a Hessian too ill-conditioned for Cholesky: an uncentred column with a large
    # mean makes one; the weighted design then still has full rank.)
    warning = None
    if not converged or np.max(np.abs(eta), initial=0.0) > _ETA_MAX or \
            (singular and _rank(D) == D.m and _rank(D, np.sqrt(working(eta, e, yk, wk)[1])) < D.m):
        warning = SEPARATION_WARNING
    coef = np.full(n_coef, np.nan)
    coef[cols] = beta
    return LogisticFit(coef, fit_intercept, classes, it, dev, warning)


def logistic_summary(X: Any, y: Any, fit: LogisticFit, features: list[str], weights: Any = None,
                     level: float = 0.95) -> dict[str, Any]:
    """R's ``summary(glm(family = binomial))``: z table, deviances and AIC, JSON-ready.

    Standard errors are from the Fisher information at the estimate (dispersion 1); the
    interval is Wald's (R's ``confint.default``; R's ``confint`` profiles the likelihood).
    AIC is R's for 0/1 responses: deviance + 2 * rank.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y01 = (np.asarray(y).ravel() == fit.classes[1]).astype(np.float64)
    w = as_weights(weights, X.shape[0])
    rows = positive_rows(w)
    wk, yk = (w, y01) if rows is None else (w[rows], y01[rows])
    cols = np.flatnonzero(~fit.aliased)
    icpt = int(fit.fit_intercept)
    D = _Design(X, rows, cols[cols >= icpt] - icpt, fit.fit_intercept)  # no copy of the design
    eta = D.times(fit.coef[cols])
    hw = working(eta, np.exp(-np.abs(eta)), yk, wk)[1]  # the working weights at the estimate
    var = np.full(fit.coef.size, np.nan)
    if cols.size:
        R = D.r_factor(np.sqrt(hw))  # QR of the weighted design, one row block at a time
        with np.errstate(divide="ignore", invalid="ignore"):
            Rinv = linalg.solve_triangular(R, np.eye(cols.size), check_finite=False)
        var[cols] = np.sum(Rinv * Rinv, axis=1)
    n_eff = float(wk.sum())
    rank = int(cols.size)
    pbar = float(wk @ yk / n_eff) if fit.fit_intercept else 0.5
    null_dev = _deviance(np.full(yk.size, np.log(pbar / (1 - pbar)) if 0 < pbar < 1 else 0.0), yk, wk) \
        if 0 < pbar < 1 else 0.0
    statistics = {
        "n": n_eff, "rank": rank, "deviance": fit.deviance, "df_residual": n_eff - rank,
        "null_deviance": null_dev, "df_null": n_eff - int(fit.fit_intercept),
        "aic": fit.deviance + 2 * rank, "iterations": fit.n_iter,
    }
    names = coef_names(fit.fit_intercept, features)
    out = {"table": coefficient_table(names, fit.coef, np.sqrt(var), None, level), "level": level,
           "statistics": {k: clean(v) for k, v in statistics.items()}, **aliased_note(names, fit.aliased)}
    if fit.warning:
        out["warning"] = fit.warning
    return out


def predict_proba(fit: LogisticFit, X: Any) -> np.ndarray:
    """P(y = classes[1]) for each row (aliased coefficients count as 0, as R's predict)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    return expit(X @ np.nan_to_num(fit.slopes) + fit.intercept)


def classification_metrics(y01: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if y01.size == 0:
        return {"accuracy": nan, "log_loss": nan, "auc": nan}
    acc = float(np.mean((p1 >= 0.5) == (y01 == 1)))
    pc = np.clip(p1, 1e-15, 1 - 1e-15)
    ll = float(-np.mean(y01 * np.log(pc) + (1 - y01) * np.log1p(-pc)))
    auc = nan
    if 0 < y01.sum() < y01.size:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y01, p1))
    return {"accuracy": acc, "log_loss": ll, "auc": auc}
