"""The drawing helpers: what each figure shows, and that a figure laid out without a layout
pass still fits its labels (checked against the text extents matplotlib measures when it draws)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcml.report.plots as plots


@pytest.fixture
def drawn(monkeypatch):
    """The figures the helpers save, drawn (as the PNG is) and kept for inspection."""
    figures = []

    def keep(fig, path, crop=False):
        fig.canvas.draw()
        figures.append(fig)

    monkeypatch.setattr(plots, "save", keep)
    return figures


def _inside_figure(fig, artists) -> None:
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    for artist in artists:
        if not artist.get_visible() or not artist.get_text():
            continue
        box = artist.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (artist.get_text(), box)


def _panel_text(fig):
    """The title, axis labels, the y axis' offset text and the tick labels drawn (within the limits)."""
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    ticks = [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1] + \
        [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
    assert ticks
    return [ax.title, ax.xaxis.label, ax.yaxis.label, ax.yaxis.get_offset_text(), *ticks]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_biplot_names_the_longest_loadings(drawn, tmp_path):
    rng = np.random.default_rng(1)
    loadings = rng.normal(size=(64, 2)) * 0.05
    longest = rng.choice(64, size=10, replace=False)
    loadings[longest] *= 20  # these ten are the longest arrows by far
    names = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
    plots.biplot(rng.normal(size=(500, 2)), loadings, names, tmp_path / "biplot.png", [0.3, 0.2])
    (fig,) = drawn
    ax = fig.axes[0]
    named = [t for t in ax.texts]
    assert sorted(t.get_text() for t in named) == sorted(names[i] for i in longest)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["rows (scores)", "the other 54 loadings", "the 10 longest of 64 loadings"]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in named]
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    _inside_figure(fig, _panel_text(fig))


def test_biplot_of_few_features_names_them_all(drawn, tmp_path):
    rng = np.random.default_rng(2)
    plots.biplot(rng.normal(size=(50, 2)) * 3e4, rng.normal(size=(4, 2)), list("abcd"), tmp_path / "b.png")
    ax = drawn[0].axes[0]
    assert sorted(t.get_text() for t in ax.texts) == list("abcd")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rows (scores)", "loadings"]
    _inside_figure(drawn[0], _panel_text(drawn[0]))


@pytest.mark.parametrize("y", [[495.0, 120.0, 60.0, 44.0], [-4.5e5, -2e5, -1e5, -4e4], [4.5e7, 2e7, 1e7, 4e6],
                               [4.5e-4, 2e-4, 1e-4, 4e-5]], ids=["small", "wide-negative", "offset", "fractions"])
def test_one_panel_figures_fit_their_labels(drawn, tmp_path, y):
    plots.line([1, 2, 3, 4], y, "k", "inertia (best over repeats)", "k-means elbow", tmp_path / "line.png")
    plots.scree(range(1, 41), np.full(40, 1 / 40), tmp_path / "scree.png", 30)
    for fig in drawn:
        _inside_figure(fig, _panel_text(fig))
        # and not much room to spare: the y label sits within a third of an inch of the edge
        box = fig.axes[0].yaxis.label.get_window_extent(fig.canvas.get_renderer())
        assert box.x0 < 0.35 * fig.dpi


def test_histograms_count_every_replicate(drawn, tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.exponential(size=1000)})
    table = [{"output": "a", "estimate": 0.0, "pct_low": -1.96, "pct_high": 1.96}]
    plots.histograms(frame, ["a", "b"], "boot", tmp_path / "h.png", table, 0.95)
    (fig,) = drawn
    for ax, column in zip(fig.axes, ["a", "b"]):
        (steps,) = ax.patches
        counts, edges = np.histogram(frame[column], bins=30)
        np.testing.assert_array_equal(steps.get_data().values, counts)
        np.testing.assert_allclose(steps.get_data().edges, edges)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == \
        ["replicates", "95 % percentile interval", "full-data estimate"]


