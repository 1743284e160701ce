"""Weighted k-means (k-means++ seeding, Lloyd iterations, best of n_init), and the ``kmeans`` kind.

Nearest centers use ||c||^2 - 2 x.c over cache-sized row blocks, so memory stays at a
block of k floats per row whatever n is; a Lloyd step needs no distances, and the inertia
uses the exact ||x - c||^2 of each row to its center. With tol 0 the Lloyd passes are
scikit-learn's (distances, argmin and sums in one compiled, OpenMP pass). scikit-learn centres
its input in place, so each restart hands it one copy of the rows with positive weight (its
own copy is skipped: ``copy_x=False``); seeding, means, labels and inertia read the data
itself, block by block, never a resampled copy. All randomness comes from the caller's Generator: same state, same result.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
import warnings

import numpy as np
from pydantic import Field
from scipy import sparse
from scipy.linalg import blas
# Imported with the kind, so the workers' thread limits (threads_per_task) also cover the
# OpenMP pool of scikit-learn's k-means.
from sklearn.cluster import KMeans

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.models.artifacts import write_parquet_artifact
from hpcml.numerics.gram import row_blocks
from hpcml.numerics.weights import as_weights, positive_rows, row_mask

_CACHE_FLOATS = 1 << 15  # 256 KB of distances per row block: they stay in cache


@dataclass
class KMeansFit:
    centers: np.ndarray  # (k, p), rows in lexicographic order of their coordinates
    labels: np.ndarray  # (n,) index into centers (zero-weight rows are assigned too)
    inertia: float  # weighted sum of squared distances to the assigned center
    n_iter: int  # Lloyd iterations of the best restart
    converged: bool
    sizes: np.ndarray | None = None  # (k,) weighted rows per cluster (counts: the resampled copy's)


def _nearest(xb: np.ndarray, centers_f: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Index of each row's nearest center: argmin of ||c||^2 - 2 x.c (||x||^2 is common)."""
    # SciPy's dgemm with -2 folded in; xb' and centers_f are Fortran-ordered, so nothing is
    # copied and (k, rows)' comes out C-ordered for the row-wise argmin.
    dist = blas.dgemm(-2.0, centers_f, xb.T).T
    dist += c2
    return np.argmin(dist, axis=1)


