"""PNG drawing primitives used by plans and model kinds for their figures. Files are written
atomically.

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas (batch nodes have no
display): pyplot is never imported, so drawing a run's plots neither switches the backend of
the process that called ``hpcml.run`` (a notebook) nor registers figures in pyplot's state.
This module is imported only when a run draws its plots."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hpcml.store import atomic_write_bytes

MAX_PANELS = 16


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], squeeze: bool = True,
             layout: str | None = None):
    """A figure on the Agg canvas and its axes, as ``pyplot.subplots`` makes them."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def histograms(frame: pd.DataFrame, columns: list[str], title: str, path: Path, table: list[dict] | None = None,
               level: float | None = None) -> None:
    """One histogram per output, with the full-data estimate and the percentile interval where
    the summary has them, and a legend."""
    columns = columns[:MAX_PANELS]
    if not columns:
        return
    ncol = min(4, len(columns))
    nrow = math.ceil(len(columns) / ncol)
    fig, axes = subplots(nrow, ncol, figsize=(3.2 * ncol, 2.5 * nrow), squeeze=False, layout="constrained")
    bounds = {r["output"]: r for r in (table or [])}
    percent = int(round(100 * (level or 0.95)))
    handles = {}
    for ax, c in zip(axes.flat, columns):
        # the 30 counts first: matplotlib then draws 30 bars, not a copy of a million values
        counts, edges = np.histogram(frame[c].dropna().to_numpy(dtype=float), bins=30)
        handles.setdefault("replicates", ax.hist(edges[:-1], edges, weights=counts, color="#4C72B0")[2][0])
        row = bounds.get(c, {})
        for key in ("pct_low", "pct_high"):
            if row.get(key) is not None:
                handles.setdefault(f"{percent} % percentile interval",
                                   ax.axvline(row[key], color="#C44E52", lw=1, ls="--"))
        if row.get("estimate") is not None:
            handles.setdefault("full-data estimate", ax.axvline(row["estimate"], color="black", lw=1.5))
        ax.set_title(c, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(title)
    save(fig, path)


def boxplots(frame: pd.DataFrame, columns: list[str], title: str, path: Path) -> None:
    if not columns:
        return
    fig, ax = subplots(figsize=(1.5 * len(columns) + 2, 3.5))
    ax.boxplot([frame[m].dropna() for m in columns])
    ax.set_xticks(range(1, len(columns) + 1), columns, rotation=30, fontsize=8)
    ax.set_title(title)
    save(fig, path)


def leaderboard(summary: dict, path: Path) -> None:
    """A sweep's best configurations as horizontal bars (mean ± sd of the ranking metric)."""
    rows = summary.get("table", [])[:20]
    metric = summary.get("metric", "metric")
    if not rows:
        return
    grid = summary.get("grid")  # the swept parameters; else every column but the metric's
    labels = [", ".join(f"{k}={v}" for k, v in r.items()
                        if (k in grid if grid is not None else not k.startswith(metric) and k != "repeats"))
              for r in rows]
    fig, ax = subplots(figsize=(7, 0.3 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r.get(f"{metric}_mean", r.get(metric)) for r in rows],
            xerr=[r.get(f"{metric}_sd") or 0 for r in rows], color="#55A868")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    save(fig, path)


def line(x, y, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    fig, ax = subplots(figsize=(5, 3.5))
    ax.plot(x, y, "o-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save(fig, path)


def biplot(scores, loadings, features: list[str], path: Path, evr=None) -> None:
    """Rows on the first two principal components, with each feature's loading as an arrow
    (R's ``biplot(prcomp(...))``): arrows scaled to the spread of the scores."""
    scores, loadings = np.asarray(scores, dtype=float), np.asarray(loadings, dtype=float)
    fig, ax = subplots(figsize=(6, 5))
    ax.scatter(scores[:, 0], scores[:, 1], s=6, alpha=0.4, color="#4C72B0", label="rows (scores)")
    reach = np.abs(scores[:, :2]).max(axis=0) if len(scores) else np.ones(2)
    scale = 0.8 * float(np.min(reach / np.maximum(np.abs(loadings[:, :2]).max(axis=0), 1e-300)))
    for name, (a, b) in zip(features, loadings[:, :2] * scale):
        ax.annotate("", xy=(a, b), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "#C44E52"})
        ax.text(a * 1.08, b * 1.08, str(name), color="#C44E52", fontsize=8, ha="center", va="center")
    labels = [f"PC{j + 1}" + (f" ({100 * evr[j]:.1f} %)" if evr is not None else "") for j in range(2)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_title("biplot: scores and loadings (arrows)")
    save(fig, path)


def scree(ks, ratios, path: Path, kept: int | None = None) -> None:
    """Explained variance ratio of every component (the first ``kept`` marked) and its cumulative curve."""
    ks, ratios = list(ks), list(ratios)
    kept = len(ks) if kept is None else kept
    cum = pd.Series(ratios).cumsum()
    fig, ax = subplots(figsize=(max(6, 0.25 * len(ks)), 3.5))
    ax.bar(ks[:kept], ratios[:kept], color="#4C72B0", label=f"explained variance ratio (kept: {kept})")
    if kept < len(ks):
        ax.bar(ks[kept:], ratios[kept:], color="#B0B0B0", label="not kept")
    ax.plot(ks, cum, "o-", color="#C44E52", label="cumulative")
    for level in (0.8, 0.95):
        ax.axhline(level, ls="--", color="grey", lw=0.8)
    ax.set_xlabel("component")
    ax.set_xlim(0.4, len(ks) + 0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    save(fig, path)


def traces(chains: dict[str, pd.DataFrame], columns: list[str], title: str, path: Path, burnin: int = 0,
           rhat: dict[str, float | None] | None = None) -> None:
    """MCMC trace plots: one panel per parameter, one line per chain (its kept draws in order),
    the burn-in shaded and the parameter's R-hat in the panel's title."""
    columns = columns[:MAX_PANELS]
    if not columns or not chains:
        return
    ncol = min(2, len(columns))
    nrow = math.ceil(len(columns) / ncol)
    fig, axes = subplots(nrow, ncol, figsize=(5.5 * ncol, 2.4 * nrow), squeeze=False, layout="constrained")
    handles = {}
    for ax, c in zip(axes.flat, columns):
        for label, frame in chains.items():
            handles.setdefault(label, ax.plot(frame[c].to_numpy(), lw=0.7, alpha=0.8)[0])
        if burnin > 0:
            handles.setdefault("burn-in", ax.axvspan(0, burnin, color="0.85", zorder=0))
        value = (rhat or {}).get(c)
        ax.set_title(c if value is None else f"{c} (R-hat {value:.3f})", fontsize=8)
        ax.set_xlabel("kept draw", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.suptitle(title)
    save(fig, path)
