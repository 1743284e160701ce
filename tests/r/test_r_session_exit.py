"""An R session that used hpcml's local workers ends as quietly as it would with doParallel: no
Python warning at exit (multiprocessing's "resource_tracker: There appear to be N leaked
semaphore objects" ended every such script once), nothing on stderr at all."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

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


DASK_SCRIPT = """
suppressPackageStartupMessages({library(hpcml); library(foreach)})
registerDoHpcml(backend = "dask", workers = 2)
kept <- "import hpcml.backends.dask_warm as w; kept = [c.scheduler_address for _, c in w._WARM.values()]"
for (k in 1:3) {
  x <- foreach(i = 1:20, .combine = c) %dopar% sqrt(i)
  cat(unlist(reticulate::py_run_string(kept)$kept), "\\n")
}
stopifnot(abs(sum(x) - sum(sqrt(1:20))) < 1e-12)
"""


@pytest.mark.slow
@pytest.mark.skipif(RSCRIPT is None, reason="R not installed (make test installs it)")
def test_an_r_sessions_dask_loops_share_one_cluster_closed_when_r_quits(tmp_path):
    """Three loops on Dask from one R session start one LocalCluster (kept between loops);
    when R quits, the cluster's processes (Dask's spawned workers) end with it."""
    import psutil

    installed = subprocess.run([RSCRIPT, "-e", "cat(requireNamespace('hpcml', quietly = TRUE))"],
                               capture_output=True, text=True, timeout=120)
    if installed.stdout.strip() != "TRUE":
        pytest.skip("the hpcml R package is not installed (make test installs it)")
    (tmp_path / "script.R").write_text(DASK_SCRIPT)
    before = {p.pid for p in psutil.process_iter()}
    proc = subprocess.run([RSCRIPT, str(tmp_path / "script.R")], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "RETICULATE_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    addresses = proc.stdout.split()
    assert len(addresses) == 3 and len(set(addresses)) == 1 and addresses[0].startswith("tcp://127.0.0.1:"), addresses
    left = [p for p in psutil.process_iter(["pid", "cmdline"])
            if p.pid not in before and "spawn_main" in " ".join(p.info["cmdline"] or [])]
    deadline = time.monotonic() + 30  # processes a closed cluster asked to stop may take a moment
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.info for p in left]
