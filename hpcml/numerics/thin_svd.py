"""The thin SVD of a matrix (full, randomized, tall-skinny QR; the Gram route where it is
accurate), with reproducible signs: the largest-|.| entry of each right singular vector is
positive, so results are reproducible and replicates comparable. A bootstrap weight vector w
enters as sqrt(w) row scaling, which has the same Gram matrix (hence the same singular values
and right vectors) as the resampled copy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcml.numerics.gram import eigh_desc, gram, gram_ok, gram_svd
from hpcml.numerics.weights import positive_rows


@dataclass
class SVDResult:
    U: np.ndarray | None  # (n, k); None from a weighted fit's Gram route (weighted_svd_gram)
    s: np.ndarray  # (k,) descending
    Vt: np.ndarray  # (k, p)
    route: str = "svd"  # "gram" where the Gram route was taken, else the method's own


def signs(Vt: np.ndarray) -> np.ndarray:
    j = np.argmax(np.abs(Vt), axis=1)
    return np.where(Vt[np.arange(Vt.shape[0]), j] < 0, -1.0, 1.0)


def _fix_signs(U: np.ndarray, s: np.ndarray, Vt: np.ndarray, route: str = "svd") -> SVDResult:
    sign = signs(Vt)
    return SVDResult(U * sign, s, Vt * sign[:, None], route)


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
    A tall X (n >= 2p) whose leading k singular values the Gram route gets to 1e-10
    takes that route whatever the method (``route`` says which ran).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError("svd needs a 2-D array")
    n, p = X.shape
    r = min(n, p)
    k = r if k is None else int(k)
    if not 1 <= k <= r:
        raise ValueError(f"k={k} must be between 1 and min(n, p) = {r}")
    if method not in ("full", "tsqr", "randomized"):
        raise ValueError(f"unknown svd method {method!r}: full, randomized or tsqr")
    if method == "randomized" and rng is None:
        raise ValueError("method='randomized' needs rng (a numpy Generator)")
    if n >= 2 * p:  # tall enough for the p x p eigenproblem to be small next to X
        fast = gram_svd(np.ascontiguousarray(X), k)  # every returned value passes the check
        if fast is not None:
            return _fix_signs(fast[0][:, :k], fast[1][:k], fast[2][:k], "gram")
    if method == "full":
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
    elif method == "tsqr":
        if n < p:  # TSQR wants tall input: factor X' and swap the roles of U and V
            t = svd(X.T, k, "tsqr", block_rows=block_rows)
            U, s, Vt, method = t.Vt.T, t.s, t.U.T, t.route
        else:
            Q, R = _tsqr(X, max(2 * p, block_rows or 4096))
            Ur, s, Vt = np.linalg.svd(R)
            U = Q @ Ur
    else:
        U, s, Vt = _randomized(X, k, rng, n_oversamples, n_iter)
    return _fix_signs(U[:, :k], s[:k], Vt[:k], method)


def weighted_svd_gram(X: np.ndarray, w: np.ndarray, k: int | None) -> SVDResult | None:
    """Singular values and right vectors of the rows with positive weight, each scaled by
    sqrt(w) (count weights: those of the resampled copy), by the Gram route block by block,
    or None where it is not accurate (then the caller scales a copy). Left vectors are not
    formed (``U`` is None): a replicate's would be n x k."""
    rows = positive_rows(w)
    wk = w if rows is None else w[rows]
    nk, p = wk.size, X.shape[1]
    k = min(nk, p) if k is None else k
    if nk < 2 * p or not 1 <= k <= min(nk, p):
        return None
    lam, V = eigh_desc(gram(X, None, np.sqrt(wk), rows))
    if not gram_ok(lam, k, p):
        return None
    Vt = V[:, :k].T
    return SVDResult(None, np.sqrt(lam[:k]), Vt * signs(Vt)[:, None], "gram")
