"""R task kinds against the real R (rpy2, Rscript, doParallel, bayesm), and under real mpirun.

What must hold: R tasks give the same numbers for any worker count, chunking and backend
(R's generator is seeded per task), R errors come back as task failures carrying R's
message, and hpcml's OLS/logistic coefficients equal R's lm/glm on AER's HMDA data.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import PYTHON, ROOT, assert_same_results, hpcml_cli

rpy2 = pytest.importorskip("rpy2", reason="R task kinds need rpy2 (pip install 'hpcml[r]')")

from hpcml.plans import task_rng  # noqa: E402
from hpcml.models.r import bridge  # noqa: E402
from hpcml.models.r.bayesm import gelman_rubin  # noqa: E402
from hpcml.models.r.common import r_seed  # noqa: E402
from hpcml.models.base import FitContext  # noqa: E402
from hpcml import run  # noqa: E402

pytestmark = [pytest.mark.r, pytest.mark.timeout(300)]
EXAMPLES = ROOT / "docs" / "examples"

DRAWS = """function(data, task_index, seed) {
  i <- sample.int(nrow(data), nrow(data), replace = TRUE)
  fit <- lm(target ~ bmi + bp, data = data[i, ])
  list(b_bmi = coef(fit)[["bmi"]], u = runif(1), index = task_index, rows = nrow(data), seed = seed)
}"""


def r_spec(tmp_path: Path, name: str, code: str, n: int = 6, **over) -> dict:
    spec = {"name": name, "seed": 3, "data": {"source": "sklearn:diabetes"},
            "model": {"kind": "r", "code": code}, "plan": {"replicate": {"n": n}},
            "backend": {"name": "local", "workers": 2}, "output": str(tmp_path / name)}
    spec.update(over)
    return spec


def ok_results(res) -> pd.DataFrame:
    return res.results.sort_values("task_index").reset_index(drop=True)


def test_r_function_reproducible_across_workers_and_chunks(tmp_path):
    one = run(r_spec(tmp_path, "one", DRAWS), workers=1, chunk_size=6, progress=False)
    two = run(r_spec(tmp_path, "two", DRAWS), workers=2, chunk_size=1, progress=False)
    assert one.ok and two.ok
    assert_same_results(one.results, two.results)
    res = ok_results(one)
    assert res["index"].tolist() == list(range(6))
    assert (res["output_rows"] == 442).all()  # the whole data.frame reached R (`rows` is hpcml's name)
    assert res["u"].nunique() == 6 and res["b_bmi"].nunique() == 6  # every task its own stream
    # The stream is L'Ecuyer-CMRG seeded with the task's own seed: reproduce task 4 by hand.
    seed = r_seed(FitContext(rng=task_rng(3, 4)))
    assert res.loc[4, "seed"] == seed
    bridge.evaluate(f'RNGkind("L\'Ecuyer-CMRG"); set.seed({seed}L)')
    bridge.evaluate("invisible(sample.int(442, 442, replace = TRUE))")
    assert res.loc[4, "u"] == bridge.evaluate("runif(1)")[0]


@pytest.mark.slow
def test_r_function_same_numbers_on_dask(tmp_path):
    # Dask runs tasks in worker threads: R must work there too (rpy2's conversion rules are
    # per thread context), and give the numbers the local backend gives.
    pytest.importorskip("distributed")
    local = run(r_spec(tmp_path, "local", DRAWS), workers=2, progress=False)
    dask = run(r_spec(tmp_path, "dask", DRAWS), backend="dask", workers=2, progress=False)
    assert dask.ok, dask.failures()[["task_id", "error"]]
    assert_same_results(local.results, dask.results)


def test_r_function_from_file_with_weights_matches_lm(tmp_path):
    src = tmp_path / "fit.R"
    src.write_text("fit_lm <- function(data, weights, scale = 1) {\n"
                   "  fit <- lm(target ~ bmi + bp, data = data, weights = weights)\n"
                   "  as.list(coef(fit) * scale)\n}\n")
    spec = r_spec(tmp_path, "file", None, model={"kind": "r", "file": str(src), "function": "fit_lm",
                                                 "args": {"scale": 1}},
                  plan={"bootstrap": {"replicates": 4}})
    res = run(spec, progress=False)
    assert res.ok, res.failures()
    py = run({**spec, "name": "py", "output": str(tmp_path / "py"), "data": {"source": "sklearn:diabetes",
              "target": "target"}, "model": {"kind": "ols", "features": ["bmi", "bp"]}}, progress=False)
    # Same bootstrap counts on both sides (weights from the task's seed): R's lm == hpcml's OLS.
    for name in ("(Intercept)", "bmi", "bp"):
        np.testing.assert_allclose(ok_results(res)[name], ok_results(py)[f"coef_{name}"], rtol=1e-10)


def test_r_errors_are_task_failures_with_r_message(tmp_path):
    code = """function(task_index) {
      if (task_index == 1) stop("singular design in replicate ", task_index)
      if (task_index == 2) return(list(a = 1:3))
      if (task_index == 3) return(data.frame(a = task_index, b = 0.5))  # a one-row data.frame works too
      list(a = task_index)
    }"""
    res = run(r_spec(tmp_path, "err", code, n=4), progress=False)
    by = ok_results(res).set_index("task_index")
    assert not res.ok and res.n_failed == 2
    assert by.loc[1, "status"] == "failed"
    assert by.loc[1, "error"] == "RError: singular design in replicate 1"
    assert by.loc[2, "status"] == "failed" and "'a' has length 3" in by.loc[2, "error"]
    assert by.loc[0, "status"] == "ok" and by.loc[0, "a"] == 0.0
    assert by.loc[3, "status"] == "ok" and by.loc[3, "a"] == 3.0 and by.loc[3, "b"] == 0.5


def test_r_error_messages_keep_every_line_without_the_call():
    """RError is R's whole message: a parse error's lines show where the code is wrong. (A task's
    `error` column keeps the first line; the whole message is at the end of its `traceback`.)"""
    cases = {
        'f <- function(x) stop("first line\\n  second line"); f(1)': "first line\n  second line",
        'stop("no call", call. = FALSE)': "no call",
        'f <- function() stop("plain"); f()': "plain",
        'eval(parse(text = "1 +* 2"))': "<text>:1:4: unexpected '*'\n1: 1 +*\n       ^",
    }
    for code, message in cases.items():
        with pytest.raises(bridge.RError) as err:
            bridge.evaluate(code)
        assert str(err.value) == message, code


def test_doparallel_inside_one_task_is_reproducible(tmp_path):
    code = """function(data, threads) {
      library(foreach)
      out <- foreach(i = 1:6, .combine = rbind) %dopar% c(pid = Sys.getpid(), u = runif(1))
      list(cores = foreach::getDoParWorkers(), pids = length(unique(out[, "pid"])), parent = Sys.getpid(),
           u_sum = sum(out[, "u"]), u_first = out[1, "u"], threads = threads)
    }"""
    spec = r_spec(tmp_path, "dop", code, n=2, threads_per_task=2)
    a = run(spec, workers=1, progress=False)
    b = run({**spec, "output": str(tmp_path / "dop2")}, workers=2, chunk_size=1, progress=False)
    assert a.ok and b.ok, a.failures()
    res = ok_results(a)
    assert (res["cores"] == 2).all() and (res["threads"] == 2).all()
    assert (res["pids"] == 2).all()  # %dopar% really ran in two forked R processes
    cols = ["u_sum", "u_first"]
    pd.testing.assert_frame_equal(res[cols], ok_results(b)[cols], check_exact=True)
    assert res["u_sum"].nunique() == 2


def test_weights_reach_r_as_a_plain_numeric_vector(tmp_path):
    code = """function(data, weights) {
      stopifnot(is.null(dim(weights)), is.numeric(weights), !is.matrix(data$bmi))
      cw <- cov.wt(as.matrix(data[, c("bmi", "bp")]), wt = weights / sum(weights))
      list(cov = cw$cov[1, 2], total = sum(weights))
    }"""
    res = run(r_spec(tmp_path, "wt", code, plan={"bootstrap": {"replicates": 3}}), progress=False)
    assert res.ok, res.failures()[["task_id", "error"]]
    assert (ok_results(res)["total"] == 442).all()


SWEEP = """function(data, a, b = 0) {
  list(score = -(a - 2)^2 + b, a_seen = a)
}"""


def test_sweep_over_an_r_functions_arguments_ranks_by_the_named_metric(tmp_path):
    spec = r_spec(tmp_path, "sweep", SWEEP, plan={"sweep": {"grid": {"a": [1, 2, 3]}}},
                  model={"kind": "r", "code": SWEEP, "args": {"a": 0}, "metric": "score"})
    res = run(spec, progress=False)
    assert res.ok, res.failures()[["task_id", "error"]]
    assert sorted(ok_results(res)["a_seen"]) == [1.0, 2.0, 3.0]
    assert res.summary["metric"] == "score"
    assert res.summary["best"]["a"] == 2 and len(res.summary["table"]) == 3
    # The arguments as whole mappings: one leaderboard row per mapping, smaller is better here;
    # a column per key of the mappings, empty where a mapping lacks the key.
    spec = r_spec(tmp_path, "sweep2", SWEEP, plan={"sweep": {"grid": {"args": [{"a": 1}, {"a": 3, "b": 1}]}}},
                  model={"kind": "r", "code": SWEEP, "metric": "score", "greater_is_better": False})
    res = run(spec, progress=False)
    assert res.ok and len(res.summary["table"]) == 2
    assert res.summary["grid"] == ["args.a", "args.b"]
    assert res.summary["best"]["args.a"] == 1 and res.summary["best"]["args.b"] is None


def test_outputs_named_like_hpcml_columns_are_kept_under_their_own_name(tmp_path):
    code = "function(task_index) list(rows = 7, shard = task_index, value = 1)"
    res = run(r_spec(tmp_path, "names", code, n=2), progress=False)
    assert res.ok
    table = {row["output"] for row in res.summary["table"]}
    assert {"output_rows", "output_shard", "value"} <= table
    assert (ok_results(res)["output_rows"] == 7).all()


def test_r_and_rscript_tasks_get_an_existing_scratch_folder(tmp_path):
    code = """function(task_index, scratch) {
      stopifnot(dir.exists(scratch))
      saveRDS(list(draws = rnorm(5)), file.path(scratch, "fit.rds"))
      list(ok = 1)
    }"""
    res = run(r_spec(tmp_path, "scr", code, n=2), progress=False)
    assert res.ok, res.failures()[["task_id", "error"]]
    assert len(list((tmp_path / "scr").glob("artifacts/*/fit.rds"))) == 2
    script = tmp_path / "scr.R"
    script.write_text('d <- Sys.getenv("HPCML_SCRATCH")\nstopifnot(dir.exists(d))\n'
                      'writeLines("kept", file.path(d, "note.txt"))\ncat(\'{"ok": 1}\\n\')\n')
    res = run({**r_spec(tmp_path, "scr2", None, n=2), "data": {"source": "none"},
               "model": {"kind": "rscript", "file": str(script)}}, progress=False)
    assert res.ok, res.failures()[["task_id", "error"]]
    assert len(list((tmp_path / "scr2").glob("artifacts/*/note.txt"))) == 2


def test_bootstrap_of_no_data_is_refused_before_any_task(tmp_path):
    from hpcml.errors import SpecError

    spec = {**r_spec(tmp_path, "none", "function(task_index) list(a = 1)", plan={"bootstrap": {"replicates": 3}}),
            "data": {"source": "none"}}
    with pytest.raises(SpecError, match="data.source: a bootstrap resamples the rows"):
        run(spec, progress=False)
    assert not (tmp_path / "none").exists()


def test_rpy2_info_lines_are_silenced():
    import logging

    bridge.r()
    assert logging.getLogger("rpy2").getEffectiveLevel() >= logging.WARNING


def test_an_r_object_dropped_in_another_thread_waits_until_r_is_free():
    # A Dask worker's event loop drops the frames it sampled for the profiler (and the R
    # objects in them) of R calls the task thread has finished; releasing them there while R
    # runs could corrupt R.
    import threading

    from rpy2.rinterface_lib import _rinterface_capi as capi

    with bridge.session() as ro:
        box = [ro.r("new.env()")]  # kept alive by this Python object only
        rid = capi.get_rid(box[0].__sexp__._cdata)
        assert rid in capi._R_PRESERVED
        other = threading.Thread(target=box.clear)  # the last reference goes in another thread
        other.start()
        other.join(timeout=30)
        assert not other.is_alive()  # that thread did not wait for R ...
        assert rid in capi._R_PRESERVED  # ... nor release the object while this thread holds R
    assert rid not in capi._R_PRESERVED  # released as soon as R was free
    box.append(bridge.evaluate("new.env()"))  # with R free, another thread releases at once
    rid = capi.get_rid(box[0].__sexp__._cdata)
    other = threading.Thread(target=box.clear)
    other.start()
    other.join(timeout=30)
    assert rid not in capi._R_PRESERVED


def test_a_process_keeps_only_the_latest_rds_function(tmp_path):
    # Under MPI a rank serves every loop of an R script: each loop's function (with the data
    # it exports) is read once, and the previous loop's is let go.
    from hpcml.models.r import kinds

    paths = []
    for k in (1, 2, 3):
        path = tmp_path / f"f{k}.rds"
        bridge.evaluate(f'saveRDS(local({{ big <- numeric(1e5) + {k}; function(task_index) big[1] }}), "{path}")')
        paths.append(str(path))
    code = kinds.RParams(code="function(task_index) 0")
    with bridge.session():
        kinds._function(code)
        for path in paths:
            fn, _ = kinds._function(kinds.RParams(rds=path, result="object"))
            assert fn()[0] == float(path[-5])
    rds_keys = [key for key in kinds._FUNCTIONS if key[2] is not None]
    assert rds_keys == [(None, None, paths[-1], None)]
    assert (code.code, None, None, None) in kinds._FUNCTIONS  # functions given as code stay


def test_an_rds_closure_returns_any_r_value(tmp_path):
    rds = tmp_path / "task.rds"
    bridge.evaluate(f'local({{ big <- 1:10; f <- function(task_index) list(i = task_index, s = sum(big), '
                    f'm = matrix(runif(4), 2)); saveRDS(f, "{rds}") }})')
    spec = {**r_spec(tmp_path, "rds", None, n=3), "data": {"source": "none"},
            "model": {"kind": "r", "rds": str(rds), "result": "object"}}
    one = run(spec, workers=1, progress=False)
    two = run({**spec, "output": str(tmp_path / "rds2")}, workers=2, chunk_size=1, progress=False)
    assert one.ok and two.ok, one.failures()[["task_id", "error"]]
    blobs = ok_results(one)["result"].tolist()
    assert blobs == ok_results(two)["result"].tolist()  # the same draws for any worker count
    value = bridge.call(bridge.r().r["unserialize"], bridge.r().vectors.ByteVector(blobs[2]))
    assert list(value.rx2("i")) == [2] and list(value.rx2("s")) == [55]
    assert list(bridge.r().r["dim"](value.rx2("m"))) == [2, 2]


def test_doparallel_inside_a_task_is_refused_in_mpi_dynamic_mode(tmp_path):
    pytest.importorskip("mpi4py")
    from hpcml.errors import SpecError

    spec = r_spec(tmp_path, "hybrid", "function(threads) list(t = threads)", n=2, threads_per_task=2,
                  backend={"name": "mpi"})
    with pytest.raises(SpecError, match="forks R processes inside a task.*--mode static"):
        run(spec, progress=False)


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_the_notes_hybrid_pattern_under_mpirun(tmp_path):
    """r-doparallel.yaml (one rank, doParallel on 2 cores inside each task) under real mpirun:
    static mode runs it with the local backend's numbers; dynamic mode is one line and exit 2,
    at once and with nothing written, instead of a forked R child waiting forever."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("Open MPI not installed (make test installs it)")
    pytest.importorskip("mpi4py")
    pack = [mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", "1", PYTHON, "-m",
            "hpcml.pack", str(EXAMPLES / "r-doparallel.yaml"), "--threads-per-rank", "2", "--quiet"]
    static = subprocess.run(pack + ["--mode", "static", "--out", str(tmp_path / "static")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert static.returncode == 0, static.stdout + static.stderr
    results = pd.read_parquet(tmp_path / "static" / "results.parquet")
    assert len(results) == 4 and (results["status"] == "ok").all() and (results["cores"] == 2).all()
    spec = yaml.safe_load((EXAMPLES / "r-doparallel.yaml").read_text())
    local = run({**spec, "output": str(tmp_path / "local")}, progress=False)
    assert_same_results(local.results, results)
    dynamic = subprocess.run(pack + ["--mode", "dynamic", "--out", str(tmp_path / "dynamic")], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert dynamic.returncode == 2  # mpirun passes the rank's exit status on
    errors = [line for line in dynamic.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "backend.mode" in errors[0] and "--mode static" in errors[0], dynamic.stderr
    assert "Traceback" not in dynamic.stderr and not (tmp_path / "dynamic").exists()


def test_rscript_tasks_seeded_per_task(tmp_path):
    spec = yaml.safe_load((EXAMPLES / "rscript-packing.yaml").read_text())
    spec["model"]["file"] = str(EXAMPLES / "packing.R")
    spec["plan"] = {"replicate": {"n": 4}}
    one = run({**spec, "output": str(tmp_path / "a")}, workers=1, progress=False)
    two = run({**spec, "output": str(tmp_path / "b")}, workers=2, chunk_size=1, progress=False)
    assert one.ok, one.failures()
    assert_same_results(one.results, two.results)
    res = ok_results(one)
    assert res["task"].tolist() == [0, 1, 2, 3]  # Rscript got the task index as its argument
    assert res["draw"].nunique() == 4
    assert np.all(np.abs(res["slope"] - 2) < 0.1)
    # The script's console output is kept beside the task's artifacts, like the seeds' Rstd_out.
    assert (one.run_dir / "artifacts" / "replicate-000002" / "Rstd_out.txt").exists()


def test_rscript_error_is_task_failure_with_r_message(tmp_path):
    script = tmp_path / "fails.R"
    script.write_text('i <- as.integer(commandArgs(TRUE)[1])\nif (i == 1) stop("no data for task ", i)\n'
                      'cat(sprintf(\'{"i": %d}\\n\', i))\n')
    spec = {"name": "rs-err", "data": {"source": "sklearn:diabetes"}, "model": {"kind": "rscript", "file": str(script)},
            "plan": {"replicate": {"n": 2}}, "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "o")}
    res = ok_results(run(spec, progress=False))
    assert res.loc[0, "status"] == "ok" and res.loc[0, "i"] == 0  # JSON on the last line also works
    assert res.loc[1, "status"] == "failed"
    assert res.loc[1, "error"] == "RuntimeError: Rscript exited 1: no data for task 1"


def test_bad_r_spec_is_one_line_exit_2(tmp_path):
    out = tmp_path / "never"
    bad = {"name": "bad", "data": {"source": "sklearn:diabetes"},
           "model": {"kind": "r", "file": str(tmp_path / "missing.R"), "function": "f"},
           "plan": {"replicate": {"n": 2}}, "output": str(out)}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = hpcml_cli("run", path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: model.file: file not found (got '{tmp_path}/missing.R')"]
    assert not out.exists()
    both = {**bad, "model": {"kind": "r", "code": "function() 1", "file": "x.R"}}
    path.write_text(yaml.safe_dump(both))
    proc = hpcml_cli("run", path)
    assert proc.returncode == 2 and "model:" in proc.stderr and "exactly one of `code`, `file` or `rds`" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


# --- hpcml's models vs R's on a real data set (AER's HMDA, the seeds' mortgage example) ---

@pytest.fixture(scope="module")
def hmda(tmp_path_factory) -> Path:
    """HMDA from the installed AER package, with R's own 0/1 coding of the factors."""
    path = tmp_path_factory.mktemp("hmda") / "hmda.parquet"
    frame = bridge.to_py(bridge.evaluate(
        'local({ data("HMDA", package = "AER"); '
        'data.frame(deny = as.numeric(HMDA$deny == "yes"), afamyes = as.numeric(HMDA$afam == "yes"), '
        'pirat = HMDA$pirat) })'))
    frame.reset_index(drop=True).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("kind,r_fit", [
    ("ols", "lm(deny ~ afam + pirat, data = transform(HMDA, deny = as.numeric(deny == 'yes')))"),
    ("logistic", "glm(deny ~ afam + pirat, data = HMDA, family = binomial, control = glm.control(epsilon = 1e-14))"),
])
def test_hmda_coefficients_equal_r(tmp_path, hmda, kind, r_fit):
    spec = {"name": f"hmda-{kind}", "data": {"source": str(hmda), "target": "deny"},
            "model": {"kind": kind, "features": ["afamyes", "pirat"]}, "plan": {"fit": {}},
            "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / kind)}
    res = run(spec, progress=False)
    assert res.ok
    ref = bridge.evaluate(f'local({{ data("HMDA", package = "AER"); coef({r_fit}) }})')
    names = list(ref.names)
    assert names == ["(Intercept)", "afamyes", "pirat"]
    ours = res.results.iloc[0][[f"coef_{n}" for n in names]].to_numpy(dtype=float)
    assert np.max(np.abs(ours - np.asarray(ref))) < 1e-8


# --- bayesm chains ---------------------------------------------------------------------

def bayesm_spec(out: Path, chains: int = 3) -> dict:
    spec = yaml.safe_load((EXAMPLES / "bayesm-chains.yaml").read_text())
    spec["model"].update(n_units=30, R=600, keep=3)
    spec["plan"] = {"replicate": {"n": chains}}
    spec["output"] = str(out)
    return spec


def check_chains(res, chains: int) -> None:
    assert res.ok, res.failures()
    rhat = {row["parameter"]: row for row in res.summary["rhat"]}
    assert set(rhat) == {"mu_1", "mu_2", "mu_3", "loglike"}
    for row in rhat.values():
        assert row["chains"] == chains and row["draws_per_chain"] == 100
        assert row["rhat"] is not None and 0.9 < row["rhat"] < 1.5
    # Posterior means in the order of the simulated population means (-1, 0, 1) and near
    # them (30 units: the posterior is wide), and the chains differ from each other.
    means = np.array([rhat[f"mu_{j}"]["mean"] for j in (1, 2, 3)])
    assert means[0] < means[1] < means[2]
    assert np.all(np.abs(means - np.array([-1.0, 0.0, 1.0])) < 0.8)
    assert res.results["mu_1"].nunique() == chains
    table = {row["output"]: row for row in res.summary["table"]}  # what the CLI prints
    assert table["mu_1"]["rhat"] == rhat["mu_1"]["rhat"] and table["mean_loglike"]["rhat"] is not None
    # Every chain keeps its own draws, and they are the draws the R-hat was computed from.
    kept = [pd.read_parquet(Path(res.run_dir, "artifacts", f"replicate-{i:06d}", "draws.parquet"))
            for i in range(chains)]
    for draws in kept:
        assert list(draws.columns) == ["mu_1", "mu_2", "mu_3", "loglike"] and len(draws) == 200
    assert len({float(d["mu_1"].iloc[-1]) for d in kept}) == chains
    recomputed = gelman_rubin(np.stack([d["mu_1"].to_numpy()[100:] for d in kept]))
    assert abs(recomputed - rhat["mu_1"]["rhat"]) < 1e-12
    # The per-chain trace plots: one panel per parameter, one line per chain.
    import matplotlib.image

    image = matplotlib.image.imread(Path(res.run_dir, "plots", "traces.png"))
    assert image.shape[0] > 300 and image.shape[1] > 800


@pytest.mark.slow
def test_bayesm_chains_local(tmp_path):
    one = run(bayesm_spec(tmp_path / "a"), workers=1, progress=False)
    check_chains(one, 3)
    two = run(bayesm_spec(tmp_path / "b"), workers=2, chunk_size=1, progress=False)
    assert_same_results(one.results, two.results)


@pytest.mark.slow
@pytest.mark.mpi
def test_bayesm_chains_under_mpirun(tmp_path):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("Open MPI not installed (make test installs it)")
    pytest.importorskip("mpi4py")
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(bayesm_spec(tmp_path / "mpi")))
    proc = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", PYTHON, "-m", "hpcml.pack",
                           str(spec_path), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = pd.read_parquet(tmp_path / "mpi" / "results.parquet")
    summary = json.loads((tmp_path / "mpi" / "summary.json").read_text())
    assert len(results) == 3 and (results["status"] == "ok").all()
    local = run(bayesm_spec(tmp_path / "local"), workers=2, progress=False)
    assert_same_results(results, local.results)  # MPI ranks and local workers: the same chains
    assert summary["rhat"] == local.summary["rhat"]


def test_gelman_rubin_detects_disagreeing_chains():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(4, 400))
    apart = same + np.arange(4)[:, None]
    assert abs(gelman_rubin(same) - 1) < 0.02
    assert gelman_rubin(apart) > 1.5  # sqrt(1 + var of the chain means) = 1.6
    drifting = same.copy()
    drifting[0] += np.linspace(0, 3, 400)  # one chain that has not settled: split R-hat sees it
    assert gelman_rubin(drifting) > 1.1


@pytest.mark.parametrize("kind", ["r", "rscript", "bayesm"])
def test_every_r_kind_parameter_is_documented(kind):
    from hpcml.models.base import get_model

    text = (ROOT / "docs" / "r.md").read_text()
    missing = [p for p in get_model(kind).Params.model_fields if f"`{p}`" not in text]
    assert not missing, f"{kind}: parameters missing from docs/r.md: {missing}"


@pytest.mark.parametrize("code, result", [
    (DRAWS, "outputs"),
    ("function(task_index) { if (task_index == 5) stop('five is bad'); list(x = runif(2), i = task_index) }",
     "object"),
])
def test_an_r_loops_iterations_run_in_one_call_with_the_numbers_of_one_by_one(tmp_path, monkeypatch, code, result):
    """A group of iterations in one call into R (the R package's loops): each iteration seeded
    as alone, the same records bit for bit; a failing one is made alone, with R's message."""
    from hpcml.models.r import kinds
    from hpcml.rundir.store import Chunk
    from hpcml.spec import load_job
    from hpcml.tasks.worker import WorkOrder, execute_chunk

    spec = r_spec(tmp_path, "grouped", code, n=12)
    spec["model"]["result"] = result
    job = load_job(spec)
    assert job.plan.group_size(job) == kinds.R_GROUP > 1

    def records(group: int) -> list[dict]:
        monkeypatch.setattr(kinds, "R_GROUP", group)
        done = execute_chunk(WorkOrder(job.to_json(), str(tmp_path / "grouped"), Chunk(range(12)), 0, False))
        return [{k: v for k, v in r.items() if k not in ("seconds", "traceback")} for r in done.records]

    grouped, alone = records(kinds.R_GROUP), records(1)
    assert grouped == alone
    failed = [r for r in grouped if r["status"] != "ok"]
    assert [r["task_index"] for r in failed] == ([5] if result == "object" else [])
    assert all("five is bad" in r["error"] for r in failed)