def _blocks(n: int, width: int):
    """Row blocks whose (rows, width) temporaries stay in cache (~256 KB)."""
    step = max(1, _CACHE_FLOATS // max(width, 1))
    return ((s, s + step) for s in range(0, n, step))


def labels_of(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Nearest center of each row (no distances), computed in cache-sized row blocks."""
    labels = np.empty(X.shape[0], dtype=np.intp)
    c2 = np.einsum("ij,ij->i", centers, centers)
    centers_f = np.asfortranarray(centers)
    for a, b in _blocks(X.shape[0], centers.shape[0]):
        labels[a:b] = _nearest(X[a:b], centers_f, c2)
    return labels


def sq_dist_to(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Exact squared distance of each row to its center (the expanded form cancels near 0)."""
    d2 = np.empty(X.shape[0])
    for a, b in _blocks(X.shape[0], X.shape[1]):
        diff = X[a:b] - centers[labels[a:b]]
        d2[a:b] = np.einsum("ij,ij->i", diff, diff)
    return d2


def assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of each row and its exact squared distance, computed in row chunks."""
    labels = labels_of(X, centers)
    return labels, sq_dist_to(X, centers, labels)


def calinski_harabasz_ratio(between: float, within: float, n: int, k: int) -> float:
    """The Calinski-Harabasz index from the between- and within-cluster sums of squares of
    ``n`` rows in ``k`` non-empty clusters, as scikit-learn defines it (1 when within is 0);
    NaN with fewer than two clusters or no more rows than clusters."""
    if k < 2 or n <= k:
        return float("nan")
    return 1.0 if within == 0.0 else between * (n - k) / (within * (k - 1))


def calinski_harabasz(X: np.ndarray, rows: np.ndarray | None, labels: np.ndarray, k: int) -> float:
    """The Calinski-Harabasz index (scikit-learn's ``calinski_harabasz_score``) of rows ``rows``
    of ``X`` (all when None) with cluster ``labels``, read in row blocks: between- over
    within-cluster dispersion, each per degree of freedom. NaN with fewer than two clusters
    among the rows or no more rows than clusters."""
    n = labels.size
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    present = int((counts > 0).sum())
    if present < 2 or n <= present:
        return float("nan")
    sums = np.zeros((k, X.shape[1]))
    start = 0
    for _, _, B in row_blocks(X, rows):
        np.add.at(sums, labels[start:start + B.shape[0]], B)
        start += B.shape[0]
    means = sums / np.maximum(counts, 1.0)[:, None]
    centre = sums.sum(axis=0) / n
    between = float((counts * ((means - centre) ** 2).sum(axis=1)).sum())
    within, start = 0.0, 0
    for _, _, B in row_blocks(X, rows):  # a second pass: no cancellation of large sums of squares
        within += float(((B - means[labels[start:start + B.shape[0]]]) ** 2).sum())
        start += B.shape[0]
    return calinski_harabasz_ratio(between, within, n, present)


def _kmeanspp(X: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (as scikit-learn): each step keeps the best of 2 + log k D^2 draws."""
    n, n_trials = X.shape[0], 2 + int(np.log(k))
    x2 = np.einsum("ij,ij->i", X, X)

    def draw(prob: np.ndarray, size: int) -> np.ndarray:
        cum = np.cumsum(prob)
        if not cum[-1] > 0:  # all mass on existing centers: draw among weighted rows
            cum = np.cumsum(w > 0, dtype=np.float64)
        idx = np.searchsorted(cum, rng.random(size) * cum[-1], side="right")
        return np.minimum(idx, n - 1)

    def sqdist(rows: np.ndarray) -> np.ndarray:  # (len(rows), n), clipped at 0
        d = blas.dgemm(-2.0, X.T, X[rows].T, trans_a=1).T  # X' Fortran-ordered: no copy
        d += x2[rows][:, None]
        d += x2[None, :]
        return np.maximum(d, 0.0, out=d)

    first = draw(w, 1)[0]
    centers = [first]
    closest = sqdist(np.array([first]))[0]
    for _ in range(1, k):
        cand = draw(w * closest, n_trials)
        cand_closest = np.minimum(closest, sqdist(cand))
        best = int(np.argmin(cand_closest @ w))
        centers.append(cand[best])
        closest = cand_closest[best]
    return X[np.array(centers)].copy()


def _weighted_means(X: np.ndarray, w: np.ndarray, labels: np.ndarray, k: int,
                    rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums and masses of the clusters of X[rows] (``w``, ``labels``: one per row
    taken; rows None: all), the listed rows gathered one block at a time."""
    def onehot_sums(B, wb, lb):  # column i holds w_i in row labels[i]: built as CSC directly
        return np.asarray(sparse.csc_matrix((wb, lb, np.arange(B.shape[0] + 1)), shape=(k, B.shape[0])) @ B)

    if rows is None:
        sums = onehot_sums(X, w, labels)
    else:
        sums = np.zeros((k, X.shape[1]))
        for a, b, B in row_blocks(X, rows):
            sums += onehot_sums(B, w[a:b], labels[a:b])
    mass = np.bincount(labels, weights=w, minlength=k)
    return sums, mass


def _rows_labels_d2(X: np.ndarray, rows: np.ndarray | None, centers: np.ndarray,
                    labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels (the nearest centers, unless given) and exact squared distances of X[rows],
    the listed rows gathered one block at a time."""
    if rows is None:
        labels = labels_of(X, centers) if labels is None else labels
        return labels, sq_dist_to(X, centers, labels)
    d2 = np.empty(rows.size)
    out = np.empty(rows.size, dtype=np.intp) if labels is None else labels
    for a, b, B in row_blocks(X, rows):
        if labels is None:
            out[a:b] = labels_of(B, centers)
        d2[a:b] = sq_dist_to(B, centers, out[a:b])
    return out, d2


def _lloyd(X, w, centers, max_iter, tol_abs) -> tuple[np.ndarray, np.ndarray | None, int, bool]:
    """(centers, their labels if the run ended at a fixed point else None, iterations, converged)."""
    k = centers.shape[0]
    labels_old = None
    for it in range(1, max_iter + 1):
        labels = labels_of(X, centers)
        if labels_old is not None and np.array_equal(labels, labels_old):
            return centers, labels, it - 1, True  # assignments stable: a fixed point
        sums, mass = _weighted_means(X, w, labels, k)
        new = centers.copy()
        full = mass > 0
        new[full] = sums[full] / mass[full, None]
        # An empty cluster restarts at the (weighted) rows farthest from their centers.
        empty = np.flatnonzero(~full)
        if empty.size:  # (distances only then: a Lloyd step needs none)
            d2 = sq_dist_to(X, centers, labels)
            far = np.argsort(-(d2 * (w > 0)), kind="stable")[: empty.size]
            new[empty] = X[far]
        shift = float(np.sum((new - centers) ** 2))
        centers, labels_old = new, labels
        if shift <= tol_abs:
            return centers, None, it, True
    return centers, None, max_iter, False


def _lloyd_sklearn(X, w, centers, max_iter, data, rows) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Lloyd with tol 0 by scikit-learn's compiled pass: (centers, their labels, iterations, converged).

    scikit-learn stops when the labels repeat and counts that pass; hpcml counts the mean
    updates, so it runs one pass more than ``max_iter``: stopping after that pass means no
    fixed point within ``max_iter``, and its last mean step is ``_lloyd``'s final one. At a
    fixed point the centers are recomputed as the means of the partition, so they do not
    depend on scikit-learn's thread count. An empty cluster restarts at the row farthest
    from its center, which leaves its old cluster (scikit-learn's rule).

    ``X`` is the caller's private copy of ``data[rows]``: scikit-learn centres it in place
    (``copy_x=False``; it would otherwise make a copy of its own) and adds the mean back,
    so X's last bits may change; the means are taken from ``data`` itself.
    """
    with warnings.catch_warnings():  # fewer distinct rows than k: the caller's data, not an error
        warnings.simplefilter("ignore")
        fit = KMeans(centers.shape[0], init=centers, n_init=1, max_iter=max_iter + 1, tol=0.0,
                     algorithm="lloyd", copy_x=False).fit(X, sample_weight=w)
    labels, centers = fit.labels_.astype(np.intp), fit.cluster_centers_
    if fit.n_iter_ > max_iter:
        return centers, labels, max_iter, False
    sums, mass = _weighted_means(data, w, labels, centers.shape[0], rows)
    full = mass > 0
    centers[full] = sums[full] / mass[full, None]
    return centers, labels, fit.n_iter_ - 1, True


def kmeans(
    X: Any,
    k: int,
    rng: np.random.Generator,
    weights: Any = None,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 0.0,
    init: Any = None,
) -> KMeansFit:
    """Weighted k-means; keeps the restart with the lowest inertia.

    With ``tol = 0`` (default) Lloyd runs until no row changes cluster, as R's ``kmeans``
    (algorithm "Lloyd"), so the centers are the means of their clusters. A positive ``tol``
    is relative, as in scikit-learn: Lloyd may stop once the summed squared center shift is
    below tol times the mean (weighted) per-feature variance of X; the centers are then
    recomputed once as the means of the final partition, so they are its means either way.
    ``init`` (k x p starting centers) replaces k-means++ and makes it one run (n_init unused).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)  # float64 C-ordered (a mapped file): no copy
    w = as_weights(weights, X.shape[0])
    rows = positive_rows(w)  # rows of weight 0 are left out
    wk = w if rows is None else w[rows]
    if k > wk.size:
        raise ValueError(f"k={k} exceeds the number of rows with positive weight ({wk.size})")
    if init is not None and np.shape(init) != (k, X.shape[1]):
        raise ValueError(f"init has shape {np.shape(init)}, expected ({k}, {X.shape[1]})")
    tol_abs = 0.0
    if tol > 0:  # (a pass over the data that tol = 0 does not need), block by block
        mean = w @ X / wk.sum()
        ss = sum(wk[a:b] @ (B - mean) ** 2 for a, b, B in row_blocks(X, rows))
        tol_abs = tol * float(np.mean(ss / wk.sum()))
    best = None
    for _ in range(n_init if init is None else 1):
        # The rows taken: scikit-learn's Lloyd (tol 0) centres them in place, so it gets one
        # restart's copy of them (it would copy them itself otherwise), freed before the next
        # restart; hpcml's own (tol > 0) only reads them, so all rows are X itself, no copy.
        Xk = X[rows] if rows is not None else np.array(X) if tol == 0 else X
        start = _kmeanspp(Xk, wk, k, rng) if init is None else np.array(init, dtype=np.float64)
        if tol > 0:
            centers, fixed, n_iter, conv = _lloyd(Xk, wk, start, max_iter, tol_abs)
        else:  # (the labels always come with their centers: no mean step is left)
            centers, fixed, n_iter, conv = _lloyd_sklearn(Xk, wk, start, max_iter, X, rows)
        del Xk
        lab, d2 = _rows_labels_d2(X, rows, centers, fixed)
        inertia = float(wk @ d2)
        if best is None or inertia < best[0]:  # strict: the first of equals wins
            best = (inertia, centers, lab, fixed is not None, n_iter, conv)
    inertia, centers, lab, at_fixed_point, n_iter, conv = best
    if not at_fixed_point:
        # The centers as the means of the partition they define (after a fixed point they
        # are already, bit for bit; after an early stop by tol, one more mean step).
        sums, mass = _weighted_means(X, wk, lab, k, rows)
        full = mass > 0
        centers = centers.copy()
        centers[full] = sums[full] / mass[full, None]
        lab, d2 = _rows_labels_d2(X, rows, centers)
        inertia = float(wk @ d2)
    # Canonical order (lexicographic in the coordinates) makes replicates comparable.
    centers = centers[np.lexsort(centers.T[::-1])]
    labels = labels_of(X, centers)
    sizes = np.bincount(labels, weights=w, minlength=k)
    return KMeansFit(centers, labels, inertia, n_iter, conv, sizes)


class KMeansParams(ModelParams):
    k: int = Field(3, ge=1)
    n_init: int = Field(10, ge=1)
    max_iter: int = Field(300, ge=1)
    tol: float = Field(0.0, ge=0)


@register_model
class KMeansKind(ModelKind):
    name = "kmeans"
    Params = KMeansParams
    runs_in_driver = True
    needs_target = False
    task_type = "clustering"
    primary_metric = "inertia"
    greater_is_better = False

    def check(self, params: KMeansParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if params.k > data.n:
            return [("model.k", params.k, f"k={params.k} exceeds the number of rows ({data.n})")]
        return []

    def fit(self, params: KMeansParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> KMeansFit:
        return kmeans(data.X, params.k, ctx.rng, weights, params.n_init, params.max_iter, params.tol)

    def save_whole_data_files(self, params: KMeansParams, fitted: KMeansFit, data: Dataset, folder: Path) -> None:
        """Each row's cluster (1..k, the order of center_<j>), as R's ``$cluster``."""
        import pandas as pd

        write_parquet_artifact(folder / "clusters.parquet", pd.DataFrame({"cluster": fitted.labels.astype(np.int32) + 1}))

    def outputs(self, params: KMeansParams, fitted: KMeansFit, data: Dataset) -> dict[str, float]:
        out = {"inertia": float(fitted.inertia), "n_iter": float(fitted.n_iter)}
        for j, c in enumerate(fitted.centers, start=1):
            out.update({f"center_{j}_{f}": float(v) for f, v in zip(data.features, c)})
        if fitted.sizes is not None:
            out.update({f"size_{j}": float(v) for j, v in enumerate(fitted.sizes, start=1)})
        return out

    def whole_data_summary(self, params: KMeansParams, fit) -> dict[str, Any]:
        """The cluster sizes and where each row's cluster is saved."""
        row = fit.record
        sizes = [int(row[f"size_{j}"]) for j in range(1, params.k + 1) if f"size_{j}" in row]
        return {"sizes": sizes, "clusters_file": f"{fit.files}/clusters.parquet"}

    def score(self, params: KMeansParams, fitted: KMeansFit, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        """Inertia of the scored rows, and their Calinski-Harabasz index (rows labelled by the
        fitted centres): inertia always falls as k grows, the index compares different k."""
        m = row_mask(mask, data.n)
        rows = None if m.all() else np.flatnonzero(m)
        X = np.asarray(data.X, dtype=np.float64)
        inertia, count = 0.0, data.n if rows is None else rows.size
        labels = []
        for _, _, B in row_blocks(X, rows):  # no copy of X[m]
            lab, d2 = assign(np.ascontiguousarray(B), fitted.centers)
            inertia += float(d2.sum())
            labels.append(lab)
        labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        return {"inertia": inertia, "mean_sq_dist": inertia / count if count else float("nan"),
                "calinski_harabasz": calinski_harabasz(X, rows, labels, len(fitted.centers))}

    def sweep_metric(self, params: KMeansParams) -> tuple[str, bool]:
        """A sweep compares settings that may differ in k: held-out inertia would always rank
        the largest k first, the Calinski-Harabasz index does not."""
        return "test_calinski_harabasz", True

    def grid_plots(self, params: KMeansParams, ok, summary, plot_dir) -> None:
        """The elbow: the best inertia of each k of the grid."""
        if "param_k" not in ok or "inertia" not in ok:
            return
        from hpcml.report.plots import line  # matplotlib loads only where a run draws

        curve = ok.groupby("param_k")["inertia"].min().sort_index()
        line(curve.index, curve.values, "k", "inertia (best over repeats)", "k-means elbow", plot_dir / "elbow.png")
