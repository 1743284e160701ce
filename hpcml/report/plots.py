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

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator

from hpcml.files import atomic_write_bytes

MAX_PANELS = 16
BIPLOT_LABELS = 10  # the biplot labels this many of its longest loading arrows


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], squeeze: bool = True,
             layout: str | None = None):
    """A figure on the Agg canvas and its axes, as ``pyplot.subplots`` makes them."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def one_panel_layout(fig, ax) -> tuple[float, float]:
    """Margins of a figure of one panel with a title and a label on each axis, set from what it
    will draw, without a layout pass: the widest y tick label (the locator's ticks for the
    current limits, as the formatter will write them; about 0.65 em a character), the label
    and title heights and the tick lengths and pads, all from rcParams. The panel's width and
    height in inches are returned. Call it once every artist that moves the limits is added."""
    rc = mpl.rcParams
    points = {k: FontProperties(size=rc[k]).get_size_in_points()
              for k in ("xtick.labelsize", "ytick.labelsize", "axes.labelsize", "axes.titlesize")}
    ticks = [t for t in ax.yaxis.get_majorticklocs() if min(ax.get_ylim()) <= t <= max(ax.get_ylim())]
    widest = max((len(t) for t in ax.yaxis.get_major_formatter().format_ticks(ticks)), default=1)
    left = rc["ytick.major.size"] + rc["ytick.major.pad"] + 0.65 * widest * points["ytick.labelsize"] + \
        rc["axes.labelpad"] + 1.2 * points["axes.labelsize"] + 6
    bottom = rc["xtick.major.size"] + rc["xtick.major.pad"] + 1.2 * points["xtick.labelsize"] + \
        rc["axes.labelpad"] + 1.2 * points["axes.labelsize"] + 6
    top = rc["axes.titlepad"] + 1.2 * points["axes.titlesize"] + 8
    right = 18  # half a tick label hangs past the last tick
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / 72 / width, right=1 - right / 72 / width,
                        bottom=bottom / 72 / height, top=1 - top / 72 / height)
    return width - (left + right) / 72, height - (bottom + top) / 72


def save(fig, path: Path, crop: bool = False) -> None:
    """The figure as a PNG, drawn once. ``crop``: for a figure with labels of any length and
    neither a layout nor margins of its own, a first layout pass measures its content and the
    PNG is cropped to it (``bbox_inches="tight"``)."""
    if path.parent.is_symlink():  # a run's plots/ that points elsewhere: never written through
        raise ValueError(f"{path.parent} is a symbolic link; plots are never written through one")
    buf = io.BytesIO()
    # zlib level 3, not Pillow's 6: half the time to encode for files about 10 % larger
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight" if crop else None, pil_kwargs={"compress_level": 3})
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
    # One or two panels: wide enough for the title and a legend stacked beside nothing else.
    fig, axes = subplots(nrow, ncol, figsize=(max(3.2 * ncol, 5.6), 2.5 * nrow + (0.5 if ncol < 3 else 0)),
                         squeeze=False, layout="constrained")
    bounds = {r["output"]: r for r in (table or [])}
    percent = int(round(100 * (level or 0.95)))
    handles = {}
    for ax, c in zip(axes.flat, columns):
        # the 30 counts first, drawn as one filled outline: matplotlib is handed neither a copy
        # of a million values nor 30 bars to lay out one by one
        counts, edges = np.histogram(frame[c].dropna().to_numpy(dtype=float), bins=30)
        handles.setdefault("replicates", ax.stairs(counts, edges, fill=True, color="#4C72B0"))
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
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=len(handles) if ncol >= 3 else 1, fontsize=8)
    fig.suptitle(title)
    save(fig, path)


def boxplots(frame: pd.DataFrame, columns: list[str], title: str, path: Path) -> None:
    """One panel per metric, each on its own scale (accuracy near 1 and a log loss near 0.15
    on one axis would leave both boxes flat), the folds' values drawn over each box."""
    columns = columns[:MAX_PANELS]
    if not columns:
        return
    fig, axes = subplots(1, len(columns), figsize=(max(2.2 * len(columns), 4.0), 3.2), squeeze=False,
                         layout="constrained")
    for ax, m in zip(axes.flat, columns):
        values = frame[m].dropna().to_numpy(dtype=float)
        ax.boxplot([values], widths=0.5)
        ax.plot(np.ones(values.size) + np.linspace(-0.12, 0.12, values.size), values, "o", ms=3, alpha=0.6,
                color="#4C72B0")
        ax.set_xticks([1], [m], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title)
    save(fig, path)


