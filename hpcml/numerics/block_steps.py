"""What one unit of rows contributes to a global fit: arrays in, statistics out.

Each step takes the unit's features ``X`` (float64), its target values ``y`` (as read, or
None), where the unit starts and stops in the data set, the pass's ``state`` (the current
coefficients, centres, means) and the job seed, and returns statistics whose names say how
they combine (``block_stats``). Every step also counts its rows (``sum_n``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hpcml.numerics.block_stats import tree, units
from hpcml.numerics.counter_draws import SAMPLE_STREAM, poisson_weights, sampled_rows
from hpcml.numerics.irls import deviance_terms, working

Step = Callable[..., dict[str, np.ndarray]]
STEPS: dict[str, Step] = {}


def step(name: str):
    def register(func: Step) -> Step:
        STEPS[name] = func
        return func
    return register


def _design(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    return np.hstack([np.ones((X.shape[0], 1)), X]) if fit_intercept else X


def _r(A: np.ndarray) -> np.ndarray:
    return np.linalg.qr(A, mode="r")


@step("scan")
def scan(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """Column sums (means) and, for a classifier, the target's distinct values."""
    out = {"sum_x": X.sum(axis=0)}
    if state.get("labels"):
        out["set_y"] = np.unique(y)
    return out


@step("ols_qr")
def ols_qr(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """R of the design with the response as its last column: coefficients and RSS in one."""
    return {"qr_r": _r(np.hstack([_design(X, state["fit_intercept"]), y.astype(np.float64)[:, None]]))}


def positive_class(y: np.ndarray, classes: list) -> np.ndarray:
    """1.0 where the target is the second (larger) class."""
    return (y == np.asarray(classes, dtype=y.dtype)[1]).astype(np.float64)


@step("irls")
def irls(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """At the coefficients ``beta``: the deviance, the count of the positive class, and the R
    of [sqrt(w) D, r / sqrt(w)], whose triangular solve is the Newton step (w = mu (1 - mu),
    r = y - mu): the weighted least squares of glm.fit's IRLS, by QR as R does it."""
    D = _design(X, state["fit_intercept"])
    y01 = positive_class(y, state["classes"])
    eta = D @ np.asarray(state["beta"], dtype=np.float64)
    ones = np.ones_like(eta)
    dev, e = deviance_terms(eta, y01, ones)  # the single-node IRLS's own, overflow-safe terms
    resid, hw = working(eta, e, y01, ones)
    sw = np.sqrt(hw)
    z = np.divide(resid, sw, out=np.zeros_like(resid), where=sw > 0)
    return {"sum_dev": np.array([dev]), "sum_y1": np.array([y01.sum()]),
            "qr_r": _r(np.hstack([D * sw[:, None], z[:, None]]))}


@step("centred_gram")
def centred_gram(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """The Gram matrix of the rows less the column means (PCA of wide data: pbdR's crossprod)."""
    A = X - np.asarray(state["mean"], dtype=np.float64)
    return {"sum_gram": A.T @ A}


@step("centred_qr")
def centred_qr(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """R of the rows less the column means (PCA's TSQR)."""
    return {"qr_r": _r(X - np.asarray(state["mean"], dtype=np.float64))}


def nearest(X: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centre (the first of equals) and its exact squared distance."""
    d2 = np.stack([np.einsum("ij,ij->i", X - c, X - c) for c in centres], axis=1)
    labels = np.argmin(d2, axis=1)
    return labels, d2[np.arange(X.shape[0]), labels]


@step("kmeans_sample")
def kmeans_sample(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """A Bernoulli sample of the rows, the same rows whatever the blocks (k-means' start)."""
    rows = sampled_rows(seed, SAMPLE_STREAM, start, stop, state["rate"])
    return {"cat_rows": X[rows - start], "cat_index": rows.astype(np.int64)}


@step("lloyd")
def lloyd(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """One Lloyd pass: each cluster's row count and sum, the inertia, and the total sum of
    squares about the data's mean (Calinski-Harabasz)."""
    centres = np.asarray(state["centres"], dtype=np.float64)
    labels, d2 = nearest(X, centres)
    k, p = centres.shape
    sums = np.zeros((k, p))
    np.add.at(sums, labels, X)
    mean = np.asarray(state["mean"], dtype=np.float64)
    return {"sum_count": np.bincount(labels, minlength=k).astype(np.float64), "sum_sums": sums,
            "sum_inertia": np.array([d2.sum()]), "sum_tss": np.array([np.sum((X - mean) ** 2)])}


@step("poisson_gram")
def poisson_gram(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """For each bootstrap replicate of ``replicates``: the Poisson-weighted Gram matrix of
    [D, y], all replicates in one matrix product (weights G x rows times the rows' column
    products)."""
    A = np.hstack([_design(X, state["fit_intercept"]), y.astype(np.float64)[:, None]])
    first, last = state["replicates"]
    W = np.stack([poisson_weights(seed, r, start, stop) for r in range(first, last)]).astype(np.float64)
    q = A.shape[1]
    products = (A[:, :, None] * A[:, None, :]).reshape(A.shape[0], q * q)
    return {"sum_gram": (W @ products).reshape(len(W), q, q)}


@step("poisson_irls")
def poisson_irls(X, y, start, stop, state, seed) -> dict[str, np.ndarray]:
    """For each bootstrap replicate of ``replicates``, at its own coefficients (``betas``): the
    Poisson-weighted deviance, score and information of the logistic likelihood."""
    D = _design(X, state["fit_intercept"])
    y01 = positive_class(y, state["classes"])
    first, last = state["replicates"]
    W = np.stack([poisson_weights(seed, r, start, stop) for r in range(first, last)]).astype(np.float64)
    eta = D @ np.asarray(state["betas"], dtype=np.float64).T  # rows x replicates
    e = np.exp(-np.abs(eta))
    terms = np.log1p(e) + np.maximum(eta, 0.0) - y01[:, None] * eta
    mu = np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    Wt = W.T  # rows x replicates
    return {"sum_dev": 2.0 * np.sum(Wt * terms, axis=0), "sum_score": ((y01[:, None] - mu) * Wt).T @ D,
            "sum_info": np.einsum("ng,ni,nj->gij", Wt * mu * (1.0 - mu), D, D, optimize=True)}


def unit_stats(name: str, X: np.ndarray, y: np.ndarray | None, start: int, stop: int, state: dict[str, Any],
               seed: int) -> dict[str, np.ndarray]:
    out = STEPS[name](X, y, start, stop, state, seed)
    out["sum_n"] = np.array([float(stop - start)])
    return out


def block_statistics(name: str, X: np.ndarray, y: np.ndarray | None, start: int, state: dict[str, Any],
                     seed: int) -> dict[str, np.ndarray]:
    """The statistics of the rows [start, start + len(X)), unit by unit up the fixed tree."""
    return tree(unit_stats(name, X[a - start:b - start], None if y is None else y[a - start:b - start], a, b, state,
                           seed) for a, b in units(start, start + X.shape[0]))