@pytest.fixture
def drawn_with_crop(monkeypatch):
    """(figure, whether it is saved cropped to its content) of each figure a helper saves."""
    figures = []

    def keep(fig, path, crop=False):
        fig.canvas.draw()
        figures.append((fig, crop))

    monkeypatch.setattr(plots, "save", keep)
    return figures


def _every_kind(tmp_path):
    """Each plot kind with the longest labels the docs' examples give it."""
    rng = np.random.default_rng(0)
    one = pd.DataFrame({"coef_(Intercept)": rng.normal(size=200)})
    many = pd.DataFrame(rng.normal(size=(200, 11)), columns=[f"coef_{c}" for c in "abcdefghijk"])
    row = [{"output": "coef_(Intercept)", "estimate": 0.0, "pct_low": -1.9, "pct_high": 2.0}]
    board = {"name": "iris-kmeans-sweep", "metric": "test_calinski_harabasz", "greater_is_better": True,
             "grid": ["arch_params.c1", "arch_params.c2", "arch_params.hidden", "lr"],
             "table": [{"arch_params.c1": 8, "arch_params.c2": 16, "arch_params.hidden": 32, "lr": 0.01,
                        "test_calinski_harabasz_mean": 0.845, "test_calinski_harabasz_sd": 0.01},
                       {"arch_params.c1": 4, "arch_params.c2": 8, "arch_params.hidden": 16, "lr": 0.1,
                        "test_calinski_harabasz_mean": 0.797, "test_calinski_harabasz_sd": 0.02}]}
    chains = {f"chain {i}": pd.DataFrame(rng.normal(size=(300, 3)), columns=["beta_1", "beta_2", "sigma_sq"])
              for i in range(4)}
    return {
        "histogram of one output": lambda: plots.histograms(one, list(one), "diabetes-bootstrap: bootstrap "
                                                            "distribution", tmp_path / "h1.png", row, 0.95),
        "histograms": lambda: plots.histograms(many, list(many), "diabetes-bootstrap: bootstrap distribution",
                                               tmp_path / "h.png"),
        "boxplots": lambda: plots.boxplots(many, list(many)[:4], "logistic-cv: test metrics per fold",
                                           tmp_path / "b.png"),
        "leaderboard": lambda: plots.leaderboard(board, tmp_path / "l.png"),
        "elbow": lambda: plots.line([2, 3, 4, 5, 6], [112.0, 59.0, 41.0, 35.0, 29.0], "k",
                                    "inertia (best over repeats)", "k-means elbow", tmp_path / "e.png"),
        "scree": lambda: plots.scree(range(1, 65), np.full(64, 1 / 64), tmp_path / "s.png", kept=40),
        "biplot": lambda: plots.biplot(rng.normal(size=(150, 2)) * [3, 1], np.array(
            [[0.36, 0.66], [-0.08, 0.73], [0.86, -0.17], [0.36, -0.07]]), ["sepal length (cm)", "sepal width (cm)",
                                                                           "petal length (cm)", "petal width (cm)"],
            tmp_path / "bi.png", [0.92, 0.05]),
        "traces": lambda: plots.traces(chains, ["beta_1", "beta_2", "sigma_sq"], "bayesm-chains: traces",
                                       tmp_path / "t.png", burnin=50, rhat={"beta_1": 1.001}),
    }


@pytest.mark.parametrize("kind", list(_every_kind(None)))
def test_no_artist_is_cut_off_at_the_figure_edge(drawn_with_crop, tmp_path, kind):
    """What a person checks first: every title, label, tick and legend lies inside the figure
    (matplotlib's tight bounding box of the drawn figure), or the figure is saved cropped to it."""
    _every_kind(tmp_path)[kind]()
    ((fig, crop),) = drawn_with_crop
    if crop:
        return  # saved with bbox_inches="tight": the PNG is its content's box
    renderer = fig.canvas.get_renderer()
    box, frame = fig.get_tightbbox(renderer), fig.bbox_inches
    assert box.x0 >= frame.x0 - 0.01 and box.y0 >= frame.y0 - 0.01, (kind, box, frame)
    assert box.x1 <= frame.x1 + 0.01 and box.y1 <= frame.y1 + 0.01, (kind, box, frame)