def _setting(value) -> str:
    """A grid value as a person writes it: 2 for 2.0, lists as JSON as they came."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def leaderboard(summary: dict, path: Path) -> None:
    """A sweep's best configurations as horizontal bars (mean ± sd of the ranking metric), the
    chosen one marked. The axis starts where the data make differences visible (not at 0,
    where 0.797 and 0.845 look alike), and its label says so."""
    rows = summary.get("table", [])[:20]
    metric = summary.get("metric", "metric")
    if not rows:
        return
    grid = summary.get("grid")  # the swept parameters; else every column but the metric's
    # A mapping's keys one each (arch_params.c1=8); a key this setting's mapping lacks is left out.
    labels = [", ".join(f"{k}={_setting(v)}" for k, v in r.items() if v is not None and
                        (k in grid if grid is not None else not k.startswith(metric) and k != "repeats"))
              for r in rows]
    means = np.array([float(r.get(f"{metric}_mean", r.get(metric)) or np.nan) for r in rows])
    sds = np.array([float(r.get(f"{metric}_sd") or 0.0) for r in rows])
    low, high = np.nanmin(means - sds), np.nanmax(means + sds)
    pad = 0.08 * (high - low) if high > low else max(abs(high), 1.0) * 0.05
    left = low - pad
    fig, ax = subplots(figsize=(7, 0.3 * len(rows) + 1.4))
    colours = ["#C44E52" if i == 0 else "#55A868" for i in range(len(rows))]
    ax.barh(range(len(rows)), means - left, left=left, xerr=sds, color=colours)
    ax.set_xlim(left, high + pad)
    ax.set_yticks(range(len(rows)), [f"{label}  (chosen)" if i == 0 else label for i, label in enumerate(labels)],
                  fontsize=7)
    ax.invert_yaxis()
    better = "larger is better" if summary.get("greater_is_better", True) else "smaller is better"
    ax.set_xlabel(f"{metric} (mean ± sd over repeats; {better}; axis from {left:.4g}, not 0)")
    ax.set_title(f"{summary.get('name', 'sweep')}: leaderboard", fontsize=9)
    save(fig, path, crop=True)  # labels of any length


def line(x, y, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    fig, ax = subplots(figsize=(5, 3.5))
    ax.plot(x, y, "o-")
    if len(x) and all(float(v).is_integer() for v in x):  # k = 2.5 is no setting: integer ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    one_panel_layout(fig, ax)
    save(fig, path)


def biplot(scores, loadings, features: list[str], path: Path, evr=None, labelled: int = BIPLOT_LABELS) -> None:
    """Rows on the first two principal components, with each feature's loading as an arrow
    (R's ``biplot(prcomp(...))``): arrows scaled to the spread of the scores. The ``labelled``
    longest arrows are drawn solid and named; any others are drawn faint, unnamed, and the legend
    says how many there are."""
    scores, loadings = np.asarray(scores, dtype=float), np.asarray(loadings, dtype=float)
    fig, ax = subplots(figsize=(6, 5))
    ax.scatter(scores[:, 0], scores[:, 1], s=6, alpha=0.4, color="#4C72B0", label="rows (scores)")
    reach = np.abs(scores[:, :2]).max(axis=0) if len(scores) else np.ones(2)
    scale = 0.8 * float(np.min(reach / np.maximum(np.abs(loadings[:, :2]).max(axis=0), 1e-300)))
    tips = loadings[:, :2] * scale
    order = np.argsort(-np.hypot(tips[:, 0], tips[:, 1]), kind="stable")
    named, rest = order[:labelled], order[labelled:]
    if len(rest):
        _arrows(ax, tips[rest], alpha=0.3, width=0.003, label=f"the other {len(rest)} loadings")
    _arrows(ax, tips[named], alpha=1.0, width=0.004,
            label="loadings" if not len(rest) else f"the {len(named)} longest of {len(tips)} loadings")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.margins(0.12)  # room for the names past the outermost tips
    labels = [f"PC{j + 1}" + (f" ({100 * evr[j]:.1f} %)" if evr is not None else "") for j in range(2)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    _name_tips(ax, one_panel_layout(fig, ax), tips[named] * 1.05, [str(features[i]) for i in named])
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    ax.set_title("biplot: scores and loadings (arrows)")
    save(fig, path)


def _name_tips(ax, panel: tuple[float, float], points, names: list[str], fontsize: float = 8) -> None:
    """Each name next to its point, on the side away from the origin, moved up or down by a line
    where it would cover a name already placed (longest arrow first). Sizes are estimated in
    inches from the axes' limits and the panel's size, so nothing is measured before the draw."""
    (x0, x1), (y0, y1), (width, height) = ax.get_xlim(), ax.get_ylim(), panel
    per_x, per_y = width / (x1 - x0), height / (y1 - y0)  # inches per data unit
    line_in = 1.3 * fontsize / 72
    placed: list[tuple[float, float, float, float]] = []
    for (a, b), name in zip(points, names):
        w = 0.62 * fontsize / 72 * len(name)  # DejaVu Sans averages about 0.6 em a character
        left = a * per_x if a >= 0 else a * per_x - w
        base = b * per_y - (0 if b >= 0 else line_in)
        boxes = [(left, base + k * line_in, left + w, base + (k + 1) * line_in) for k in (0, 1, -1, 2, -2)]
        box = next((q for q in boxes if not any(q[0] < p[2] and p[0] < q[2] and q[1] < p[3] and p[1] < q[3]
                                                for p in placed)), boxes[0])
        placed.append(box)
        ax.text(a, box[1] / per_y, name, color="#C44E52", fontsize=fontsize, ha="left" if a >= 0 else "right",
                va="bottom", bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                   "alpha": 0.7})


def _arrows(ax, tips, *, alpha: float, width: float, label: str) -> None:
    """Arrows from the origin to ``tips`` in data units, as one collection."""
    zeros = np.zeros(len(tips))
    ax.quiver(zeros, zeros, tips[:, 0], tips[:, 1], angles="xy", scale_units="xy", scale=1, color="#C44E52",
              alpha=alpha, width=width, label=label)


def _bars(ax, x, heights, *, color: str, label: str, width: float = 0.8):
    """Bars from 0, as ``ax.bar`` draws them, as one collection (not a patch laid out per bar)."""
    x, top = np.asarray(x, dtype=float), np.asarray(heights, dtype=float)
    left, right, zero = x - width / 2, x + width / 2, np.zeros_like(top)
    corners = np.stack([np.column_stack(c) for c in ((left, zero), (left, top), (right, top), (right, zero))], axis=1)
    bars = PolyCollection(corners, facecolors=color, edgecolors="none", label=label)
    bars.sticky_edges.y.append(0)  # the axis starts at 0, as under bars, with no margin below
    return ax.add_collection(bars)


def scree(ks, ratios, path: Path, kept: int | None = None) -> None:
    """Explained variance ratio of every component (the first ``kept`` marked) and its cumulative curve."""
    ks, ratios = list(ks), list(ratios)
    kept = len(ks) if kept is None else kept
    cum = pd.Series(ratios).cumsum()
    fig, ax = subplots(figsize=(max(6, 0.25 * len(ks)), 3.5))
    bars = [_bars(ax, ks[:kept], ratios[:kept], color="#4C72B0", label=f"explained variance ratio (kept: {kept})")]
    if kept < len(ks):
        bars.append(_bars(ax, ks[kept:], ratios[kept:], color="#B0B0B0", label="not kept"))
    (curve,) = ax.plot(ks, cum, "o-", color="#C44E52", label="cumulative")
    for level in (0.8, 0.95):
        ax.axhline(level, ls="--", color="grey", lw=0.8)
    ax.set_xlabel("component")
    ax.set_ylabel("fraction of variance")
    ax.set_xlim(0.4, len(ks) + 0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(handles=[curve, *bars], loc="center right")  # the curve first, as under ax.bar
    ax.set_title("scree plot")
    one_panel_layout(fig, ax)
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
