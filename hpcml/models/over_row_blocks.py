"""The built-in kinds' fits as passes over row blocks: data that no process holds.

Each fit is a generator: it yields a :class:`Pass` (which per-unit step to run over every
row, with what state) and is sent back the statistics of all rows combined
(``numerics.block_stats``); it returns the fit's record (the single-node kind's outputs and
scores, same names) and its report (``summary(lm)``, ``summary(glm)``, loadings, cluster
sizes). The same generator runs in a test against an in-process loop and in a run against
any backend (``drivers/row_blocks.py``).

Exact, not approximate: OLS and PCA from the R factor of all rows (TSQR), logistic by IRLS
whose every iteration is one pass (step halving as ``glm.fit``), k-means by Lloyd passes
from a k-means++ start drawn on a seeded sample of rows.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import linalg, stats

from hpcml.models.passes import Fit, Pass, drive  # noqa: F401  (drive: the plans run fits with it)
from hpcml.numerics.inference import aliased_note, clean, coef_names, coefficient_table
from hpcml.numerics.least_squares import coef_outputs

# R's lm: a column whose part not explained by the earlier ones is below this fraction of
# its norm is aliased (NA).
ALIAS_TOL = 1e-7
# Above this many columns a PCA takes the Gram route (where accurate): TSQR's R factors
# are then as large as the Gram matrix and each combination a QR of twice its rows.
WIDE_COLUMNS = 512
# Components a PCA of wide data records (or n_components, if more).
WIDE_SHOWN = 256
# Rows sampled for k-means' start: about this many, whatever the data's size.
KMEANS_SAMPLE_ROWS = 100_000


def fit_for(kind: str, params, features: list[str], seed: int, n_rows: int) -> Fit:
    """The fit over row blocks of the built-in ``kind`` with its parameters."""
    if kind == "ols":
        return ols(features, params.fit_intercept)
    if kind == "logistic":
        return logistic(features, params.fit_intercept, params.max_iter, params.tol)
    if kind == "pca":
        return pca(features, params.n_components, params.variance, params.scale)
    return kmeans(features, params.k, params.max_iter, params.tol, seed, n_rows)


def _kept_columns(R: np.ndarray, n_cols: int) -> list[int]:
    """The design columns (of the first ``n_cols`` of R) that are not aliased, in order."""
    kept: list[int] = []
    for j in range(n_cols):
        norm = float(np.linalg.norm(R[:, j]))
        r = np.linalg.qr(R[:, kept + [j]], mode="r")
        if norm > 0 and r.shape[0] > len(kept) and abs(r[len(kept), len(kept)]) > ALIAS_TOL * norm:
            kept.append(j)
    return kept


def _solve(R: np.ndarray, kept: list[int], rhs: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(coefficients of the kept columns, their unscaled covariance, the residual's norm) from
    the R of [design, response] (the response is column ``rhs``)."""
    Rk = np.linalg.qr(R[:, kept + [rhs]], mode="r")
    m = len(kept)
    R11, r12 = Rk[:m, :m], Rk[:m, m]
    beta = linalg.solve_triangular(R11, r12) if m else np.zeros(0)
    Rinv = linalg.solve_triangular(R11, np.eye(m)) if m else np.zeros((0, 0))
    return beta, Rinv @ Rinv.T, float(abs(Rk[m, m])) if Rk.shape[0] > m else 0.0


def ols(features: list[str], fit_intercept: bool, level: float = 0.95) -> Fit:
    """``lm``: coefficients, R's summary table and the fit's R², from one pass."""
    got = yield Pass("ols_qr", {"fit_intercept": fit_intercept}, "QR of the design")
    R, n = got["qr_r"], float(got["sum_n"][0])
    names = coef_names(fit_intercept, features)
    p = len(names)
    kept = _kept_columns(R, p)
    beta_k, cov, resid_norm = _solve(R, kept, p)
    coef = np.full(p, np.nan)
    coef[kept] = beta_k
    rss, rank = resid_norm**2, len(kept)
    dof = n - rank
    sigma2 = rss / dof if dof > 0 else math.nan
    se = np.full(p, np.nan)
    se[kept] = np.sqrt(sigma2 * np.diag(cov))
    # The total sum of squares: the residual of the response on the intercept alone (or on nothing).
    tss = float(np.linalg.qr(R[:, [0, p]], mode="r")[1, 1]) ** 2 if fit_intercept else float(R[:, p] @ R[:, p])
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    df1 = rank - int(fit_intercept)
    f_stat = ((tss - rss) / df1) / sigma2 if df1 > 0 and dof > 0 and sigma2 > 0 else math.nan
    statistics = {"n": n, "rank": rank, "df_residual": dof, "sigma": math.sqrt(sigma2) if sigma2 >= 0 else math.nan,
                  "r_squared": r2, "adj_r_squared": 1.0 - (1.0 - r2) * ((n - int(fit_intercept)) / dof) if dof > 0
                  else math.nan, "f_statistic": f_stat, "f_df1": df1, "f_df2": dof,
                  "f_p_value": float(stats.f.sf(f_stat, df1, dof)) if math.isfinite(f_stat) else math.nan}
    record = {**coef_outputs(coef, fit_intercept, features), "r2": r2, "mse": rss / n, "rmse": math.sqrt(rss / n)}
    summary = {"table": coefficient_table(names, coef, se, dof, level), "level": level,
               "statistics": {k: clean(v) for k, v in statistics.items()}, **aliased_note(names, np.isnan(coef))}
    return record, summary


