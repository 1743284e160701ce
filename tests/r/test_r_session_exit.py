"""An R session that used hpcml's local workers ends as quietly as it would with doParallel: no
Python warning at exit (multiprocessing's "resource_tracker: There appear to be N leaked
semaphore objects" ended every such script once), nothing on stderr at all."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

RSCRIPT = shutil.which("Rscript")

SCRIPT = """
suppressPackageStartupMessages({library(hpcml); library(foreach)})
registerDoHpcml(workers = 2)
x <- foreach(i = 1:40, .combine = c) %dopar% sqrt(i)
y <- hpcml_lapply(1:30, function(i) i^2, workers = 2)
stopifnot(abs(sum(x) - sum(sqrt(1:40))) < 1e-12, sum(unlist(y)) == sum((1:30)^2))
cat("done\\n")
"""


@pytest.mark.skipif(RSCRIPT is None, reason="R not installed (make test installs it)")
def test_an_r_session_with_local_workers_ends_without_warnings(tmp_path):
    installed = subprocess.run([RSCRIPT, "-e", "cat(requireNamespace('hpcml', quietly = TRUE))"],
                               capture_output=True, text=True, timeout=120)
    if installed.stdout.strip() != "TRUE":
        pytest.skip("the hpcml R package is not installed (make test installs it)")
    (tmp_path / "script.R").write_text(SCRIPT)
    proc = subprocess.run([RSCRIPT, str(tmp_path / "script.R")], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "RETICULATE_PYTHON": sys.executable})
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stdout + proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
