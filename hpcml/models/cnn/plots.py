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
from matplotlib.font_manager import FontProperties


def _save(fig: Figure, path: str | Path, crop: bool = False) -> Path:
    """``crop``: a figure neither laid out by matplotlib nor sized to its content is saved cropped
    to its content (``bbox_inches="tight"``: a first pass measures it, then it is drawn)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight" if crop else None)
    return path


def plot_history(history: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Train/validation loss and validation accuracy per epoch; ``title``: which training."""
    ep = [h["epoch"] for h in history]
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.5))
    ax1, ax2 = fig.add_axes((0, 0, 1, 1)), fig.add_axes((0, 0, 1, 1))  # placed once they are drawn on
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (NLL)", title="Loss")
    ax1.legend()
    ax2.plot(ep, [h["val_accuracy"] for h in history], "s-", color="C1")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    side_by_side(fig, (ax1, ax2), fig.suptitle(title, fontsize=9) if title else None)
    return _save(fig, path)


def side_by_side(fig: Figure, axes: Sequence, suptitle=None) -> None:
    """Panels of one row, each with a title and a label on each axis, placed with margins
    measured from what they draw (the y tick labels of the current limits as the formatter
    writes them, the labels, the titles and the figure's title ``suptitle``): no layout pass at
    the draw, no two panels' labels overlapping. Call it once the limits are set."""
    rc = matplotlib.rcParams
    renderer = FigureCanvasAgg(fig).get_renderer()
    width, height = fig.get_size_inches() * 72

    def tall(text) -> float:
        return text_size(renderer, "Ag", text.get_fontsize())[1]

    def y_labels(ax) -> float:
        low, high = sorted(ax.get_ylim())
        ticks = [t for t in ax.yaxis.get_majorticklocs() if low <= t <= high]
        size = FontProperties(size=rc["ytick.labelsize"]).get_size_in_points()
        return max((text_size(renderer, t, size)[0] for t in ax.yaxis.get_major_formatter().format_ticks(ticks)),
                   default=0.0)

    tick = rc["ytick.major.size"] + rc["ytick.major.pad"]
    lefts = [tick + y_labels(ax) + rc["axes.labelpad"] + tall(ax.yaxis.label) + 6 for ax in axes]
    x_tick = FontProperties(size=rc["xtick.labelsize"]).get_size_in_points()
    bottom = rc["xtick.major.size"] + rc["xtick.major.pad"] + text_size(renderer, "0", x_tick)[1] + \
        rc["axes.labelpad"] + tall(axes[0].xaxis.label) + 6
    top = rc["axes.titlepad"] + max(tall(ax.title) for ax in axes) + 6 + \
        ((1 - suptitle.get_position()[1]) * height + text_size(renderer, suptitle.get_text(), suptitle.get_fontsize())[1]
         if suptitle is not None else 0)
    right = 12  # half a tick label hangs past the last tick
    panel = (width - sum(lefts) - right * len(axes)) / len(axes)
    x = 0.0
    for ax, left in zip(axes, lefts):
        x += left
        ax.set_position((x / width, bottom / height, panel / width, (height - bottom - top) / height))
        x += panel + right


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
    return _save(fig, path, crop=True)


def text_size(renderer, text: str, points: float) -> tuple[float, float]:
    """Width and height in points of ``text`` (lines of it) at ``points``, as the Agg renderer
    will draw it, measured without drawing the figure."""
    prop = FontProperties(size=points)
    sizes = [renderer.get_text_width_height_descent(line or " ", prop, ismath=False)[:2]
             for line in text.split("\n")]
    scale = 72 / renderer.dpi
    return max(w for w, _ in sizes) * scale, sum(h for _, h in sizes) * scale * 1.2


def plot_confusion(cm: np.ndarray, path: str | Path, class_names: Sequence | None = None,
                   title: str | None = None) -> Path:
    """Confusion matrix with counts; rows true class, columns prediction. Class names longer
    than a digit or two are written at an angle, so neighbours never overlap.

    The figure is sized to what it draws (the names, the title, the colour bar's labels are
    measured first), so it is drawn once, not once to find its content's box and again to save
    it cropped to that box."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    rc = matplotlib.rcParams
    fig = Figure()
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.add_axes((0, 0, 1, 1))
    cax = fig.add_axes((0, 0, 1, 1))
    im = ax.imshow(cm, cmap="Blues")
    bar = fig.colorbar(im, cax=cax)
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
    # the margins, in points, from what is drawn in them
    tick = ax.xaxis.get_ticklabels()[0].get_fontsize() if k else rc["font.size"]
    label = ax.xaxis.label.get_fontsize()
    name_w, name_h = max((text_size(renderer, n, tick) for n in names), default=(0.0, 0.0))
    name_h = text_size(renderer, "Ag", tick)[1]
    label_h = text_size(renderer, "Ag", label)[1]
    title_w, title_h = text_size(renderer, ax.get_title(), 9)
    cbar_ticks = [t for t in bar.ax.yaxis.get_majorticklocs() if bar.vmin <= t <= bar.vmax]
    cbar_w = max((text_size(renderer, t, tick)[0]
                  for t in bar.ax.yaxis.get_major_formatter().format_ticks(cbar_ticks)), default=0.0)
    side = 72 * min((0.6 * k + 2) * 0.775 * 0.8, (0.6 * k + 1.5) * 0.77)  # the matrix, as before
    cell = side / max(k, 1)
    ticks = rc["xtick.major.size"] + rc["xtick.major.pad"]
    slant = np.sqrt(0.5)
    down = (name_w + name_h) * slant if slanted else name_h  # how far the names reach below the axis
    reach = name_w * slant + name_h * slant - cell / 2 if slanted else 0.0  # the first name, left of the axes
    left = max(ticks + name_w + rc["axes.labelpad"] + label_h, reach) + 8
    bottom = ticks + down + rc["axes.labelpad"] + label_h + 8
    top = rc["axes.titlepad"] + title_h + 8
    gap, width = 0.25 * 72, 0.2 * 72  # the colour bar beside the matrix
    right = gap + width + ticks + cbar_w + 8
    spill = max(0.0, title_w / 2 + 8 - side / 2 - min(left, right))  # a long title: room on both sides
    left, right = left + spill, right + spill
    fig_w, fig_h = left + side + right, bottom + side + top
    fig.set_size_inches(fig_w / 72, fig_h / 72)
    ax.set_position((left / fig_w, bottom / fig_h, side / fig_w, side / fig_h))
    cax.set_position(((left + side + gap) / fig_w, bottom / fig_h, width / fig_w, side / fig_h))
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
