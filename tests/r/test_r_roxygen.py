"""The R package's NAMESPACE and man/*.Rd are exactly what roxygen2 writes from R/R/*.R.

NAMESPACE is generated from the roxygen tags (`@export`, `@importFrom`, S3 methods), never
edited by hand: a function whose tag is missing would silently stop being exported the next
time anyone regenerates it. So roxygen2 runs on a copy of the package with NAMESPACE and man/
removed (roxygen2 refuses to overwrite a NAMESPACE it did not write, which would hide a
hand-edited one), and what it writes must equal what is committed.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import ROOT

RSCRIPT = shutil.which("Rscript")
pytestmark = [pytest.mark.r, pytest.mark.skipif(RSCRIPT is None, reason="needs R (scripts/install_system.sh)")]


def test_r_namespace_and_man_pages_are_what_roxygen_generates(tmp_path):
    has = subprocess.run([RSCRIPT, "-e", 'quit(status = !requireNamespace("roxygen2", quietly = TRUE))'],
                         capture_output=True)
    assert has.returncode == 0, "roxygen2 is not installed: bash scripts/install_system.sh (r-cran-roxygen2)"
    pkg = tmp_path / "hpcml"
    shutil.copytree(ROOT / "R", pkg, ignore=shutil.ignore_patterns("*.Rcheck", "*.tar.gz", ".Rhistory"))
    (pkg / "NAMESPACE").unlink()
    shutil.rmtree(pkg / "man")
    proc = subprocess.run([RSCRIPT, "-e", 'roxygen2::roxygenise(".")'], cwd=pkg, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"roxygen2 failed:\n{proc.stdout}\n{proc.stderr}"
    fix = "run Rscript -e 'roxygen2::roxygenise(\"R\")' and commit R/NAMESPACE and R/man"
    assert (pkg / "NAMESPACE").read_text() == (ROOT / "R" / "NAMESPACE").read_text(), f"R/NAMESPACE differs: {fix}"
    generated = {p.name: p.read_text() for p in (pkg / "man").glob("*.Rd")}
    committed = {p.name: p.read_text() for p in (ROOT / "R" / "man").glob("*.Rd")}
    assert sorted(generated) == sorted(committed), f"R/man's pages differ from roxygen2's: {fix}"
    changed = [name for name in generated if generated[name] != committed[name]]
    assert not changed, f"R/man pages differ from roxygen2's: {changed}: {fix}"
    desc = (ROOT / "R" / "DESCRIPTION").read_text()
    version = subprocess.run([RSCRIPT, "-e", 'cat(format(packageVersion("roxygen2")))'], capture_output=True,
                             text=True).stdout.strip()
    assert f"RoxygenNote: {version}" in desc, f"R/DESCRIPTION's RoxygenNote is not the installed roxygen2 {version}"
