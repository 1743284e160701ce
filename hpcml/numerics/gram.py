"""The Gram (covariance) route to the SVD of a tall matrix, taken only where it is accurate.

For an n x p matrix A with n >> p, the eigen-decomposition of the p x p Gram matrix A'A
gives A's singular values (square roots of its eigenvalues) and right singular vectors in
one pass over A, instead of a QR or SVD of A itself. Its price is accuracy: forming A'A
squares the condition number, so eigenvalue j carries a relative error of about
``p * eps * lam_1 / lam_j`` (measured: 2 to 10 times ``eps * lam_1 / lam_j`` for p = 20 to
50). :func:`gram_ok` takes the route only when that predicted error, for every component
the caller returns, is below :data:`GRAM_RTOL` (1e-10, the tolerance to which the exact
methods are tested against NumPy's SVD); otherwise the caller falls back to SVD/QR of A.
A rank-deficient matrix (some returned eigenvalue 0) always falls back.

The products run through SciPy's BLAS ``dsyrk`` (half the work of a general product) on
row blocks, centred and weighted block by block, so no centred copy of A is made.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import blas

GRAM_RTOL = 1e-10
_EPS = np.finfo(np.float64).eps
_BLOCK_BYTES = 8 << 20  # ~8 MB of rows per dsyrk call (measured fastest near 8192 x 50)


def as_float64(a) -> np.ndarray:
    """``a`` itself when it is already a float64 array (a mapped file stays the same object, so
    caches keyed on it keep hitting), else a float64 copy."""
    return a if isinstance(a, np.ndarray) and a.dtype == np.float64 else np.asarray(a, dtype=np.float64)


def row_products(Zt: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """For each column z of ``Zt`` (q x rows), the upper triangle of z z' (np.triu_indices
    order), as the rows of a (q(q+1)/2, rows) array: every entry the product of two contiguous
    rows, no gather (selecting columns by index costs several times more)."""
    q, rows = Zt.shape
    out = np.empty((q * (q + 1) // 2, rows)) if out is None else out
    k = 0
    for i in range(q):
        np.multiply(Zt[i], Zt[i:], out=out[k: k + q - i])
        k += q - i
    return out


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (float64) by SciPy's BLAS, each operand passed as it is or as its transpose, so
    neither is copied. SciPy's OpenBLAS runs the CPU's own kernel where NumPy's may fall back
    to a generic one (a CPU model it does not know): on these machines about 3x faster for
    the products of the batched bootstrap. The result is Fortran-ordered."""
    a_, ta = (a, 0) if a.flags.f_contiguous else (a.T, 1)
    b_, tb = (b, 0) if b.flags.f_contiguous else (b.T, 1)
    return blas.dgemm(1.0, a_, b_, trans_a=ta, trans_b=tb)


def block_rows(p: int) -> int:
    """Rows per block of a block-by-block pass over an (n, p) matrix (~8 MB of rows)."""
    return max(1, _BLOCK_BYTES // (8 * max(p, 1)))


def row_blocks(A: np.ndarray, rows: np.ndarray | None = None, step: int | None = None):
    """(start, stop, block): A's rows ``step`` at a time, or only those listed in ``rows`` (in
    their order; start and stop then count listed rows). A block is a view of A, or a gathered
    copy of one block's listed rows: A itself is never copied."""
    step = step or block_rows(A.shape[1])
    m = A.shape[0] if rows is None else rows.size
    for s in range(0, m, step):
        e = min(s + step, m)
        yield s, e, A[s:e] if rows is None else A[rows[s:e]]


def gram(A: np.ndarray, center: np.ndarray | None = None, row_scale: np.ndarray | None = None,
         rows: np.ndarray | None = None) -> np.ndarray:
    """The symmetric p x p matrix B'B for B = (A[rows] - center) * row_scale[:, None], formed
    block by block (B is never stored, nor A[rows]: ``rows`` lists the rows taken, None all of
    them; ``row_scale`` has one entry per row taken)."""
    n, p = A.shape
    G = np.zeros((p, p), order="F")
    if rows is None and center is None and row_scale is None and A.flags.c_contiguous:
        G = blas.dsyrk(1.0, A.T, trans=0)  # A' is Fortran-ordered: no copy
    elif rows is None and center is None and row_scale is None and A.flags.f_contiguous:
        G = blas.dsyrk(1.0, A, trans=1)
    else:
        for s, e, B in row_blocks(A, rows):
            if center is not None:
                B = B - center
            if row_scale is not None:
                B = B * row_scale[s:e, None]
            G = blas.dsyrk(1.0, np.ascontiguousarray(B).T, beta=1.0, c=G, trans=0, overwrite_c=1)
    upper = np.triu(G)
    return upper + np.triu(upper, 1).T


def column_sd(sum_squares: np.ndarray, dof: float) -> np.ndarray:
    """Standard deviations of centred columns from their sums of squares (``dof``: n - 1);
    prcomp(scale. = TRUE) refuses a constant column, and so do we."""
    sd = np.sqrt(sum_squares / dof)
    if not np.all(sd > 0):
        raise ValueError("scale: cannot rescale a constant column to unit variance (as prcomp)")
    return sd


def standardized_gram(G: np.ndarray, dof: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gram matrix of centred columns rescaled to unit variance, and the columns' standard
    deviations."""
    sd = column_sd(np.diag(G), dof)
    return G / np.outer(sd, sd), sd


def eigh_desc(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors (columns) of symmetric G."""
    lam, V = linalg.eigh(G, check_finite=False)
    return np.maximum(lam[::-1], 0.0), V[:, ::-1]


def gram_ok(lam: np.ndarray, k: int, p: int) -> bool:
    """True when the leading k eigenvalues of a p x p Gram matrix are accurate to GRAM_RTOL
    (relative): ``p * eps * lam_1 / lam_k`` at most GRAM_RTOL."""
    if k < 1 or k > lam.size:
        return False
    top, low = float(lam[0]), float(lam[k - 1])
    if top == 0.0:
        return False
    return low > 0.0 and max(p, 10) * _EPS * top <= GRAM_RTOL * low


def gram_svd(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """U (n x k), s (k,), Vt (k x p) of a tall A by the Gram route, or None where the
    conditioning does not allow it.

    U = A V / s is orthogonal only to about the Gram route's error, so it is
    re-orthogonalised by one Cholesky-QR pass (its Gram matrix is then within 1e-10 of the
    identity, hence accurate to machine precision) and the small k x k factor left over is
    diagonalised by an SVD: U'U is the identity to ~1e-15, as from LAPACK's SVD.
    """
    n, p = A.shape
    lam, V = eigh_desc(gram(A))
    if not gram_ok(lam, k, p):
        return None
    s, Vk = np.sqrt(lam[:k]), V[:, :k]
    U0 = blas.dgemm(1.0, A.T, Vk / s, trans_a=1)  # (n, k), A' Fortran-ordered: no copy
    try:
        R2 = linalg.cholesky(gram(U0), lower=False, check_finite=False)
    except linalg.LinAlgError:
        return None
    Um, s2, Wt = np.linalg.svd(R2 * s, full_matrices=False)  # A V = U0 S = (U0 R2^-1) (R2 S)
    T = linalg.solve_triangular(R2, Um, check_finite=False)
    return blas.dgemm(1.0, U0, T), s2, Wt @ Vk.T