def logistic(features: list[str], fit_intercept: bool, max_iter: int, tol: float, level: float = 0.95) -> Fit:
    """``glm(family = binomial)``: IRLS, one pass per evaluation of the deviance, with
    glm.fit's step halving and hpcml's single-node convergence rule."""
    got = yield Pass("scan", {"labels": True}, "the target's classes")
    classes = got["set_y"].tolist()
    if len(classes) != 2:
        raise ValueError(f"logistic needs a target with two classes; it has {len(classes)}: {classes[:5]}")
    names = coef_names(fit_intercept, features)
    p = len(names)
    state = {"fit_intercept": fit_intercept, "classes": classes}
    beta = np.zeros(p)
    got = yield Pass("irls", {**state, "beta": beta.tolist()}, "IRLS start")
    n, y1 = float(got["sum_n"][0]), float(got["sum_y1"][0])
    if fit_intercept:  # start at the base rate, as the single-node fit
        pbar = min(max(y1 / n, 1e-8), 1 - 1e-8)
        beta[0] = math.log(pbar / (1 - pbar))
        got = yield Pass("irls", {**state, "beta": beta.tolist()}, "IRLS start at the base rate")
    kept = _kept_columns(got["qr_r"], p)
    dev, converged, it = float(got["sum_dev"][0]), False, 0
    for it in range(1, max_iter + 1):
        step_k, _, _ = _solve(got["qr_r"], kept, p)
        step = np.zeros(p)
        step[kept] = step_k
        for halving in range(30):
            trial = yield Pass("irls", {**state, "beta": (beta + step).tolist()}, f"IRLS iteration {it}")
            dev_new = float(trial["sum_dev"][0])
            if np.isfinite(dev_new) and dev_new <= dev * (1 + 1e-12) + 1e-12:
                break
            step = step / 2
        beta, got, dev_old, dev = beta + step, trial, dev, dev_new
        dev_flat = abs(dev - dev_old) / (abs(dev) + 0.1) < tol
        if dev_flat and np.max(np.abs(step)) <= math.sqrt(tol) * (np.max(np.abs(beta)) + 1.0):
            converged = True
            break
    if not converged:
        raise ValueError(f"logistic regression did not converge in {max_iter} iterations (increase max_iter)")
    _, cov, _ = _solve(got["qr_r"], kept, p)  # the information at the estimate
    coef, se = np.full(p, np.nan), np.full(p, np.nan)
    coef[kept], se[kept] = beta[kept], np.sqrt(np.diag(cov))
    pbar = y1 / n
    null_dev = -2.0 * n * (pbar * math.log(pbar) + (1 - pbar) * math.log(1 - pbar)) \
        if fit_intercept and 0 < pbar < 1 else (2.0 * n * math.log(2.0) if not fit_intercept else 0.0)
    rank = len(kept)
    statistics = {"n": n, "rank": rank, "deviance": dev, "df_residual": n - rank, "null_deviance": null_dev,
                  "df_null": n - int(fit_intercept), "aic": dev + 2 * rank, "iterations": it}
    record = {**coef_outputs(coef, fit_intercept, features), "log_loss": dev / (2 * n), "n_iter": float(it)}
    summary = {"table": coefficient_table(names, coef, se, None, level), "level": level, "classes": classes,
               "statistics": {k: clean(v) for k, v in statistics.items()}, **aliased_note(names, np.isnan(coef))}
    return record, summary


