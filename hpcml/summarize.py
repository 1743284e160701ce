"""Plan summaries: bootstrap SE and intervals, CV mean/sd, sweep leaderboard, and so on.

Each summary is JSON-ready and has a ``table`` (list of rows) that the CLI prints.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from .models.base import FitContext
from .plan import task_rng

META = {"task_id", "task_index", "status", "attempt", "seconds", "error", "traceback", "replicate", "repeat",
        "fold", "shard", "rows"}
# Jackknife refits for BCa's acceleration: leave-one-out up to this many rows, else groups.
JACKKNIFE_GROUPS = 200


def _f(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def output_columns(results: pd.DataFrame) -> list[str]:
    cols = []
    for c in results.columns:
        if c in META or c.startswith("param_"):
            continue
        if pd.api.types.is_numeric_dtype(results[c]):
            cols.append(c)
    return cols


def _ok(results: pd.DataFrame) -> pd.DataFrame:
    return results.loc[results["status"] == "ok"] if "status" in results else results


def bca_interval(boot: np.ndarray, theta_hat: float, jack: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Efron's bias-corrected and accelerated interval from replicates and jackknife values."""
    boot = boot[np.isfinite(boot)]
    if boot.size < 2 or not np.isfinite(theta_hat):
        return (math.nan, math.nan)
    prop = (np.sum(boot < theta_hat) + 0.5 * np.sum(boot == theta_hat)) / boot.size
    if prop <= 0 or prop >= 1:
        return (math.nan, math.nan)  # theta_hat outside the bootstrap distribution
    z0 = norm.ppf(prop)
    d = jack.mean() - jack
    denom = 6.0 * (np.sum(d**2) ** 1.5)
    a = float(np.sum(d**3) / denom) if denom > 0 else 0.0
    alpha = (1 - level) / 2
    out = []
    for z in (norm.ppf(alpha), norm.ppf(1 - alpha)):
        out.append(float(np.quantile(boot, norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))))))
    return tuple(out)


