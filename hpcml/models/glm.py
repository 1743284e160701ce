"""Logistic regression by iteratively reweighted least squares (Newton), and the ``logistic`` kind.

Unpenalised, so it equals R's ``glm(family = binomial)`` and scikit-learn's
``LogisticRegression(penalty=None)``. Observation weights multiply each row's log-likelihood,
so count weights reproduce the fit on a resampled copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field
from scipy.special import expit

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.models.linear import as_weights, coef_outputs, keep_rows, row_mask, solve_spd

# Beyond this |eta|, e^-|eta| underflows and Newton stops moving: a diverging (separated) fit.
_ETA_MAX = 700.0
_MAX_HALVINGS = 30


@dataclass
class LogisticFit:
    coef: np.ndarray  # intercept first when fit_intercept
    fit_intercept: bool
    classes: list[Any]  # original labels of 0 and 1
    n_iter: int
    deviance: float  # -2 * weighted log-likelihood

    @property
    def intercept(self) -> float:
        return float(self.coef[0]) if self.fit_intercept else 0.0

    @property
    def slopes(self) -> np.ndarray:
        return self.coef[1:] if self.fit_intercept else self.coef


def encode_binary(y: Any) -> tuple[np.ndarray, list[Any]]:
    """Map a two-class target to 0/1 (sorted labels: the larger one is 1, as R and sklearn do)."""
    y = np.asarray(y).ravel()
    classes = np.unique(y)
    if classes.size != 2:
        raise ValueError(f"logistic needs 2 classes, found {classes.size}")
    return (y == classes[1]).astype(np.float64), classes.tolist()


def _deviance(eta: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    # log(1 + e^eta) - y*eta, written with logaddexp so large |eta| neither overflows nor cancels.
    return float(2.0 * (w @ (np.logaddexp(0.0, eta) - y * eta)))


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
    below ``tol`` (R's rule) or the Newton step is negligible. Raises ValueError on
    non-convergence and on (quasi-)perfect separation, where the MLE does not exist.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y01, classes = encode_binary(y)
    if y01.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows, y has {y01.shape[0]}")
    w = as_weights(weights, X.shape[0])
    wk, A, yk = keep_rows(w, X, y01)
    if fit_intercept:
        A = np.column_stack([np.ones(A.shape[0]), A])
    beta = np.zeros(A.shape[1])
    if fit_intercept:  # start at the weighted base rate: one Newton step closer
        pbar = float(np.clip(wk @ yk / wk.sum(), 1e-8, 1 - 1e-8))
        beta[0] = np.log(pbar / (1 - pbar))
    eta = A @ beta
    dev = _deviance(eta, yk, wk)
    dev_flat = False
    for it in range(1, max_iter + 1):
        # y - mu and mu(1 - mu) from expit(+-eta): no cancellation when mu is near 1.
        p_pos, p_neg = expit(eta), expit(-eta)
        resid = np.where(yk > 0.5, p_neg, -p_pos)
        hw = wk * p_pos * p_neg
        grad = A.T @ (wk * resid)
        step = solve_spd(A.T @ (A * hw[:, None]), grad)
        singular = step is None
        if singular:  # singular Hessian: separation or collinear columns
            sh = np.sqrt(hw)
            step = np.linalg.lstsq(A * sh[:, None], wk * resid / np.where(sh > 0, sh, 1.0), rcond=None)[0]
        # Step halving (as glm.fit) keeps the deviance from increasing.
        for _ in range(_MAX_HALVINGS):
            eta_new = A @ (beta + step)
            dev_new = _deviance(eta_new, yk, wk)
            if np.isfinite(dev_new) and dev_new <= dev * (1 + 1e-12) + 1e-12:
                break
            step = step / 2
        beta = beta + step
        eta, dev_old, dev = eta_new, dev, dev_new
        # Under separation the deviance flattens while the coefficients keep growing by
        # a constant step, so convergence also needs a step that is small relative to beta.
        dev_flat = abs(dev - dev_old) / (abs(dev) + 0.1) < tol
        small_step = np.max(np.abs(step)) <= np.sqrt(tol) * (np.max(np.abs(beta)) + 1.0)
        if dev_flat and small_step:
            break
    else:
        why = (
            "the deviance settled while coefficients kept growing: perfect or quasi-perfect separation"
            if dev_flat
            else "increase max_iter"
        )
        raise ValueError(f"logistic regression did not converge in {max_iter} iterations ({why})")
    # A Hessian singular although the design has full rank means rows with weights
    # mu(1 - mu) ~ 0 carry a direction: the fit is running off to infinity along it.
    diverged = singular and np.linalg.matrix_rank(A) == A.shape[1]
    if diverged or np.max(np.abs(eta)) > _ETA_MAX:
        raise ValueError(
            "perfect or quasi-perfect separation: fitted probabilities numerically 0 or 1, "
            "so the maximum-likelihood estimate does not exist"
        )
    return LogisticFit(beta, fit_intercept, classes, it, dev)


def predict_proba(fit: LogisticFit, X: Any) -> np.ndarray:
    """P(y = classes[1]) for each row."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    return expit(X @ fit.slopes + fit.intercept)


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


class LogisticParams(ModelParams):
    fit_intercept: bool = True
    max_iter: int = Field(100, ge=1)
    tol: float = Field(1e-10, gt=0)


@register_model
class LogisticKind(ModelKind):
    name = "logistic"
    Params = LogisticParams
    needs_target = True
    task_type = "classification"
    primary_metric = "accuracy"
    greater_is_better = True

    def check(self, params: LogisticParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if data.y is None:
            return [("data.target", data.target, "logistic needs a target column")]
        k = np.unique(np.asarray(data.y)).size
        if k != 2:
            return [("data.target", data.target, f"logistic needs 2 classes, found {k}")]
        n_coef = data.X.shape[1] + int(params.fit_intercept)
        if data.n < n_coef:
            return [("data", data.n, f"{data.n} rows cannot determine {n_coef} coefficients")]
        return []

    def fit(self, params: LogisticParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> LogisticFit:
        return fit_logistic(data.X, data.y, weights, params.fit_intercept, params.max_iter, params.tol)

    def outputs(self, params: LogisticParams, fitted: LogisticFit, data: Dataset) -> dict[str, float]:
        return coef_outputs(fitted.coef, fitted.fit_intercept, data.features)

    def score(
        self, params: LogisticParams, fitted: LogisticFit, data: Dataset, mask: np.ndarray | None
    ) -> dict[str, float]:
        m = row_mask(mask, data.n)
        y01 = (np.asarray(data.y)[m] == fitted.classes[1]).astype(np.float64)
        return classification_metrics(y01, predict_proba(fitted, data.X[m]))
