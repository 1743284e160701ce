"""``bootstrap``: each task refits the model on a resample of the rows; the summary gives the
bootstrap SE, percentile and BCa intervals.

A replicate is a vector of resampling counts used as observation weights, not a resampled
copy of the data: the same numbers as refitting the copy, without copying anything.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from hpcml.numerics.bounded_draws import lemire_draws, seeded_resampled_values, seeded_sorted_draws
from hpcml.plans.base import Plan, PlanOptions, fit_and_record, register_plan, task_rng
from hpcml.report.tables import json_number, ok_rows, output_columns
from hpcml.numerics.thread_pools import thread_pools
from hpcml.models.base import FitContext

# Jackknife refits for BCa's acceleration: leave-one-out up to this many rows, else groups.
JACKKNIFE_GROUPS = 200
LEVEL = 0.95


class BootstrapOptions(PlanOptions):
    replicates: int = Field(gt=0, strict=True)
    bca: bool = Field(True, description="BCa intervals in the summary (a jackknife of the full data); "
                                        "false: SE and percentile intervals only")


def resample_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """How often each row is drawn in one replicate (n draws with replacement)."""
    return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)


# Replicates of a Poisson bootstrap over row blocks computed in one pass over the data.
POISSON_GROUP = 64

# Up to this many rows a replicate's n draws are made at once and counted by np.bincount (fast;
# for a moment 16 bytes a row, at most 16 MiB); above it, DRAW_CHUNK indices at a time by
# sorting (about 3x slower, but never more than a chunk of indices however large the data:
# there a replicate's fit, n x p work, costs far more than its draw). Data of at most
# SMALL_DRAW rows, where a call per replicate costs more than its draws, draw several
# replicates together (``lemire_draws``), GROUP_DRAWS numbers at a time (arrays that stay in
# cache; above SMALL_DRAW rows the passes over them cost more than the calls they save).
WHOLE_DRAW = 1 << 20
DRAW_CHUNK = 1 << 16
SMALL_DRAW = 1 << 11
GROUP_DRAWS = 1 << 16
# Resamples taken from a column at a time where NumPy builds a batch (no compiled draws).
TAKE_ROWS = 64


def _count_draws(row: np.ndarray, rng: np.random.Generator, n: int) -> bool:
    """Add one replicate's n draws to ``row`` (all zeros) chunk by chunk (the same draws as one
    call: the generator's stream does not depend on how it is split); False if a count does
    not fit ``row``'s type."""
    for start in range(0, n, DRAW_CHUNK):
        idx = np.sort(rng.integers(0, n, min(DRAW_CHUNK, n - start)))
        first = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))
        row[idx[first]] += np.diff(np.append(first, idx.size)).astype(row.dtype)  # may wrap: checked below
    return int(row.sum(dtype=np.int64)) == n  # a wrapped count loses a multiple of 256