def _full_fit_and_jackknife(job, data, columns: list[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    model, params = job.model, job.params
    # The reference fit uses the generator of a task index no plan uses (-1 is invalid), so
    # it is as reproducible as every task.
    ctx = lambda: FitContext(rng=task_rng(job.spec.seed, 2**31 - 1), threads=job.spec.threads_per_task)
    full = model.outputs(params, model.fit(params, data, None, ctx()), data)
    n = data.n
    groups = min(n, JACKKNIFE_GROUPS)
    labels = np.arange(n) * groups // n  # contiguous, near-equal blocks
    jack = {c: np.empty(groups) for c in columns}
    fast = model.jackknife(params, data, labels, groups)
    for g in range(groups):
        out = fast[g] if fast is not None else \
            model.outputs(params, model.fit(params, data, (labels != g).astype(np.float64), ctx()), data)
        for c in columns:
            jack[c][g] = out.get(c, math.nan)
    return full, jack


def summarize_bootstrap(job, results: pd.DataFrame, level: float = 0.95) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from .data import load_dataset

    ok = _ok(results)
    columns = output_columns(ok)
    full, jack = {}, {}
    if job.model.cheap_refit and len(ok) >= 2:
        with threadpool_limits(limits=job.spec.threads_per_task):
            full, jack = _full_fit_and_jackknife(job, load_dataset(job), columns)
    rows = []
    alpha = (1 - level) / 2
    for c in columns:
        boot = ok[c].to_numpy(dtype=float)
        row = {"output": c, "estimate": full.get(c, float(np.nanmean(boot))), "mean": float(np.nanmean(boot)),
               "se": float(np.nanstd(boot, ddof=1)) if boot.size > 1 else math.nan,
               "pct_low": float(np.nanquantile(boot, alpha)), "pct_high": float(np.nanquantile(boot, 1 - alpha))}
        if c in jack:
            row["bca_low"], row["bca_high"] = bca_interval(boot, full[c], jack[c], level)
        rows.append({k: _f(v) for k, v in row.items()})
    return {"replicates": int(len(ok)), "level": level, "table": rows}


def _mean_sd_table(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return [{"output": c, "mean": _f(frame[c].mean()), "sd": _f(frame[c].std(ddof=1)) if len(frame) > 1 else None,
             "min": _f(frame[c].min()), "max": _f(frame[c].max())} for c in columns]


def summarize_cv(job, results: pd.DataFrame) -> dict[str, Any]:
    ok = _ok(results)
    # Built-in kinds score test and train rows; user code names its own outputs.
    metrics = [c for c in output_columns(ok) if c.startswith(("test_", "train_"))] or output_columns(ok)
    per_repeat = ok.groupby("repeat")[metrics].mean().reset_index() if metrics else pd.DataFrame()
    return {"folds": job.spec.plan.cv.folds, "repeats": job.spec.plan.cv.repeats,
            "table": _mean_sd_table(ok, metrics),
            "per_repeat": [{k: _f(v) for k, v in r.items()} for r in per_repeat.to_dict("records")]}


def summarize_sweep(job, results: pd.DataFrame) -> dict[str, Any]:
    ok = _ok(results)
    keys = [c for c in ok.columns if c.startswith("param_")]
    metric, greater = job.model.sweep_metric(job.params)
    if ok.empty or metric not in ok:
        return {"metric": metric, "table": []}
    board = ok.groupby(keys, dropna=False)[metric].agg(["mean", "std", "count"]).reset_index()
    board = board.sort_values("mean", ascending=not greater, kind="stable")
    rows = [{**{k[len("param_"):]: _f(r[k]) for k in keys}, f"{metric}_mean": _f(r["mean"]),
             f"{metric}_sd": _f(r["std"]), "repeats": int(r["count"])} for _, r in board.iterrows()]
    return {"metric": metric, "greater_is_better": greater, "best": rows[0] if rows else None,
            "table": rows}


def summarize_shards(job, results: pd.DataFrame) -> dict[str, Any]:
    ok = _ok(results)
    if ok.empty:
        return {"shards": 0, "table": []}
    columns = output_columns(ok)
    weights = ok["rows"].to_numpy(dtype=float)
    # Combined estimate: the row-weighted mean of the shard estimates.
    table = [{"output": c, "combined": _f(np.average(ok[c].to_numpy(dtype=float), weights=weights)),
              "sd_across_shards": _f(ok[c].std(ddof=1)) if len(ok) > 1 else None} for c in columns]
    return {"shards": int(len(ok)), "table": table}


def variance_thresholds(row: pd.Series) -> dict[str, int | None]:
    """Smallest k reaching 80/90/95 % explained variance (the seeds' rule of thumb)."""
    cum = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("cum_evr_"))
    out = {}
    for target in (0.8, 0.9, 0.95):
        out[f"k_{int(target * 100)}"] = next((k for k, v in cum if v >= target - 1e-12), None)
    return out


def summarize(job, results: pd.DataFrame, run_dir=None) -> dict[str, Any]:
    kind = job.plan_kind
    base = {"plan": kind, "model": job.model.name, "name": job.spec.name}
    ok = _ok(results)
    if kind == "bootstrap":
        body = summarize_bootstrap(job, results)
    elif kind == "cv":
        body = summarize_cv(job, results)
    elif kind == "sweep":
        body = summarize_sweep(job, results)
    elif kind == "shards":
        body = summarize_shards(job, results)
    elif kind == "fit":
        body = {"table": [{"output": c, "value": _f(ok[c].iloc[0])} for c in output_columns(ok)] if len(ok) else []}
    else:
        body = {"table": _mean_sd_table(ok, output_columns(ok))}
    if job.model.name == "pca" and len(ok) and any(c.startswith("cum_evr_") for c in ok.columns):
        body["variance_thresholds"] = variance_thresholds(ok.iloc[0])
    # A model kind may add its own summary (e.g. bayesm's R-hat across chains' stored draws).
    extra = getattr(job.model, "summarize_extra", None)
    if extra is not None and len(ok):
        body.update(extra(job, results, run_dir if run_dir is not None else job.output))
    return {**base, **body}
