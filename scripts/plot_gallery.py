"""Regenerate docs/plots.md and docs/images/gallery/: every plot kind, drawn by running the
docs' own examples with the command line, as a user would see them.

    python scripts/plot_gallery.py            # runs the examples (about a minute), writes the page
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "images" / "gallery"
PAGE = ROOT / "docs" / "plots.md"

# (example, the plots it draws with a caption each)
EXAMPLES = [
    ("bootstrap.yaml", {"bootstrap.png": "`bootstrap` of OLS: each output's replicates, the full-data estimate "
                                         "and the percentile interval"}),
    ("logistic-cv.yaml", {"cv.png": "`cv`: the test metrics of every fold"}),
    ("kmeans-sweep.yaml", {"leaderboard.png": "`sweep`: the leaderboard, the chosen setting marked, the axis "
                                              "where the differences show",
                           "elbow.png": "`sweep` of k-means: held-out inertia of each k"}),
    ("pca-fit.yaml", {"scree.png": "`fit` of PCA: the scree plot, the components kept marked",
                      "biplot.png": "`fit` of PCA: rows on the first two components, the longest loadings named"}),
]


def main() -> int:
    GALLERY.mkdir(parents=True, exist_ok=True)
    lines = ["# Plots", "",
             "What each run draws into `RUN_DIR/plots/` (and shows in `report.html`), made by running the",
             "examples in [examples/](examples) with `hpcml run`. Regenerate this page with",
             "`python scripts/plot_gallery.py`.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for example, plots in EXAMPLES:
            out = Path(tmp) / Path(example).stem
            proc = subprocess.run([sys.executable, "-m", "hpcml.cli", "run", str(ROOT / "docs" / "examples" / example),
                                   "--out", str(out), "-q"], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                return 1
            lines += [f"## [{example}](examples/{example})", ""]
            for name, caption in plots.items():
                target = GALLERY / f"{Path(example).stem}-{name}"
                shutil.copyfile(out / "plots" / name, target)
                lines += [f"![{caption}](images/gallery/{target.name})", "", caption, ""]
    PAGE.write_text("\n".join(lines))
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
