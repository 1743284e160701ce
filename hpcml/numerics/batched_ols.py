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
(``None``), which handles aliasing as R's lm does; so is every replicate of a wide design
(``MAX_PRODUCTS``). The counts may arrive compact (uint8): only one block of them at a time
is float64, and the numbers are those of float64 counts, bit for bit.
"""
from __future__ import annotations

import numpy as np

from hpcml.numerics.gram import as_float64, dot, row_products
from hpcml.numerics.normal_equations import ALIAS_TOL, cholesky_full_rank

# The column products are kept in memory (once per worker process and data set) up to this
# size; beyond it they are rebuilt block by block for every group. Which route a data set
# takes depends only on its shape, so every worker computes the same way.
CACHE_BYTES = 256 << 20
# Rows per block of the rebuilt route: a block of column products stays within this many bytes.
BLOCK_BYTES = 8 << 20

# Column products per row beyond which a group is not batched (p > 253): a block of 256 rows
# of them would pass 64 MB, and batching saves nothing there, a replicate costing about n p^2
# either way. Each replicate is then fitted on its own (``None``), its rows read block by block.
MAX_PRODUCTS = 1 << 15

_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]] = {}


def _centred_products(X: np.ndarray, y: np.ndarray, s: int, e: int, xm: np.ndarray, ym: float) -> np.ndarray:
    """The column products of z = [1, x - xm, y - ym] for rows s:e, as a (q(q+1)/2, e - s) array."""
    Zt = np.empty((X.shape[1] + 2, e - s))
    Zt[0] = 1.0
    np.subtract(X[s:e].T, xm[:, None], out=Zt[1:-1])
    Zt[-1] = y[s:e] - ym
    return row_products(Zt)


def batched_sums(X: np.ndarray, y: np.ndarray, W: np.ndarray, xm: np.ndarray, ym: float) -> np.ndarray:
    """For each row of W (G x n), sum_r w_r z_r z_r' as a (G, q, q) array, z = [1, x - xm, y - ym].

    W may hold its counts in any numeric dtype (a bootstrap's are uint8): the numbers are the
    same as with float64 weights, bit for bit, since each block is converted exactly.
    """
    n, p = X.shape
    q = p + 2
    iu, ju = np.triu_indices(q)
    if n * iu.size * 8 <= CACHE_BYTES:
        key = (id(X), id(y))
        hit = _CACHE.get(key)
        if hit is None or hit[0] is not X or hit[1] is not y:
            _CACHE.clear()  # one data set per worker at a time
            hit = _CACHE[key] = (X, y, xm.copy(), ym, _centred_products(X, y, 0, n, xm, ym))
        # The whole product at once, as the cached products are: W as float64 (as small as they).
        C = dot(np.asarray(W, dtype=np.float64), hit[4].T)
    else:
        rows = max(256, BLOCK_BYTES // (8 * iu.size))
        C = np.zeros((W.shape[0], iu.size))
        for s in range(0, n, rows):
            e = min(n, s + rows)
            # Counts may be held compact (uint8): only this block's columns become float64.
            C += dot(np.ascontiguousarray(W[:, s:e], dtype=np.float64), _centred_products(X, y, s, e, xm, ym).T)
    M = np.zeros((W.shape[0], q, q))
    M[:, iu, ju] = C
    M[:, ju, iu] = C
    return M


def ols_coefs_batch(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> list[np.ndarray | None]:
    """Coefficients (intercept first) of the weighted OLS fit for each row of ``W``; None where
    the ordinary fit must decide (rank deficiency, ill conditioning, too few rows)."""
    X, y = as_float64(X), as_float64(y)
    p = X.shape[1]
    if (p + 2) * (p + 3) // 2 > MAX_PRODUCTS:
        return [None] * W.shape[0]
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