def test_the_leaderboard_marks_the_choice_and_shows_the_difference(drawn, tmp_path):
    board = {"name": "sweep", "metric": "test_accuracy", "greater_is_better": True, "grid": ["k"],
             "table": [{"k": 3.0, "test_accuracy_mean": 0.845, "test_accuracy_sd": 0.0},
                       {"k": 2.0, "test_accuracy_mean": 0.797, "test_accuracy_sd": 0.0}]}
    plots.leaderboard(board, tmp_path / "l.png")
    (fig,) = drawn
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["k=3  (chosen)", "k=2"]
    left, right = ax.get_xlim()
    assert 0.7 < left < 0.797 and right > 0.845  # not from 0, where the bars would look alike
    assert "not 0" in ax.get_xlabel() and "larger is better" in ax.get_xlabel()


def test_the_leaderboard_names_a_mapping_key_by_key(drawn, tmp_path):
    """A sweep over a mapping: each key of it in the label, a key a setting lacks left out."""
    board = {"name": "sweep", "metric": "val_accuracy", "greater_is_better": True,
             "grid": ["arch_params.c1", "arch_params.c2", "lr"],
             "table": [{"arch_params.c1": 8, "arch_params.c2": 16, "lr": 0.01, "val_accuracy_mean": 0.9},
                       {"arch_params.c1": 4, "arch_params.c2": None, "lr": 0.1, "val_accuracy_mean": 0.8}]}
    plots.leaderboard(board, tmp_path / "l.png")
    (fig,) = drawn
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == \
        ["arch_params.c1=8, arch_params.c2=16, lr=0.01  (chosen)", "arch_params.c1=4, lr=0.1"]


def test_the_training_plots_keep_their_labels_inside(monkeypatch, tmp_path):
    """A CNN training's curves and confusion matrix with Fashion-MNIST's class names (both laid
    out from their measured labels, drawn once, not cropped): every label inside what is saved,
    the long class names slanted so that neighbours do not overlap, and each plot titled with
    its training."""
    pytest.importorskip("torch")
    import hpcml.models.cnn.plots as cnn_plots

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figures = []
    monkeypatch.setattr(cnn_plots, "_save", lambda fig, path, crop=False: (FigureCanvasAgg(fig).draw(), figures.append(fig)))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.8 + e / 100} for e in (1, 2, 3)]
    title = "arch_params.c1=8,arch_params.c2=16,lr=0.01"
    cnn_plots.plot_history(history, tmp_path / "curves.png", title)
    cnn_plots.plot_confusion(np.arange(100).reshape(10, 10), tmp_path / "confusion.png", names, title)
    curves, confusion = figures
    assert curves.get_suptitle() == title and title in confusion.axes[0].get_title()
    renderer = curves.canvas.get_renderer()
    for fig in (curves, confusion):
        box, frame = fig.get_tightbbox(fig.canvas.get_renderer()), fig.bbox_inches
        assert box.x0 >= frame.x0 - 0.01 and box.y0 >= frame.y0 - 0.01, (box, frame)
        assert box.x1 <= frame.x1 + 0.01 and box.y1 <= frame.y1 + 0.01, (box, frame)
    # the right panel's tick labels and label clear the left panel
    assert curves.axes[1].get_tightbbox(renderer).x0 > curves.axes[0].get_window_extent(renderer).x1
    labels = confusion.axes[0].get_xticklabels()
    assert [t.get_text() for t in labels] == names
    assert all(t.get_rotation() == 45 and t.get_horizontalalignment() == "right" for t in labels)
    # slanted at 45 degrees, neighbours are apart by their tick spacing across the text's direction
    renderer = confusion.canvas.get_renderer()
    spacing = labels[1].get_window_extent(renderer).x1 - labels[0].get_window_extent(renderer).x1
    assert spacing / np.sqrt(2) > labels[0].get_fontsize() * confusion.dpi / 72
