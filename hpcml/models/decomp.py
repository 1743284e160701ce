"""SVD (full, randomized, tall-skinny QR) and weighted PCA, and the ``svd`` and ``pca`` kinds.

Signs are fixed so that the largest-|.| entry of each right singular vector is positive:
results are reproducible and replicates comparable. A bootstrap weight vector w enters as
sqrt(w) row scaling, which has the same Gram matrix (hence the same singular values and
right vectors) as the resampled copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.models.linear import as_weights, keep_rows, row_mask

Method = Literal["full", "randomized", "tsqr"]


@dataclass
class SVDResult:
    U: np.ndarray  # (n, k)
    s: np.ndarray  # (k,) descending
    Vt: np.ndarray  # (k, p)


def _fix_signs(U: np.ndarray, s: np.ndarray, Vt: np.ndarray) -> SVDResult:
    j = np.argmax(np.abs(Vt), axis=1)
    sign = np.where(Vt[np.arange(Vt.shape[0]), j] < 0, -1.0, 1.0)
    return SVDResult(U * sign, s, Vt * sign[:, None])


def _tsqr(A: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Q, R of a tall A (n >= p) from QRs of row blocks, then a QR of the stacked Rs."""
    n, p = A.shape
    if n <= block_rows:
        return np.linalg.qr(A)
    blocks = [np.linalg.qr(A[s : s + block_rows]) for s in range(0, n, block_rows)]
    Rs = np.vstack([r for _, r in blocks])  # each block r is (min(rows, p), p)
    Q2, R = _tsqr(Rs, block_rows)
    out, off = [], 0
    for q, r in blocks:
        out.append(q @ Q2[off : off + r.shape[0]])
        off += r.shape[0]
    return np.vstack(out), R


def _randomized(X, k, rng, n_oversamples, n_iter):
    # Halko, Martinsson & Tropp (2011), alg. 4.4: subspace iteration with QR re-orthonormalisation.
    n, p = X.shape
    ell = min(k + n_oversamples, n, p)
    Q = np.linalg.qr(X @ rng.standard_normal((p, ell)))[0]
    for _ in range(n_iter):
        Q = np.linalg.qr(X.T @ Q)[0]
        Q = np.linalg.qr(X @ Q)[0]
    Ub, s, Vt = np.linalg.svd(Q.T @ X, full_matrices=False)
    return Q @ Ub, s, Vt


