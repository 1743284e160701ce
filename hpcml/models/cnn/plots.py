"""PNG plots of a training run: loss/accuracy curves, first-layer filters, confusion matrix.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, so no
pyplot state or GUI backend is touched in worker processes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    # a figure with constrained layout already fits its labels: cropping it too lays it out twice
    fig.savefig(path, dpi=100, bbox_inches=None if fig.get_layout_engine() is not None else "tight")
    return path


def plot_history(history: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Train/validation loss and validation accuracy per epoch; ``title``: which training."""
    ep = [h["epoch"] for h in history]
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.5), layout="constrained")  # no label overlap between the panels
    ax1, ax2 = fig.subplots(1, 2)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (NLL)", title="Loss")
    ax1.legend()
    ax2.plot(ep, [h["val_accuracy"] for h in history], "s-", color="C1")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def first_layer_filters(model) -> np.ndarray | None:
    """First Conv2d weights as (k, h, w) (channel 0), or the first Linear's rows as images."""
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.weight.detach().cpu().numpy()[:, 0]
        if isinstance(m, nn.Linear):
            w = m.weight.detach().cpu().numpy()
            side = math.isqrt(w.shape[1])
            return w.reshape(-1, side, side)[:64] if side * side == w.shape[1] else None
    return None


def filter_mosaic(filters: np.ndarray, cols: int) -> np.ndarray:
    """The filters (k, h, w) tiled ``cols`` to a row, one NaN pixel between them and around,
    each scaled to [0, 1] on its own (as its own image would be coloured); a constant filter is 0."""
    k, h, w = filters.shape
    rows = math.ceil(k / cols)
    low = filters.min(axis=(1, 2), keepdims=True)
    span = filters.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(filters - low, span, out=np.zeros(filters.shape), where=span > 0)
    mosaic = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1), np.nan)
    for i, f in enumerate(scaled):
        r, c = divmod(i, cols)
        mosaic[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = f
    return mosaic


def plot_filters(model, path: str | Path, max_filters: int = 64, title: str | None = None) -> Path | None:
    """Grid of first-layer filters (3x3, 5x5, 9x9 kernels...), each on its own colour scale:
    one image of them all (one axes, not one per filter: a fraction of the drawing time)."""
    w = first_layer_filters(model)
    if w is None:
        return None
    w = w[:max_filters]
    cols = min(8, len(w))
    rows = math.ceil(len(w) / cols)
    fig = Figure(figsize=(1.2 * cols, 1.2 * rows))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86 if rows > 1 else 0.75))
    ax.axis("off")
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")  # the gaps between the filters
    ax.imshow(filter_mosaic(w, cols), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    fig.suptitle(f"First-layer filters ({w.shape[1]}x{w.shape[2]})" + (f"\n{title}" if title else ""), fontsize=9)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, path: str | Path, class_names: Sequence | None = None,
                   title: str | None = None) -> Path:
    """Confusion matrix with counts; rows true class, columns prediction. Class names longer
    than a digit or two are written at an angle, so neighbours never overlap."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    fig = Figure(figsize=(0.6 * k + 2, 0.6 * k + 1.5))
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set(xticks=range(k), yticks=range(k), yticklabels=names, xlabel="predicted", ylabel="true",
           title="Confusion matrix" + (f"\n{title}" if title else ""))
    slanted = max((len(n) for n in names), default=0) > 2
    ax.set_xticklabels(names, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                       rotation_mode="anchor")
    ax.title.set_fontsize(9)
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > thresh else "black")
    return _save(fig, path)


def write_training_plots(directory: str | Path, history, model, cm=None, class_names=None,
                         title: str | None = None) -> list[Path]:
    """All plots of one run into ``directory``, each titled with ``title`` (which training:
    its grid point or task id); returns the paths written."""
    d = Path(directory)
    out = [plot_history(history, d / "curves.png", title)]
    f = plot_filters(model, d / "filters.png", title=title)
    if f is not None:
        out.append(f)
    if cm is not None:
        out.append(plot_confusion(cm, d / "confusion.png", class_names, title))
    return out
