"""Many bootstrap replicates of one logistic fit at once: Newton from the full-data fit.

A replicate's maximum-likelihood estimate lies within a few standard errors of the full-data
estimate, so Newton's method started there needs few steps, and a group of G replicates
shares the expensive part of each step, a pass over the rows, as matrix products:

1. At the full-data fit every replicate has the same linear predictor, so its gradient and
   Fisher information are its count vector times per-row terms: one product of the counts
   (G x n) with the n x (m(m+1)/2 + m) column products and residual columns. No exponential.
2. Then gradient passes only: the G linear predictors (one product), their residuals
   (one exponential each) and the gradients (one product). The information matrix is not
   recomputed: it moves with the coefficients by the third derivative of the log-likelihood,
   taken once from the full data (m x m x m, no pass per replicate). That is what keeps the
   steps contracting fast, and a pass costs a third of a Hessian's. A member whose steps
   contract slowly gets its information recomputed at its own coefficients.

Every product has the whole group's shape (the bootstrap pads its last group to full size),
summed over row blocks of a fixed size, and a replicate's numbers depend only on the data
and its own counts: a member that converged stops moving, and one not wanted here (a row of
zero counts) is computed and dropped. So a replicate gets the same numbers, bit for bit,
whichever chunk, worker or backend runs it (with the job's ``threads_per_task``: how many
threads a product uses can change its last bits).
A replicate that is not clearly well posed is left to the ordinary IRLS fit (``None``),
which handles aliasing and separation as R's glm does: a design near rank deficiency, a
step that does not contract (a replicate drawn close to separation runs off). So is
every replicate of data whose full fit is not a plain, converged one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from hpcml.numerics.gram import as_float64, dot, row_products
from hpcml.numerics.normal_equations import equilibrated_cholesky
from hpcml.numerics.irls import encode_binary, fit_logistic

# Elements (group members x rows) in one row block of the passes: 2 MiB of float64, the
# block's residuals between the product that makes them and the one that uses them (a pass
# took the same time, within 10 %, from 2^15 to 2^19).
BLOCK_ELEMS = 1 << 18
# Batched only up to this many coefficients: the information's products grow as m^2 per row.
MAX_COEFS = 64
# The third-derivative correction costs m^3 per row once per data set: up to this many.
MAX_COEFS_CORRECTED = 24
# Newton steps at most; a replicate that needs more goes to IRLS.
MAX_STEPS = 12
# A step more than this fraction of the one before: the member's information is recomputed
# at its coefficients in the next pass (a replicate far from the full fit, or small data).
REFRESH_RATE = 0.05
# The full fit's linear predictor must stay within this bound (probabilities within
# 2e-9 of 0 or 1): beyond it the data are close to separation, and every replicate goes to IRLS.
ETA_FULL_MAX = 20.0
# The equilibrated information's smallest Cholesky pivot, squared, at least this: far from
# R's aliasing test (1e-11 on the design, 1e-22 squared) even after the working weights (at
# least 2e-9 by ETA_FULL_MAX) are divided out.
PIVOT_MIN = 1e-8


@dataclass(frozen=True)
class _Full:
    """What every group of one data set starts from (kept once per worker process)."""
    X: np.ndarray
    y: object  # the labels as given (with X, the cache key)
    settings: tuple
    y01: np.ndarray | None = None
    sign: np.ndarray | None = None  # 2y - 1
    centre: np.ndarray | None = None  # the full-data column means (zeros without an intercept)
    beta: np.ndarray | None = None  # the full-data fit, on the centred design; None: not batched
    third: np.ndarray | None = None  # d(information)/d(beta), m x m x m; None: not corrected

    @property
    def icpt(self) -> int:
        return int(self.settings[0])

    def blocks(self, G: int):
        """The design's row blocks for one pass of a group of G members."""
        return _design_blocks(self.X, self.centre, self.icpt, max(256, BLOCK_ELEMS // G))


_CACHE: list[_Full] = []


def _design_blocks(X: np.ndarray, centre: np.ndarray, icpt: int, rows: int):
    """(start, stop, the design [1, X - centre] of those rows, transposed: m x rows), X not
    copied whole. With an intercept the columns are centred by the full-data means, so the
    information matrix is as well conditioned as the data allow (the coefficients are
    mapped back at the end)."""
    n, p = X.shape
    for s in range(0, n, rows):
        e = min(n, s + rows)
        At = np.empty((p + icpt, e - s))
        if icpt:
            At[0] = 1.0
        np.subtract(X[s:e].T, centre[:, None], out=At[icpt:])
        yield s, e, At


def _full_fit(X: np.ndarray, y, fit_intercept: bool, max_iter: int, tol: float) -> _Full:
    settings = (fit_intercept, max_iter, tol)
    for hit in _CACHE:
        if hit.X is X and hit.y is y and hit.settings == settings:
            return hit
    _CACHE.clear()  # one data set per worker at a time
    try:
        fit = fit_logistic(X, y, None, fit_intercept, max_iter, tol)
    except ValueError:
        fit = None
    full = _Full(X, y, settings)
    if fit is not None and fit.warning is None and not fit.aliased.any():
        y01 = encode_binary(y)[0]
        m, icpt = fit.coef.size, int(fit_intercept)
        centre = X.mean(axis=0) if icpt else np.zeros(X.shape[1])
        beta = fit.coef.copy()
        if icpt:
            beta[0] += fit.coef[1:] @ centre
        eta_max, ss = 0.0, np.zeros(m)
        third = np.zeros((m, m, m)) if m <= MAX_COEFS_CORRECTED else None
        for s, e, At in _design_blocks(X, centre, icpt, 1 << 14):
            eta = beta @ At
            eta_max = max(eta_max, float(np.max(np.abs(eta), initial=0.0)))
            ss += np.einsum("ij,ij->i", At, At)  # sums of squares about the means
            if third is not None:
                mu = 1.0 / (1.0 + np.exp(-eta))
                t = mu * (1.0 - mu) * (1.0 - 2.0 * mu)
                for l in range(m):
                    third[:, :, l] += dot(At * (t * At[l]), At.T)
        # R decides aliasing on the uncentred design: a column whose mean is over 1e6 times its
        # spread might be aliased there although it is not after centring.
        sd = np.sqrt(ss[icpt:] / X.shape[0])
        if eta_max <= ETA_FULL_MAX and np.all(np.abs(centre) <= 1e6 * sd):
            full = _Full(X, y, settings, y01, 2.0 * y01 - 1.0, centre, beta, third)
    _CACHE.append(full)
    return full


def _first_pass(full: _Full, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member's gradient (G x m) and upper-triangle information (G x m(m+1)/2) at the
    full fit, where every member has the same linear predictor."""
    G, m = W.shape[0], full.beta.size
    q = m * (m + 1) // 2
    both = np.zeros((G, q + m))
    for s, e, At in full.blocks(G):
        mu = 1.0 / (1.0 + np.exp(-(full.beta @ At)))
        terms = np.empty((q + m, e - s))
        row_products(At, terms[:q])
        terms[:q] *= mu * (1.0 - mu)
        np.multiply(At, full.y01[s:e] - mu, out=terms[q:])
        both += dot(W[:, s:e].astype(np.float64), terms.T)  # counts may be uint8: exact
    return both[:, q:], both[:, :q]


def _gradient_pass(full: _Full, W: np.ndarray, B: np.ndarray, info: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Each member's gradient of the log-likelihood (G x m) at its coefficients (rows of B)
    and, with ``info``, its upper-triangle information there (G x m(m+1)/2). The gradient is
    computed the same way either way, bit for bit."""
    G, m = B.shape
    q = m * (m + 1) // 2
    grad = np.zeros((G, m))
    upper = np.zeros((G, q)) if info else None
    for s, e, At in full.blocks(G):
        sign = full.sign[s:e]
        C = W[:, s:e].astype(np.float64)  # counts may be compact (uint8): exact
        C *= sign  # counts * (2y - 1)
        # counts * (y - mu) = counts * (2y - 1) / (1 + exp((2y - 1) eta)): one exponential, no
        # cancellation when mu is near y.
        R = dot((At * sign).T, B.T).T  # G x rows, C-ordered as the counts
        np.exp(R, out=R)
        if info:  # counts * mu (1 - mu) = |C| e / (1 + e)^2, e = exp(+-eta) alike
            V = R / ((1.0 + R) * (1.0 + R))
            V *= np.abs(C)
            upper += dot(V, row_products(At).T)
        R += 1.0
        np.divide(C, R, out=R)
        grad += dot(R, At.T)
    return grad, upper


def _factor(H: np.ndarray):
    """Cholesky factor (and scale) of one member's equilibrated information matrix, or None
    when it is not clearly positive definite (see PIVOT_MIN)."""
    factored = equilibrated_cholesky(H)
    if factored is None:
        return None
    c, _, d, _ = factored
    pivots = np.diag(c)
    if not np.all(np.isfinite(pivots)) or np.min(pivots) ** 2 < PIVOT_MIN:
        return None
    return c, d


def logistic_coefs_batch(X, y, W: np.ndarray, fit_intercept: bool = True, max_iter: int = 100,
                         tol: float = 1e-10) -> list[np.ndarray | None]:
    """Coefficients (intercept first) of the weighted logistic fit for each row of ``W`` (counts,
    G x n); None where the ordinary IRLS fit must decide.

    Converged when a step is below ``tol`` relative to the coefficients and at most half the
    step before it: the error left is then at most that step.
    """
    X = as_float64(X)
    if X.ndim == 1:
        X = X[:, None]
    m = X.shape[1] + int(fit_intercept)
    if m > MAX_COEFS or m == 0 or max_iter < 3:
        return [None] * W.shape[0]
    full = _full_fit(X, y, fit_intercept, max_iter, tol)
    if full.beta is None:
        return [None] * W.shape[0]
    # A member drawn off towards separation overflows its exponentials: it is caught by the
    # checks below (a non-finite or growing step, a factor that fails), not worth a warning.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _newton(full, W, m, max_iter, tol)


def _newton(full: _Full, W: np.ndarray, m: int, max_iter: int, tol: float) -> list[np.ndarray | None]:
    """The group's Newton steps from the full fit (see the module's docstring)."""
    G = W.shape[0]
    out: list[np.ndarray | None] = [None] * G
    iu, ju = np.triu_indices(m)
    grad, upper = _first_pass(full, W)
    # Each member's information at its reference point (first the full fit), moved to its
    # current coefficients by the third derivative; refreshed where the steps contract slowly.
    info = np.zeros((G, m, m))
    info[:, iu, ju] = upper
    info[:, ju, iu] = upper
    B = np.tile(full.beta, (G, 1))
    ref = B.copy()
    # Members still moving; a member leaves when it converges (kept) or fails (None).
    active = np.array([np.count_nonzero(W[g]) >= m for g in range(G)])
    refresh = np.zeros(G, dtype=bool)
    last = np.full(G, np.inf)  # the previous step's size
    for k in range(1, min(MAX_STEPS, max_iter) + 1):
        if k > 1:
            if not active.any():
                break
            renew = np.flatnonzero(active & refresh)
            grad, upper = _gradient_pass(full, W, B, info=renew.size > 0)
            for g in renew:
                info[g][iu, ju] = upper[g]
                info[g][ju, iu] = upper[g]
                ref[g] = B[g]
        for g in np.flatnonzero(active):
            H = info[g] if full.third is None else info[g] + full.third @ (B[g] - ref[g])
            factor = _factor(H)
            if factor is None:
                active[g] = False
                continue
            c, d = factor
            step = linalg.cho_solve((c, False), grad[g] / d, check_finite=False) / d
            B[g] += step
            size = float(np.max(np.abs(step)))
            if not np.isfinite(size) or size > last[g]:
                active[g] = False  # diverging (separation draws a replicate off)
                continue
            # Converged when the step itself is below tol and at most half the one before: with
            # the steps contracting at least that fast, the error left is at most this step.
            # (The ratio of two steps alone says little: the information changes between them.)
            if size == 0.0 or (k >= 2 and size <= tol * (1.0 + float(np.max(np.abs(B[g])))) and size <= 0.5 * last[g]):
                out[g] = B[g].copy()
                if full.icpt:
                    out[g][0] -= B[g][1:] @ full.centre  # back to the uncentred intercept
                active[g] = False
            refresh[g] = size > REFRESH_RATE * last[g]
            last[g] = size
    return out
