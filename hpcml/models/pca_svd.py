"""Weighted PCA, and the ``svd`` and ``pca`` kinds (the SVD itself: ``hpcml.numerics.thin_svd``).

Every method first tries the Gram route on a tall matrix (``hpcml.numerics.gram``: one pass
over the data, taken only where the conditioning keeps the result within 1e-10 relative);
``method`` names the accurate route it falls back to. On the Gram route the rows are centred,
weighted and (for zero weights) skipped block by block, so a bootstrap or CV fit makes no
copy of the data; the fallback routes centre and weight a copy.

Signs are fixed so that the largest-|.| entry of each right singular vector is positive:
results are reproducible and replicates comparable. A bootstrap weight vector w enters as
sqrt(w) row scaling, which has the same Gram matrix (hence the same singular values and
right vectors) as the resampled copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from hpcml.models.artifacts import read_parquet_artifact, write_parquet_artifact
from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.numerics.gram import column_sd, eigh_desc, gram, gram_ok, row_blocks, standardized_gram
from hpcml.numerics.thin_svd import SVDResult, signs, svd, weighted_svd_gram
from hpcml.numerics.weights import as_weights, keep_rows, positive_rows, row_mask

Method = Literal["full", "randomized", "tsqr"]


@dataclass
class PCAFit:
    mean: np.ndarray  # (p,) weighted mean
    components: np.ndarray  # (k, p) rows are principal axes (prcomp's rotation, transposed)
    singular_values: np.ndarray  # (k,) of the sqrt(w)-scaled centred (and scaled) data
    explained_variance: np.ndarray  # (k,) s^2 / (n_eff - 1): prcomp's sdev^2
    explained_variance_ratio: np.ndarray  # (k,) of the total variance
    n_eff: float
    scale: np.ndarray | None = None  # (p,) column sds when scaled (prcomp(scale. = TRUE))
    # Every component the method computed (full, tsqr: all; randomized: the kept ones), for
    # the scree plot and the k reaching 80/90/95 % whatever was kept.
    all_singular_values: np.ndarray | None = None
    all_ratio: np.ndarray | None = None
    route: str = "svd"  # "gram" where the Gram route was taken

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    @property
    def sdev(self) -> np.ndarray:
        """prcomp's ``sdev`` of the kept components."""
        return np.sqrt(self.explained_variance)

    def _standardise(self, X: Any) -> np.ndarray:
        Xc = np.asarray(X, dtype=np.float64) - self.mean
        return Xc / self.scale if self.scale is not None else Xc

    def transform(self, X: Any) -> np.ndarray:
        """Scores (prcomp's ``x``)."""
        return self._standardise(X) @ self.components.T

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        out = Z @ self.components
        return (out * self.scale if self.scale is not None else out) + self.mean


def k_for_variance(ratio: np.ndarray, variance: float) -> int:
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
    scale: bool = False,
) -> PCAFit:
    """Weighted PCA. Give n_components, or variance (smallest k explaining that fraction),
    or neither (all components, as prcomp). ``scale``: each column divided by its standard
    deviation (n - 1 denominator) first, as ``prcomp(scale. = TRUE)``. Count weights
    reproduce PCA of the resampled copy."""
    if n_components is not None and variance is not None:
        raise ValueError("give n_components or variance, not both")
    X = np.asarray(X, dtype=np.float64)  # float64 data (a mapped file): no copy
    w = as_weights(weights, X.shape[0])
    rows = positive_rows(w)  # the rows taken, block by block: X[rows] is not copied
    wk = w if rows is None else w[rows]
    n_eff = float(wk.sum())
    if n_eff <= 1:
        raise ValueError("pca needs total weight > 1")
    mean = w @ X / n_eff  # zero weights add nothing
    nk, p = wk.size, X.shape[1]
    r = min(nk, p)
    if n_components is not None and not 1 <= n_components <= r:
        raise ValueError(f"n_components={n_components} must be between 1 and min(n, p) = {r}")
    sw = None if np.all(wk == 1.0) else np.sqrt(wk)
    if nk >= 2 * p:
        fit = _pca_gram(X, rows, mean, sw, n_eff, scale, n_components, variance, method)
        if fit is not None:
            return fit
    # The Gram route would not be accurate: SVD of the centred, weighted rows (a copy).
    Xk = X if rows is None else X[rows]
    A = (Xk - mean) * np.sqrt(wk)[:, None]
    sd = None
    if scale:
        sd = column_sd(np.sum(A * A, axis=0), n_eff - 1)
        A = A / sd
    total = float(np.sum(A * A))  # total variance * (n_eff - 1), independent of the method
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
    k = n_components or (k_for_variance(ratio, variance) if variance is not None else res.s.size)
    s = res.s[:k]
    return PCAFit(mean, res.Vt[:k], s, s**2 / (n_eff - 1), ratio[:k], n_eff, sd, res.s, ratio)