def pca(features: list[str], n_components: int | None, variance: float | None, scale: bool) -> Fit:
    """``prcomp``: the SVD of the R factor of the centred rows (TSQR), two passes. Wide data
    (more than WIDE_COLUMNS columns, where TSQR's R factors are as large as the Gram matrix
    and far dearer) takes the Gram route, pbdR's ``crossprod`` then an eigendecomposition,
    where its accuracy check allows (``numerics.gram.gram_ok``); else TSQR after all."""
    # Only for a PCA: the single-node kind's variance rule, Gram checks and signs.
    from hpcml.models.pca_svd import k_for_variance
    from hpcml.numerics.gram import column_sd, eigh_desc, gram_ok, standardized_gram  # (see above)
    from hpcml.numerics.thin_svd import signs  # (see above)

    got = yield Pass("scan", {}, "column means")
    n = float(got["sum_n"][0])
    mean = got["sum_x"] / n
    width = len(features)
    lam = None
    if width > WIDE_COLUMNS:
        got = yield Pass("centred_gram", {"mean": mean.tolist()}, "Gram matrix of the centred rows")
        G = standardized_gram(got["sum_gram"], n - 1)[0] if scale else got["sum_gram"]
        lam, V = eigh_desc(G)
        if not gram_ok(lam, n_components or lam.size, width):
            lam = None  # not accurate enough for the components asked for: TSQR
        else:
            s, Vt = np.sqrt(lam), V.T
    if lam is None:
        got = yield Pass("centred_qr", {"mean": mean.tolist()}, "QR of the centred rows")
        R = got["qr_r"]
        if scale:  # R'R is the centred Gram matrix: its diagonal the columns' sums of squares
            R = R / column_sd(np.sum(R * R, axis=0), n - 1)
        _, s, Vt = np.linalg.svd(R, full_matrices=False)
    Vt = Vt * signs(Vt)[:, None]  # the single-node kind's signs
    total = float(np.sum(s**2))
    ratio = s**2 / total if total > 0 else np.zeros_like(s)
    cum = np.cumsum(ratio)
    k = n_components or (k_for_variance(ratio, variance) if variance is not None else ratio.size)
    record: dict[str, float] = {"n_components": float(k)}
    # Every component for the scree, as the single-node kind; of wide data the leading ones
    # (three columns each: 30,000 columns for 10,000 features would be no table to read).
    shown = ratio.size if width <= WIDE_COLUMNS else max(k, min(ratio.size, WIDE_SHOWN))
    for j in range(shown):
        record.update({f"evr_{j + 1}": float(ratio[j]), f"cum_evr_{j + 1}": float(cum[j]), f"sv_{j + 1}": float(s[j])})
    record["reconstruction_mse"] = float(np.sum(s[k:] ** 2)) / (n * width)
    sdev = (s / math.sqrt(n - 1)).tolist()
    loadings = [{"feature": str(f), **{f"PC{j + 1}": float(Vt[j, i]) for j in range(min(k, shown))}}
                for i, f in enumerate(features)]
    return record, {"sdev": sdev[:shown], "loadings": loadings, "mean": mean.tolist(),
                    "route": "tsqr" if lam is None else "gram"}


def kmeans(features: list[str], k: int, max_iter: int, tol: float, seed: int, n_rows: int) -> Fit:
    """Lloyd's algorithm, one pass per iteration, from k-means++ on a seeded sample of rows;
    without ``tol`` until no centre moves (no row changes cluster), as R's kmeans."""
    from sklearn.cluster import kmeans_plusplus  # scikit-learn loads only for a k-means fit

    from hpcml.models.kmeans import calinski_harabasz_ratio  # the k-means kind loads only for a k-means fit

    got = yield Pass("scan", {}, "column means")
    n = float(got["sum_n"][0])
    mean = got["sum_x"] / n
    rate = min(1.0, KMEANS_SAMPLE_ROWS / max(1, n_rows))
    got = yield Pass("kmeans_sample", {"rate": rate}, "the sample for k-means++")
    sample = got["cat_rows"]
    if sample.shape[0] < k:
        raise ValueError(f"k={k} exceeds the rows sampled for the start ({sample.shape[0]})")
    start, _ = kmeans_plusplus(sample, k, random_state=seed % 2**32)
    centres = start.copy()
    tol_abs = tol * float(np.mean(np.var(sample, axis=0))) if tol > 0 else 0.0
    it = 0
    for it in range(1, max_iter + 1):
        got = yield Pass("lloyd", {"centres": centres.tolist(), "mean": mean.tolist()}, f"Lloyd iteration {it}")
        counts = got["sum_count"]
        new = np.where(counts[:, None] > 0, got["sum_sums"] / np.maximum(counts, 1)[:, None], centres)
        shift = float(np.sum((new - centres) ** 2))
        centres = new
        if shift <= tol_abs:
            break
    # The record of the last centres: one more pass for their inertia and sizes.
    got = yield Pass("lloyd", {"centres": centres.tolist(), "mean": mean.tolist()}, "the fit's inertia")
    order = sorted(range(k), key=lambda j: tuple(centres[j]))  # hpcml numbers centres in lexicographic order
    counts, inertia, tss = got["sum_count"], float(got["sum_inertia"][0]), float(got["sum_tss"][0])
    record: dict[str, float] = {"inertia": inertia, "n_iter": float(it)}
    for j, c in enumerate(order, start=1):
        record.update({f"center_{j}_{f}": float(v) for f, v in zip(features, centres[c])})
    record.update({f"size_{j}": float(counts[c]) for j, c in enumerate(order, start=1)})
    record["mean_sq_dist"] = inertia / n
    record["calinski_harabasz"] = calinski_harabasz_ratio(tss - inertia, inertia, int(n), int(np.sum(counts > 0)))
    return record, {"sizes": [int(counts[c]) for c in order], "start_centres": start[order].tolist()}