def resample_count_rows(rngs: list[np.random.Generator | None], n: int) -> np.ndarray:
    """One replicate's counts per row of a (len(rngs), n) matrix, in the smallest unsigned
    type that holds them (uint8 in practice: a row drawn 256 times out of n draws is
    vanishingly rare), so a group of 64 replicates holds 64 bytes per data row, not 512. The
    counts are those of :func:`resample_counts`, drawn from each generator (each fresh, as
    seeded; see WHOLE_DRAW for how); a member without a generator (``None``) is a row of zeros."""
    W = np.zeros((len(rngs), n), dtype=np.uint8)
    live = [i for i, rng in enumerate(rngs) if rng is not None]
    if n > SMALL_DRAW:
        for i in live:
            W = _count_alone(W, i, rngs[i], n)
        return W
    # The draws of several replicates at once (lemire_draws: the numbers of rng.integers),
    # counted by one bincount.
    per = max(1, GROUP_DRAWS // max(n, 1))
    for start in range(0, len(live), per):
        rows = live[start:start + per]
        draws = lemire_draws([rngs[i] for i in rows], n)
        draws += (np.arange(len(rows)) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=len(rows) * n).reshape(len(rows), n)
        top = int(counts.max(initial=0))
        if top > np.iinfo(W.dtype).max:
            W = W.astype(np.promote_types(W.dtype, np.min_scalar_type(top)))
        W[rows] = counts
    return W


def rows_dtype(n: int) -> np.dtype:
    """The smallest unsigned type that holds row indices below ``n`` (uint16 up to 65,536 rows:
    drawn and sorted in less than half the time of int64)."""
    return np.dtype(np.uint16) if n <= 1 << 16 else np.dtype(np.uint32) if n <= 1 << 32 else np.dtype(np.int64)


def resample_rows(rngs: list[np.random.Generator], n: int) -> np.ndarray:
    """Each generator's resample as row indices in increasing order, one replicate a row of a
    (len(rngs), n) matrix (type :func:`rows_dtype`): the rows of :func:`resample_counts`, each
    repeated by its count, so ``column[rows[k]]`` is the resampled copy the one-by-one path
    makes from those counts. Each generator must be fresh (as seeded)."""
    dtype = rows_dtype(n)
    if n > SMALL_DRAW:
        out = np.empty((len(rngs), n), dtype=dtype)
        for k, rng in enumerate(rngs):
            out[k] = rng.integers(0, n, n)
    else:
        per = max(1, GROUP_DRAWS // max(n, 1))
        out = np.concatenate([lemire_draws(rngs[start:start + per], n, dtype) for start in range(0, len(rngs), per)]) \
            if len(rngs) > per else lemire_draws(rngs, n, dtype)
    out.sort(axis=1)  # equal indices are alike: any sort gives the same matrix
    return out


class GroupResamples:
    """Group members ``ks``' resamples (``ctxs``: the group's contexts), as :func:`resample_rows`
    makes them: each replicate's row indices in increasing order, or straight a column's values
    at them. Where hpcml has its compiled draws they are made from the members' seeding words,
    with no generator objects, and the values without the indices in between."""

    def __init__(self, ctxs, ks: list[int], n: int):
        self.ctxs, self.ks, self.n = ctxs, ks, n

    def __len__(self) -> int:
        return len(self.ks)

    def rows(self) -> np.ndarray:
        """(len(self), n) row indices, type :func:`rows_dtype`."""
        rows = seeded_sorted_draws(self.ctxs.seed_words(self.ks), self.n, rows_dtype(self.n))
        return rows if rows is not None else resample_rows(self.ctxs.rngs(self.ks), self.n)

    def values(self, column: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(len(self), n) float64: row k is ``column[self.rows()[k]]``, the column's rows in
        order, each repeated by its count (column: float64, n values); written into ``out``
        (C-contiguous, that shape) if given."""
        batch = seeded_resampled_values(self.ctxs.seed_words(self.ks), column, out)
        if batch is not None:
            return batch
        # No compiled draws: NumPy's generators draw the rows, taken from the column in blocks.
        rows = resample_rows(self.ctxs.rngs(self.ks), self.n)
        batch = np.empty((len(self), self.n), dtype=np.float64) if out is None else out
        for start in range(0, len(rows), TAKE_ROWS):
            # Indices as intp a block at a time (they stay in cache); all are below n, so "clip"
            # changes none and spares the bounds check's copy: 3x faster than column[rows].
            np.take(column, rows[start:start + TAKE_ROWS].astype(np.intp), out=batch[start:start + TAKE_ROWS],
                    mode="clip")
        return batch


def _count_alone(W: np.ndarray, i: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """Row ``i`` of ``W`` drawn by itself, at once or chunk by chunk; W widened (and returned)
    if a count needs it."""
    if n <= WHOLE_DRAW:
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
    else:
        state = rng.bit_generator.state
        if _count_draws(W[i], rng, n):
            return W
        rng.bit_generator.state = state  # drawn again, counted whole, in a wider type
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
    top = int(counts.max(initial=0))
    if top > np.iinfo(W.dtype).max:
        W = W.astype(np.promote_types(W.dtype, np.min_scalar_type(top)))
    W[i] = counts
    return W


def bca_interval(boot: np.ndarray, theta_hat: float, jack: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Efron's bias-corrected and accelerated interval from replicates and jackknife values."""
    # The normal cdf and quantile of scipy.stats.norm, without importing scipy.stats (seconds).
    from scipy.special import ndtr, ndtri

    boot = boot[np.isfinite(boot)]
    if boot.size < 2 or not np.isfinite(theta_hat):
        return (math.nan, math.nan)
    prop = (np.sum(boot < theta_hat) + 0.5 * np.sum(boot == theta_hat)) / boot.size
    if prop <= 0 or prop >= 1:
        return (math.nan, math.nan)  # theta_hat outside the bootstrap distribution
    z0 = ndtri(prop)
    d = jack.mean() - jack
    denom = 6.0 * (np.sum(d**2) ** 1.5)
    a = float(np.sum(d**3) / denom) if denom > 0 else 0.0
    alpha = (1 - level) / 2
    out = []
    for z in (ndtri(alpha), ndtri(1 - alpha)):
        out.append(float(np.quantile(boot, ndtr(z0 + (z0 + z) / (1 - a * (z0 + z))))))
    return tuple(out)


def full_fit_and_jackknife(job, data, columns: list[str], jackknife: bool = True) \
        -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The fit on all rows and, with ``jackknife``, the leave-group-out values BCa needs."""
    model, params = job.model, job.params
    # The reference fit uses the generator of a task index no plan uses, so it is as
    # reproducible as every task.
    ctx = lambda: FitContext(rng=task_rng(job.spec.seed, 2**31 - 1), threads=job.spec.threads_per_task)
    full = model.outputs(params, model.fit(params, data, None, ctx()), data)
    if not jackknife:
        return full, {}
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


def interval_table(ok, columns: list[str], full: dict[str, float], jack: dict[str, np.ndarray], level: float,
                   refit: bool = True) -> list[dict[str, Any]]:
    """One row per output: the estimate (the fit of the whole data, ``full``), the replicates'
    mean, SE and percentile interval, and BCa's where ``jack`` has the output."""
    rows = []
    alpha = (1 - level) / 2
    for c in columns:
        boot = ok[c].to_numpy(dtype=float)
        estimate = full.get(c, math.nan if refit else float(np.nanmean(boot)))
        row = {"output": c, "estimate": estimate, "mean": float(np.nanmean(boot)),
               "se": float(np.nanstd(boot, ddof=1)) if boot.size > 1 else math.nan,
               "pct_low": float(np.nanquantile(boot, alpha)), "pct_high": float(np.nanquantile(boot, 1 - alpha))}
        if c in jack:
            row["bca_low"], row["bca_high"] = bca_interval(boot, full[c], jack[c], level)
        rows.append({k: json_number(v) for k, v in row.items()})
    return rows


@register_plan
class BootstrapPlan(Plan):
    name = "bootstrap"
    Options = BootstrapOptions
    parameters = ("replicate",)
    records = ("replicate",)
    row_block_kinds = ("ols", "logistic")

    def count(self, options: BootstrapOptions) -> int:
        return options.replicates

    def params_at(self, options: BootstrapOptions, index: int) -> dict[str, Any]:
        return {"replicate": index}

    def check(self, job, data) -> list[tuple[str, Any, str]]:
        if job.spec.data.source == "none":
            return [("data.source", "none", "a bootstrap resamples the rows of the data; give a data source "
                     "(or use plan replicate, whose tasks make their own data)")]
        return []

    def run_task(self, job, data, task, ctx, shared) -> dict[str, Any]:
        _, outputs = fit_and_record(job, data, resample_counts(ctx.rng, data.n), ctx)
        return outputs

    def group_size(self, job) -> int:
        return job.model.batch_size(job.params)

    def run_group(self, job, data, tasks, ctxs, shared, wanted) -> dict[int, dict[str, Any]]:
        per_call = job.model.resamples_as_rows(job.params, data.n)
        if per_call:  # the resampled copies themselves, drawn and passed per_call replicates at a time
            live = [k for k, task in enumerate(tasks) if task.index in wanted]
            out: dict[int, dict[str, Any]] = {}
            for start in range(0, len(live), per_call):
                part = live[start:start + per_call]
                resamples = GroupResamples(ctxs, part, data.n)
                out.update((tasks[k].index, outputs) for k, outputs in
                           zip(part, job.model.outputs_rows(job.params, data, resamples)) if outputs is not None)
            return out
        # The product always has a full group's shape (the last group of a job padded), so a
        # replicate's numbers do not depend on which of its group's tasks a chunk holds, nor on
        # how many replicates the job has. Members not wanted here and the padding are rows of
        # zeros (no draw): each row of the product is summed on its own, so they change no
        # other row. A replicate the batched path declines is left out: it then runs on its own.
        rngs = [ctx.rng if task.index in wanted else None for task, ctx in zip(tasks, ctxs)]
        W = resample_count_rows(rngs + [None] * (self.group_size(job) - len(rngs)), data.n)
        batch = job.model.outputs_batch(job.params, data, W)
        return {task.index: outputs for task, outputs in zip(tasks, batch)
                if task.index in wanted and outputs is not None}

    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any], level: float = LEVEL) -> dict[str, Any]:
        ok = ok_rows(results)
        columns = output_columns(ok)
        full, jack, notes = {}, {}, []
        if len(ok) < len(results):
            notes.append(f"{len(results) - len(ok)} of {len(results)} replicates failed: the standard errors and "
                         f"intervals below come from the {len(ok)} that succeeded, which may not be a random "
                         "sample of the replicates (see hpcml status)")
        refit = job.model.cheap_refit and len(ok) >= 2
        if refit:
            try:
                with thread_pools().limit(limits=job.spec.threads_per_task):
                    full, jack = full_fit_and_jackknife(job, data(), columns, job.spec.plan.options.bca)
            except Exception as err:  # the user's statistic on the whole data: its replicates stay valid
                message = f"{type(err).__name__}: {err}".strip()
                notes.append(f"the fit of the whole data raised {message}: no estimate and no BCa intervals "
                             "(the replicates' SE and percentile intervals stand)")
        summary = {"replicates": int(len(ok)), "level": level,
                   "table": interval_table(ok, columns, full, jack, level, refit)}
        return {**summary, "notes": notes} if notes else summary

    def over_row_blocks(self, job, blocks) -> dict[str, Any]:
        """The Poisson bootstrap: 64 replicates a pass, each group's records kept as it ends (a
        resume repeats only the groups not kept); the estimate is one fit of all rows."""
        from hpcml.models.over_row_blocks import drive, fit_for, poisson_bootstrap  # only for data larger than a node

        kind, params = job.model.name, job.params
        full, report = drive(fit_for(kind, params, blocks.features, job.spec.seed, blocks.n_rows), blocks.run_pass)
        replicates, done = job.spec.plan.options.replicates, blocks.done()
        for first in range(0, replicates, POISSON_GROUP):
            last = min(replicates, first + POISSON_GROUP)
            if all(i in done for i in range(first, last)):
                continue
            t = time.perf_counter()
            group, _ = drive(poisson_bootstrap(kind, params, blocks.features, first, last, full, report),
                             blocks.run_pass)
            seconds = (time.perf_counter() - t) / (last - first)
            blocks.write([(i, None if out is None else {"replicate": i, **out},
                           "the replicate's fit did not converge (singular or separated)" if out is None else None,
                           seconds) for i, out in zip(range(first, last), group)])
        full = {k: v for k, v in full.items() if k.startswith("coef_")}
        ok = ok_rows(blocks.results())
        return {"replicates": int(len(ok)), "level": LEVEL, "weights": "poisson",
                "table": interval_table(ok, output_columns(ok), full, {}, LEVEL),
                "notes": ["Poisson bootstrap over row blocks: each row's weight in a replicate is Poisson(1), drawn "
                          "from (seed, replicate, row); the estimate is the fit of all rows; no BCa intervals (they "
                          "need a jackknife of the whole data)"]}

    def plots(self, job, ok, summary, plot_dir: Path) -> None:
        from hpcml.report.plots import histograms  # matplotlib loads only where a run draws

        histograms(ok, output_columns(ok), f"{job.spec.name}: bootstrap distribution", plot_dir / "bootstrap.png",
                   summary.get("table"), summary.get("level"))
