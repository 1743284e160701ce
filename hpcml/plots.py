"""PNG plots of a run (matplotlib, Agg: batch nodes have no display)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import pandas as pd  # noqa: E402

from .store import atomic_write_bytes  # noqa: E402
from .summarize import output_columns  # noqa: E402

MAX_PANELS = 16


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _histograms(frame: pd.DataFrame, columns: list[str], title: str, path: Path, table: list[dict] | None = None,
                table_level: float | None = None) -> None:
    columns = columns[:MAX_PANELS]
    if not columns:
        return
    ncol = min(4, len(columns))
    nrow = math.ceil(len(columns) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.5 * nrow), squeeze=False, layout="constrained")
    bounds = {r["output"]: r for r in (table or [])}
    level = int(round(100 * (table_level or 0.95)))
    handles = {}
    for ax, c in zip(axes.flat, columns):
        handles.setdefault("replicates", ax.hist(frame[c].dropna(), bins=30, color="#4C72B0")[2][0])
        row = bounds.get(c, {})
        for key in ("pct_low", "pct_high"):
            if row.get(key) is not None:
                handles.setdefault(f"{level} % percentile interval", ax.axvline(row[key], color="#C44E52", lw=1, ls="--"))
        if row.get("estimate") is not None:
            handles.setdefault("full-data estimate", ax.axvline(row["estimate"], color="black", lw=1.5))
        ax.set_title(c, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def _scree(row: pd.Series, path: Path) -> None:
    evr = sorted((int(c.split("_")[-1]), float(row[c])) for c in row.index if c.startswith("evr_"))
    if not evr:
        return
    ks, vals = zip(*evr)
    cum = pd.Series(vals).cumsum()
    kept = int(row.get("n_components", len(ks)))
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(ks)), 3.5))
    ax.bar(ks[:kept], vals[:kept], color="#4C72B0", label=f"explained variance ratio (kept: {kept})")
    if kept < len(ks):
        ax.bar(ks[kept:], vals[kept:], color="#B0B0B0", label="not kept")
    ax.plot(ks, cum, "o-", color="#C44E52", label="cumulative")
    for level in (0.8, 0.95):
        ax.axhline(level, ls="--", color="grey", lw=0.8)
    ax.set_xlabel("component")
    ax.set_xlim(0.4, len(ks) + 0.6)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend()
    _save(fig, path)


def _leaderboard(summary: dict, path: Path) -> None:
    rows = summary.get("table", [])[:20]
    metric = summary.get("metric", "metric")
    if not rows:
        return
    labels = [", ".join(f"{k}={v}" for k, v in r.items() if not k.startswith(metric) and k != "repeats") for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r[f"{metric}_mean"] for r in rows],
            xerr=[r[f"{metric}_sd"] or 0 for r in rows], color="#55A868")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    _save(fig, path)


def _elbow(results: pd.DataFrame, path: Path) -> None:
    ok = results.loc[results["status"] == "ok"]
    curve = ok.groupby("param_k")["inertia"].min().sort_index()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(curve.index, curve.values, "o-")
    ax.set_xlabel("k")
    ax.set_ylabel("inertia (best over repeats)")
    ax.set_title("k-means elbow")
    _save(fig, path)


def write_plots(job, results: pd.DataFrame, summary: dict, plot_dir: Path) -> list[Path]:
    ok = results.loc[results["status"] == "ok"] if "status" in results else results
    if ok.empty:
        return []
    kind = job.plan_kind
    name = job.spec.name
    if kind in ("bootstrap", "replicate"):
        _histograms(ok, output_columns(ok), f"{name}: {kind} distribution", plot_dir / f"{kind}.png", summary.get("table"),
                    summary.get("level"))
    elif kind == "cv":
        metrics = [c for c in output_columns(ok) if c.startswith("test_")]
        if metrics:
            fig, ax = plt.subplots(figsize=(1.5 * len(metrics) + 2, 3.5))
            ax.boxplot([ok[m].dropna() for m in metrics])
            ax.set_xticks(range(1, len(metrics) + 1), metrics, rotation=30, fontsize=8)
            ax.set_title(f"{name}: {job.spec.plan.cv.folds}-fold CV")
            _save(fig, plot_dir / "cv.png")
    elif kind == "sweep":
        _leaderboard(summary, plot_dir / "leaderboard.png")
        if job.model.name == "kmeans" and "param_k" in ok and "inertia" in ok:
            _elbow(ok, plot_dir / "elbow.png")
    if job.model.name == "pca":
        _scree(ok.iloc[0], plot_dir / "scree.png")
    return sorted(plot_dir.glob("*.png")) if plot_dir.exists() else []