def _pca_gram(X, rows, mean, sw, n_eff, scale, n_components, variance, method) -> PCAFit | None:
    """PCA from the eigen-decomposition of the centred (weighted, scaled) Gram matrix of
    X[rows] (centred and weighted block by block), or None where it would not be accurate to
    1e-10 for every component returned (full and tsqr return all of them, for the scree;
    randomized the kept ones)."""
    G = gram(X, mean, sw, rows)
    sd = None
    if scale:
        G, sd = standardized_gram(G, n_eff - 1)
    lam, V = eigh_desc(G)
    total = float(np.trace(G))
    ratio = lam / total if total > 0 else np.zeros_like(lam)
    k = n_components or (k_for_variance(ratio, variance) if variance is not None else lam.size)
    computed = k if method == "randomized" else lam.size
    if not gram_ok(lam, computed, lam.size):
        return None
    s_all = np.sqrt(lam[:computed])
    Vt = V[:, :k].T
    return PCAFit(mean, Vt * signs(Vt)[:, None], s_all[:k], lam[:k] / (n_eff - 1), ratio[:k], n_eff, sd,
                  s_all, ratio[:computed], "gram")


def _recon_mse(X: np.ndarray, mask: np.ndarray, mean: np.ndarray | float, V: np.ndarray,
               scale: np.ndarray | None = None) -> float:
    """Mean squared error of the rank-k reconstruction of X[mask] (standardised when ``scale``),
    row block by row block: neither X[mask] nor its centred copy is stored."""
    rows = None if mask.all() else np.flatnonzero(mask)
    count = X.shape[0] if rows is None else rows.size
    if count == 0 or X.shape[1] == 0:
        return float("nan")
    total = 0.0
    for _, _, B in row_blocks(X, rows):
        Bc = B - mean
        if scale is not None:
            Bc /= scale
        Bc -= (Bc @ V.T) @ V
        total += float(np.einsum("ij,ij->", Bc, Bc))
    return total / (count * X.shape[1])


class PCAParams(ModelParams):
    n_components: int | None = Field(None, ge=1)
    variance: float | None = Field(None, gt=0, le=1)
    method: Method = "full"
    scale: bool = False

    @model_validator(mode="after")
    def _one_rule(self) -> "PCAParams":
        # Neither: every component, as prcomp and R's hpcml_pca.
        if self.n_components is not None and self.variance is not None:
            raise ValueError("give n_components or variance, not both")
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
    runs_in_driver = True
    needs_target = False
    task_type = "decomposition"
    primary_metric = "reconstruction_mse"
    greater_is_better = False

    def check(self, params: PCAParams, data: Dataset) -> list[tuple[str, Any, str]]:
        return _too_many("model.n_components", params.n_components, data)

    def fit(self, params: PCAParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> PCAFit:
        return pca(data.X, params.n_components, params.variance, params.method, ctx.rng, weights, params.scale)

    def save_whole_data_files(self, params: PCAParams, fitted: PCAFit, data: Dataset, folder: Path) -> None:
        write_pca_artifacts(folder, fitted, data)

    def outputs(self, params: PCAParams, fitted: PCAFit, data: Dataset) -> dict[str, float]:
        # Every computed component (the scree and the k for 80/90/95 % need them all);
        # n_components says how many are kept (used by transform and the reconstruction).
        out = {"n_components": float(fitted.n_components)}
        ratio = fitted.all_ratio if fitted.all_ratio is not None else fitted.explained_variance_ratio
        sv = fitted.all_singular_values if fitted.all_singular_values is not None else fitted.singular_values
        cum = np.cumsum(ratio)
        for j in range(ratio.size):
            out[f"evr_{j + 1}"] = float(ratio[j])
            out[f"cum_evr_{j + 1}"] = float(cum[j])
            out[f"sv_{j + 1}"] = float(sv[j])
        return out

    def score(self, params: PCAParams, fitted: PCAFit, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        m = row_mask(mask, data.n)
        return {"reconstruction_mse": _recon_mse(data.X, m, fitted.mean, fitted.components, fitted.scale)}

    def summarize_extra(self, job, ok, run_dir) -> dict[str, Any]:
        """k for 80/90/95 % explained variance."""
        return {"variance_thresholds": variance_thresholds(ok.iloc[0])} \
            if any(c.startswith("cum_evr_") for c in ok.columns) else {}

    def whole_data_summary(self, params: PCAParams, fit) -> dict[str, Any]:
        """prcomp's sdev and rotation (loadings), from the fit's saved files."""
        folder = fit.folder
        if folder is None or not (folder / "loadings.parquet").exists():
            return {}
        import pyarrow.parquet as pq  # only a fit of the whole data has these files

        path = folder / "loadings.parquet"
        loadings = read_parquet_artifact(path).set_index("feature")
        scores = path.with_name("scores.parquet")
        n = pq.ParquetFile(scores).metadata.num_rows
        row = fit.record
        sdev = [float(row[f"sv_{j + 1}"]) / np.sqrt(n - 1) for j in range(loadings.shape[1])]
        return {"sdev": sdev,
                "loadings": [{"feature": str(f), **{c: float(v) for c, v in r.items()}} for f, r in loadings.iterrows()],
                "scores_file": str(scores.relative_to(fit.run_dir))}

    def plots(self, job, ok, summary, plot_dir) -> None:
        from hpcml.report.plots import scree  # matplotlib loads only where a run draws

        row = ok.iloc[0]
        evr = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("evr_"))
        if evr:
            ks, ratios = zip(*evr)
            scree(ks, ratios, plot_dir / "scree.png", int(row.get("n_components", len(ks))))

    def whole_data_plots(self, params: PCAParams, fit, plot_dir) -> None:
        """The biplot of the first two components, from the fit's saved files."""
        folder = fit.folder
        if folder is None or not (folder / "loadings.parquet").exists():
            return
        from hpcml.report.plots import biplot  # matplotlib loads only where a run draws

        row = fit.record
        evr = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("evr_"))
        loadings = read_parquet_artifact(folder / "loadings.parquet").set_index("feature")
        if loadings.shape[1] >= 2:
            # only the two components drawn: the digits' scores file has 64
            scores = read_parquet_artifact(folder / "scores.parquet", columns=list(loadings.columns[:2]))
            biplot(scores.to_numpy()[:, :2], loadings.to_numpy()[:, :2], list(loadings.index),
                   plot_dir / "biplot.png", [r for _, r in evr[:2]])