def ols_poisson_bootstrap(features: list[str], fit_intercept: bool, first: int, last: int) -> Fit:
    """Bootstrap replicates ``first``..``last``-1 of OLS with Poisson(1) row weights: one pass
    for the whole group; each replicate's coefficients from its weighted normal equations."""
    got = yield Pass("poisson_gram", {"fit_intercept": fit_intercept, "replicates": [first, last]},
                     f"bootstrap replicates {first}-{last - 1}")
    p = len(features) + int(fit_intercept)
    records: list[dict[str, float] | None] = []
    for G in got["sum_gram"]:
        try:
            c, low = linalg.cho_factor(G[:p, :p])
            coef = linalg.cho_solve((c, low), G[:p, p])
        except linalg.LinAlgError:  # a replicate whose design is singular
            records.append(None)
            continue
        records.append(coef_outputs(coef, fit_intercept, features))
    return records, {}


def logistic_poisson_bootstrap(features: list[str], fit_intercept: bool, max_iter: int, tol: float,
                               first: int, last: int, start: np.ndarray, classes: list) -> Fit:
    """Bootstrap replicates ``first``..``last``-1 of logistic regression with Poisson(1) row
    weights: Newton's method for all of them at once, one pass per step, each replicate from
    the fit of all rows (``start``), with glm.fit's step halving and the single-node
    convergence rule; a replicate that does not converge is None."""
    p, count = len(start), last - first
    state = {"fit_intercept": fit_intercept, "classes": classes, "replicates": [first, last]}
    beta = np.tile(np.asarray(start, dtype=np.float64), (count, 1))
    step = np.zeros_like(beta)
    dev = np.full(count, np.inf)
    done = np.zeros(count, dtype=bool)
    failed = np.zeros(count, dtype=bool)
    for it in range(1, 3 * max_iter + 1):
        trial = beta + step
        got = yield Pass("poisson_irls", {**state, "betas": trial.tolist()},
                         f"bootstrap replicates {first}-{last - 1}, Newton step {it}")
        new_dev = got["sum_dev"]
        worse = ~done & ~(np.isfinite(new_dev) & (new_dev <= dev * (1 + 1e-12) + 1e-12))
        step[worse] /= 2  # halved and evaluated again next pass
        failed |= worse & (np.max(np.abs(step), axis=1) < 1e-300)
        moved = ~done & ~worse
        flat = np.abs(new_dev - dev) / (np.abs(new_dev) + 0.1) < tol
        small = np.max(np.abs(step), axis=1) <= math.sqrt(tol) * (np.max(np.abs(trial), axis=1) + 1.0)
        beta[moved], dev[moved] = trial[moved], new_dev[moved]
        done |= moved & flat & small & (it > 1)
        for g in np.flatnonzero(moved & ~done):
            try:
                step[g] = linalg.solve(got["sum_info"][g], got["sum_score"][g], assume_a="pos")
            except (linalg.LinAlgError, ValueError):
                failed[g] = True
        step[done | failed] = 0.0
        if np.all(done | failed):
            break
    return [None if failed[g] or not done[g] else coef_outputs(beta[g], fit_intercept, features)
            for g in range(count)], {}


def poisson_bootstrap(kind: str, params, features: list[str], first: int, last: int, full: dict[str, float],
                      report: dict[str, Any]) -> Fit:
    """The Poisson bootstrap replicates ``first``..``last``-1 of ``kind`` (``full``: the fit of
    all rows, its record and report)."""
    if kind == "ols":
        return ols_poisson_bootstrap(features, params.fit_intercept, first, last)
    start = np.array([v for k, v in full.items() if k.startswith("coef_")])
    return logistic_poisson_bootstrap(features, params.fit_intercept, params.max_iter, params.tol, first, last,
                                      np.nan_to_num(start), report["classes"])

