"""Many bootstrap replicates of one OLS fit at once: a matrix product in disguise.

Replicate g's weighted normal equations need sum_r w_gr z_r z_r' for z = [1, x, y]. Stacking
G replicates' count vectors as a G x n matrix W, one product W @ P with P the n x q(q+1)/2
column products of z gives every replicate's sums at once. z is centred by the full-data
means (fixed, not per replicate), so the sums stay small and the per-replicate centring that
follows cancels nothing large.

The product runs over row blocks of a fixed size, so a replicate's numbers depend only on
the data and its own counts, and on which G replicates share its group: groups are fixed by
task index, never by chunk, so they are the same on every backend and worker count.
A replicate whose design is rank-deficient or ill-conditioned is left to the ordinary fit
(``None``), which handles aliasing as R's lm does.
"""
from __future__ import annotations

import numpy as np

from hpcml.models.normal_equations import ALIAS_TOL, cholesky_full_rank

# The column-product block (rows x q(q+1)/2 float64) stays within this many bytes.
BLOCK_BYTES = 8 << 20


def _pair_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(q)


def _block_rows(pairs: int) -> int:
    return max(256, BLOCK_BYTES // (8 * pairs))


def batched_sums(X: np.ndarray, y: np.ndarray, W: np.ndarray, xm: np.ndarray, ym: float) -> np.ndarray:
    """For each row of W (G x n), sum_r w_r z_r z_r' as a (G, q, q) array, z = [1, x - xm, y - ym]."""
    n, p = X.shape
    q = p + 2
    iu, ju = _pair_index(q)
    rows = _block_rows(iu.size)
    C = np.zeros((W.shape[0], iu.size))
    Z = np.empty((min(rows, n), q))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        Zb = Z[: e - s]
        Zb[:, 0] = 1.0
        np.subtract(X[s:e], xm, out=Zb[:, 1 : p + 1])
        Zb[:, p + 1] = y[s:e] - ym
        C += np.ascontiguousarray(W[:, s:e]) @ (Zb[:, iu] * Zb[:, ju])
    M = np.zeros((W.shape[0], q, q))
    M[:, iu, ju] = C
    M[:, ju, iu] = C
    return M


def ols_coefs_batch(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> list[np.ndarray | None]:
    """Coefficients (intercept first) of the weighted OLS fit for each row of ``W``; None where
    the ordinary fit must decide (rank deficiency, ill conditioning, too few rows)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    p = X.shape[1]
    xm, ym = X.mean(axis=0), float(y.mean())
    M = batched_sums(X, y, W, xm, ym)
    out: list[np.ndarray | None] = []
    for g in range(W.shape[0]):
        S0 = M[g, 0, 0]
        if np.count_nonzero(W[g]) < p + 1 or S0 <= 0:
            out.append(None)
            continue
        s = M[g, 0, 1:]
        A = M[g, 1:, 1:] - np.outer(s, s) / S0  # sums of squares about the replicate's own means
        shift = s / S0  # the replicate's means, relative to the full-data means
        wxm = xm + shift[:p]
        norms2 = np.diag(A)[:p] + S0 * wxm**2  # column norms in R's (uncentred) design
        beta = cholesky_full_rank(A[:p, :p], A[:p, p], norms2, ALIAS_TOL) if p else np.zeros(0)
        if beta is None:
            out.append(None)
            continue
        out.append(np.concatenate([[ym + shift[p] - wxm @ beta], beta]))
    return out
