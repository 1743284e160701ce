"""The documentation stays true: every spec field is documented, every example validates,
and the core examples run and agree with an independent reference."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import hpcml
from hpcml.spec import PLAN_KINDS, BackendSpec, DataSpec, JobSpec, PlanSpec

from conftest import ROOT, hpcml_cli

DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.yaml"))
CORE_EXAMPLES = ["bootstrap", "logistic-cv", "kmeans-sweep", "pca-fit", "svd-replicate", "ols-shards"]


def _documented(text: str, name: str) -> bool:
    return re.search(rf"`{re.escape(name)}`", text) is not None


def test_every_spec_field_is_in_job_spec_md():
    text = (DOCS / "job-spec.md").read_text()
    models = [JobSpec, DataSpec, BackendSpec, PlanSpec] + [PlanSpec.model_fields[k].annotation.__args__[0] for k in PLAN_KINDS]
    fields = {name for m in models for name in m.model_fields}
    missing = sorted(f for f in fields if not _documented(text, f))
    assert not missing, f"undocumented spec fields: {missing}"


@pytest.mark.parametrize("kind", ["ols", "logistic", "naive_bayes", "kmeans", "pca", "svd", "als", "sleep", "python", "command"])
def test_every_core_model_parameter_is_in_job_spec_md(kind):
    from hpcml.models.base import get_model

    text = (DOCS / "job-spec.md").read_text()
    missing = [p for p in get_model(kind).Params.model_fields if not _documented(text, p)]
    assert not missing, f"{kind}: undocumented parameters {missing}"


def test_every_local_backend_option_is_in_job_spec_md():
    from hpcml.backends.local import LocalOptions

    text = (DOCS / "job-spec.md").read_text()
    missing = [o for o in LocalOptions.model_fields if not _documented(text, o)]
    assert not missing, f"job-spec.md: undocumented local backend options {missing}"


@pytest.mark.parametrize("name", ["dask", "mpi", "spark"])
def test_every_backend_option_is_documented(name):
    from hpcml.backends import get_backend_class

    page = DOCS / "backends" / f"{name}.md"
    assert page.exists(), page
    text = page.read_text()
    missing = [o for o in get_backend_class(name).Options.model_fields if not _documented(text, o)]
    assert not missing, f"{page.name}: undocumented options {missing}"


def test_readme_shows_the_two_commands_first():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "make run" in first_block and "make test" in first_block
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_validates(path):
    proc = hpcml_cli("validate", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok: ")


def _run_example(stem: str, tmp_path: Path):
    return hpcml.run(DOCS / "examples" / f"{stem}.yaml", out=tmp_path / stem, progress=False)


@pytest.mark.slow
def test_core_examples_run_and_match_references(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    results = {stem: _run_example(stem, tmp_path) for stem in CORE_EXAMPLES}
    assert all(r.ok for r in results.values()), {s: r.n_failed for s, r in results.items()}
    assert len(results["bootstrap"].results) == 1000
    # PCA: every component kept; the k for 90 % variance equals scikit-learn's choice.
    X = load_digits().data / 16.0
    ref = PCA(n_components=0.90, svd_solver="full").fit(X)
    pca = results["pca-fit"]
    got = pca.results.iloc[0]
    assert int(got["n_components"]) == 64
    assert pca.summary["variance_thresholds"]["k_90"] == ref.n_components_
    assert pca.summary["variance_thresholds"]["k_95"] is not None
    np.testing.assert_allclose(got["cum_evr_1"], ref.explained_variance_ratio_[0], rtol=1e-10)
    assert (pca.run_dir / "artifacts" / "fit-000000" / "scores.parquet").exists()
    # Sweep: the leaderboard lists every k of the grid, best (largest held-out Calinski-Harabasz
    # index) first.
    board = results["kmeans-sweep"].summary["table"]
    assert sorted(r["k"] for r in board) == [2, 3, 4, 5, 6]
    key = "test_calinski_harabasz_mean"
    assert board[0][key] == max(r[key] for r in board)
    # CV: 5 folds x 2 repeats, a logistic fit that beats the majority class.
    cv = results["logistic-cv"]
    assert len(cv.results) == 10 and cv.results["test_accuracy"].mean() > 0.8
    # Shards: 8 contiguous blocks of 25,000 rows each.
    shards = results["ols-shards"].results
    assert shards["rows"].tolist() == [25_000] * 8


def test_docs_never_promise_prcomps_signs():
    """PCA's signs follow hpcml's own rule (largest-magnitude loading positive), not LAPACK's:
    every mention of prcomp's rotation says "up to the sign"."""
    import re

    for path in sorted((ROOT / "docs").glob("*.md")):
        for line in path.read_text().splitlines():
            for match in re.finditer(r"prcomp'?s?`?'?s? rotation", line):
                assert "sign" in line[match.start(): match.start() + 200], f"{path.name}: {line[:120]}"
