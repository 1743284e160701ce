"""Large R vectors once per machine, seen from the worker (hpcml.models.r.kinds) and end to end
from an R script: the R package writes a loop's large matrix once (hpcml.data.r_vectors) and
every worker maps that file, after checking that only this user can have written it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT

rpy2 = pytest.importorskip("rpy2", reason="R task kinds need rpy2 (pip install 'hpcml[r]')")

from hpcml.models.r import bridge, kinds  # noqa: E402

pytestmark = [pytest.mark.r, pytest.mark.timeout(300)]
RSCRIPT = shutil.which("Rscript")
NOBODY = 65534


def _loop_function(tmp_path: Path, vector_file: Path) -> Path:
    """An RDS function as the R package writes one whose environment refers to ``vector_file``;
    its attach step only records that it ran."""
    rds = tmp_path / "loop.rds"
    bridge.evaluate(f'''local({{
      e <- new.env(parent = globalenv())
      e$.hpcml_shared_files <- "{vector_file}"
      e$attached <- FALSE
      e$.hpcml_attach <- function() assign("attached", TRUE, envir = parent.env(environment()))
      environment(e$.hpcml_attach) <- e
      f <- function(task_index) attached
      environment(f) <- e
      saveRDS(f, "{rds}")
    }})''')
    return rds


def _vector_file(folder: Path) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "r-0123.bin"
    path.write_bytes(bytes(800))
    path.chmod(0o400)
    return path


def _attached(rds: Path) -> bool:
    with bridge.session():
        fn, _ = kinds._function(kinds.RParams(rds=str(rds), result="object"))
        return bool(fn(0)[0])


def test_a_file_only_this_user_can_have_written_is_mapped(tmp_path):
    assert _attached(_loop_function(tmp_path, _vector_file(tmp_path / "mapped")))


@pytest.mark.parametrize("case, why", [
    ("writable", "is writable by other users"),
    ("open directory", "is writable by other users"),
    ("missing", "cannot be checked"),
    ("other user", "is owned by uid 65534"),
])
def test_a_file_another_user_could_have_written_is_refused(tmp_path, case, why):
    path = _vector_file(tmp_path / "mapped")
    if case == "writable":
        path.chmod(0o666)
    elif case == "open directory":
        path.parent.chmod(0o777)
    elif case == "missing":
        path.unlink()
    elif os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    else:
        os.chown(path, NOBODY, NOBODY)
    with pytest.raises(bridge.RError, match=f"model.rds: the shared copy of an R vector {path}.*{why}"):
        _attached(_loop_function(tmp_path, path))


SCRIPT = r"""
suppressPackageStartupMessages({ library(foreach); library(hpcml) })
set.seed(1)
X <- matrix(rnorm(5e5 * 10), 5e5, 10)  # 40 MB: above the default 32 MiB
mapped <- function(x) any(grepl("hpcml mapped file", capture.output(.Internal(inspect(x)))))
registerDoHpcml(workers = 2, seed = 1L)
options(hpcml.r_workers = "python")  # hpcml's Python workers map it (a local loop of R workers forks)
got <- foreach(i = 1:4, .combine = rbind) %dopar% c(coef(lm(X[, 1] ~ X[, i + 1])), mapped = mapped(X))
doParallel::registerDoParallel(cores = 2)
ref <- foreach(i = 1:4, .combine = rbind) %dopar% c(coef(lm(X[, 1] ~ X[, i + 1])), mapped = mapped(X))
stopifnot(all(got[, "mapped"] == 1), all(ref[, "mapped"] == 0))
stopifnot(identical(got[, 1:2], ref[, 1:2]))
cat("files left:", length(list.files(Sys.getenv("HPCML_MAP_DIR"), pattern = "^r-")), "\n")
"""


@pytest.mark.slow
@pytest.mark.skipif(RSCRIPT is None, reason="needs R")
def test_an_r_loops_large_matrix_is_mapped_by_the_workers_and_removed_afterwards(tmp_path):
    has = subprocess.run([RSCRIPT, "-e", 'quit(status = !all(c("hpcml", "doParallel") %in% '
                                        'rownames(installed.packages())))'], capture_output=True)
    if has.returncode != 0:
        pytest.skip("needs the hpcml R package (R CMD INSTALL R) and doParallel")
    script = tmp_path / "loop.R"
    script.write_text(SCRIPT)
    env = {**os.environ, "RETICULATE_PYTHON": str(PYTHON), "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path),
           "HPCML_MAP_DIR": str(tmp_path / "mapped")}
    env.pop("HPCML_MAP_MIN_BYTES", None)
    proc = subprocess.run([RSCRIPT, str(script)], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "files left: 0" in proc.stdout