def write_pca_artifacts(scratch: Path, fitted: PCAFit, data: Dataset) -> None:
    """``loadings.parquet`` (one row per feature, columns PC1..PCk: prcomp's rotation) and
    ``scores.parquet`` (one row per data row, the same columns: prcomp's x)."""
    import pandas as pd

    names = [f"PC{j + 1}" for j in range(fitted.n_components)]
    loadings = pd.DataFrame(fitted.components.T, columns=names)
    loadings.insert(0, "feature", [str(f) for f in data.features])
    write_parquet_artifact(scratch / "loadings.parquet", loadings)
    write_parquet_artifact(scratch / "scores.parquet", pd.DataFrame(fitted.transform(data.X), columns=names))

def variance_thresholds(row) -> dict[str, int | None]:
    """Smallest k reaching 80/90/95 % explained variance (the seeds' rule of thumb)."""
    cum = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("cum_evr_"))
    return {f"k_{int(target * 100)}": next((k for k, v in cum if v >= target - 1e-12), None)
            for target in (0.8, 0.9, 0.95)}


@register_model
class SVDKind(ModelKind):
    name = "svd"
    Params = SVDParams
    runs_in_driver = True
    needs_target = False
    task_type = "decomposition"
    primary_metric = "reconstruction_mse"
    greater_is_better = False

    def check(self, params: SVDParams, data: Dataset) -> list[tuple[str, Any, str]]:
        return _too_many("model.k", params.k, data)

    def fit(self, params: SVDParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> SVDResult:
        X = data.X
        if weights is not None:  # sqrt(w) rows: same singular values as the resampled copy
            w = as_weights(weights, data.n)
            fast = weighted_svd_gram(np.asarray(X, dtype=np.float64), w, params.k)
            if fast is not None:
                return fast
            w, X = keep_rows(w, X)  # ill-conditioned for the Gram route: a scaled copy
            X = X * np.sqrt(w)[:, None]
        return svd(X, params.k, params.method, ctx.rng)

    def outputs(self, params: SVDParams, fitted: SVDResult, data: Dataset) -> dict[str, float]:
        return {f"sv_{j + 1}": float(v) for j, v in enumerate(fitted.s)}

    def score(self, params: SVDParams, fitted: SVDResult, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        m = row_mask(mask, data.n)
        return {"reconstruction_mse": _recon_mse(data.X, m, 0.0, fitted.Vt)}