def svd(
    X: Any,
    k: int | None = None,
    method: str = "full",
    rng: np.random.Generator | None = None,
    n_oversamples: int = 10,
    n_iter: int = 4,
    block_rows: int | None = None,
) -> SVDResult:
    """Thin SVD of X truncated to k (None = min(n, p)) components, signs fixed.

    full: LAPACK gesdd. tsqr: exact, from row-block QRs (memory-friendly for tall X).
    randomized: approximate, for low-rank X and k << min(n, p); needs ``rng``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError("svd needs a 2-D array")
    n, p = X.shape
    r = min(n, p)
    k = r if k is None else int(k)
    if not 1 <= k <= r:
        raise ValueError(f"k={k} must be between 1 and min(n, p) = {r}")
    if method == "full":
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
    elif method == "tsqr":
        if n < p:  # TSQR wants tall input: factor X' and swap the roles of U and V
            t = svd(X.T, k, "tsqr", block_rows=block_rows)
            U, s, Vt = t.Vt.T, t.s, t.U.T
        else:
            Q, R = _tsqr(X, max(2 * p, block_rows or 4096))
            Ur, s, Vt = np.linalg.svd(R)
            U = Q @ Ur
    elif method == "randomized":
        if rng is None:
            raise ValueError("method='randomized' needs rng (a numpy Generator)")
        U, s, Vt = _randomized(X, k, rng, n_oversamples, n_iter)
    else:
        raise ValueError(f"unknown svd method {method!r}: full, randomized or tsqr")
    return _fix_signs(U[:, :k], s[:k], Vt[:k])


@dataclass
class PCAFit:
    mean: np.ndarray  # (p,) weighted mean
    components: np.ndarray  # (k, p) rows are principal axes
    singular_values: np.ndarray  # (k,) of the sqrt(w)-scaled centred data
    explained_variance: np.ndarray  # (k,) s^2 / (n_eff - 1)
    explained_variance_ratio: np.ndarray  # (k,) of the total variance
    n_eff: float

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    def transform(self, X: Any) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) @ self.components.T

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        return Z @ self.components + self.mean


def _k_for_variance(ratio: np.ndarray, variance: float) -> int:
    # Smallest k with cumulative ratio >= variance (a hair of slack for rounding at 1.0).
    cum = np.cumsum(ratio)
    return int(min(np.searchsorted(cum, variance * (1 - 1e-12), side="left") + 1, ratio.size))


def pca(
    X: Any,
    n_components: int | None = None,
    variance: float | None = None,
    method: str = "full",
    rng: np.random.Generator | None = None,
    weights: Any = None,
) -> PCAFit:
    """Weighted PCA. Give n_components, or variance (smallest k explaining that fraction),
    or neither (all components). Count weights reproduce PCA of the resampled copy."""
    if n_components is not None and variance is not None:
        raise ValueError("give n_components or variance, not both")
    X = np.asarray(X, dtype=np.float64)
    w = as_weights(weights, X.shape[0])
    wk, Xk = keep_rows(w, X)
    n_eff = float(wk.sum())
    if n_eff <= 1:
        raise ValueError("pca needs total weight > 1")
    mean = wk @ Xk / n_eff
    A = (Xk - mean) * np.sqrt(wk)[:, None]
    r = min(A.shape)
    total = float(np.sum(A * A))  # total variance * (n_eff - 1), independent of the method
    if n_components is not None and not 1 <= n_components <= r:
        raise ValueError(f"n_components={n_components} must be between 1 and min(n, p) = {r}")
    if method == "randomized" and variance is not None:
        # Double k until the leading components explain enough; avoids a full SVD.
        k = min(10, r)
        while True:
            res = svd(A, k, method, rng)
            if total == 0 or k == r or np.sum(res.s**2) / total >= variance * (1 - 1e-12):
                break
            k = min(2 * k, r)
    else:
        res = svd(A, n_components if method == "randomized" else None, method, rng)
    ratio = res.s**2 / total if total > 0 else np.zeros_like(res.s)
    k = n_components or (_k_for_variance(ratio, variance) if variance is not None else res.s.size)
    s = res.s[:k]
    return PCAFit(mean, res.Vt[:k], s, s**2 / (n_eff - 1), ratio[:k], n_eff)


def _recon_mse(X: np.ndarray, mean: np.ndarray | float, V: np.ndarray) -> float:
    if X.size == 0:
        return float("nan")
    Xc = X - mean
    return float(np.mean((Xc - (Xc @ V.T) @ V) ** 2))


class PCAParams(ModelParams):
    n_components: int | None = Field(None, ge=1)
    variance: float | None = Field(None, gt=0, le=1)
    method: Method = "full"

    @model_validator(mode="after")
    def _one_rule(self) -> "PCAParams":
        if self.n_components is not None and self.variance is not None:
            raise ValueError("give n_components or variance, not both")
        if self.n_components is None and self.variance is None:
            self.variance = 0.9
        return self


class SVDParams(ModelParams):
    k: int | None = Field(None, ge=1)
    method: Method = "full"


def _too_many(field: str, value: int | None, data: Dataset) -> list[tuple[str, Any, str]]:
    r = min(data.X.shape)
    if value is not None and value > r:
        return [(field, value, f"{field.split('.')[-1]}={value} exceeds min(n, p) = {r}")]
    return []


@register_model
class PCAKind(ModelKind):
    name = "pca"
    Params = PCAParams
    needs_target = False
    task_type = "decomposition"
    primary_metric = "reconstruction_mse"
    greater_is_better = False

    def check(self, params: PCAParams, data: Dataset) -> list[tuple[str, Any, str]]:
        return _too_many("model.n_components", params.n_components, data)

    def fit(self, params: PCAParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> PCAFit:
        return pca(data.X, params.n_components, params.variance, params.method, ctx.rng, weights)

    def outputs(self, params: PCAParams, fitted: PCAFit, data: Dataset) -> dict[str, float]:
        out = {"n_components": float(fitted.n_components)}
        cum = np.cumsum(fitted.explained_variance_ratio)
        for j in range(fitted.n_components):
            out[f"evr_{j + 1}"] = float(fitted.explained_variance_ratio[j])
            out[f"cum_evr_{j + 1}"] = float(cum[j])
            out[f"sv_{j + 1}"] = float(fitted.singular_values[j])
        return out

    def score(self, params: PCAParams, fitted: PCAFit, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        m = row_mask(mask, data.n)
        return {"reconstruction_mse": _recon_mse(data.X[m], fitted.mean, fitted.components)}

    def summarize_extra(self, job, ok, run_dir) -> dict[str, Any]:
        if not any(c.startswith("cum_evr_") for c in ok.columns):
            return {}
        return {"variance_thresholds": variance_thresholds(ok.iloc[0])}

    def plots(self, job, ok, summary, plot_dir) -> None:
        from hpcml.plots import scree

        row = ok.iloc[0]
        evr = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("evr_"))
        if evr:
            ks, ratios = zip(*evr)
            scree(ks, ratios, plot_dir / "scree.png")


def variance_thresholds(row) -> dict[str, int | None]:
    """Smallest k reaching 80/90/95 % explained variance (the seeds' rule of thumb)."""
    cum = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("cum_evr_"))
    return {f"k_{int(target * 100)}": next((k for k, v in cum if v >= target - 1e-12), None)
            for target in (0.8, 0.9, 0.95)}


@register_model
class SVDKind(ModelKind):
    name = "svd"
    Params = SVDParams
    needs_target = False
    task_type = "decomposition"
    primary_metric = "reconstruction_mse"
    greater_is_better = False

    def check(self, params: SVDParams, data: Dataset) -> list[tuple[str, Any, str]]:
        return _too_many("model.k", params.k, data)

    def fit(self, params: SVDParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> SVDResult:
        X = data.X
        if weights is not None:  # sqrt(w) rows: same singular values as the resampled copy
            w, X = keep_rows(as_weights(weights, data.n), X)
            X = X * np.sqrt(w)[:, None]
        return svd(X, params.k, params.method, ctx.rng)

    def outputs(self, params: SVDParams, fitted: SVDResult, data: Dataset) -> dict[str, float]:
        return {f"sv_{j + 1}": float(v) for j, v in enumerate(fitted.s)}

    def score(self, params: SVDParams, fitted: SVDResult, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        m = row_mask(mask, data.n)
        return {"reconstruction_mse": _recon_mse(data.X[m], 0.0, fitted.Vt)}
