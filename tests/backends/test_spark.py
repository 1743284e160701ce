"""The Spark backend and the ``engine: spark`` (MLlib) path against REAL Spark.

- ``--backend spark`` on ``local[2]`` and on a real standalone master + worker
  (scripts/spark_start.sh) gives results bit-for-bit equal to the local backend.
- A Spark task whose Python worker crashes is retried by Spark and lands once in the store;
  a task that fails once is retried by hpcml (``retries``) and lands once too; resume works.
- ``engine: spark`` fits ols, logistic, kmeans and pca with pyspark.ml on Parquet and CSV and
  agrees with hpcml's single-node models within the tolerances in ``TOLERANCE``.
- ``spark-submit --master spark://127.0.0.1:7077 scripts/spark_run.py job.yaml`` works.
- Spark's logs go to the run directory (one line says where), the UI is off.

One in-process SparkSession (module fixture) serves every in-process test: each session start
costs ~6 s. The CLI and spark-submit tests run in subprocesses, so they get their own.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, assert_same_results, hpcml_cli, small_spec

pyspark = pytest.importorskip("pyspark", reason="pyspark not installed (pip install 'hpcml[spark]')")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# engine: spark vs the single-node kinds (relative, with an absolute floor of the same size):
# ols solves the same normal equations; L-BFGS (Spark) vs Newton (hpcml) for logistic both
# converge to the unpenalised MLE; kmeans reaches the same Lloyd fixed point on separated
# clusters; pca eigendecomposes the same covariance.
TOLERANCE = {"ols": 1e-10, "logistic": 1e-5, "kmeans": 1e-10, "pca": 1e-10}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def spark_local(tmp_path_factory):
    """One local[2] session for the module; runs in this process reuse it."""
    from hpcml.backends.spark import SparkOptions, spark_session

    handle = spark_session(SparkOptions(task_max_failures=4), 2, tmp_path_factory.mktemp("spark-logs"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local backend's results of small_spec: what every Spark run must reproduce."""
    from hpcml import run

    return run(small_spec(tmp_path_factory.mktemp("ref")), progress=False).results


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """Each model's data as CSV and as Parquet (the same numbers)."""
    from sklearn.datasets import make_blobs, make_classification, make_regression

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(3)
    X, y = make_regression(n_samples=3000, n_features=5, noise=5.0, random_state=1)
    frames = {"ols": (X, y)}
    X, y = make_classification(n_samples=3000, n_features=4, n_informative=3, n_redundant=0, flip_y=0.2,
                               random_state=2)
    frames["logistic"] = (X, np.where(y == 1, "yes", "no"))  # a string target: classes are sorted
    X, _ = make_blobs(n_samples=3000, n_features=3, centers=[[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]],
                      cluster_std=1.0, random_state=4)
    frames["kmeans"] = (X, None)
    frames["pca"] = (rng.standard_normal((3000, 6)) @ rng.standard_normal((6, 6)), None)
    files = {}
    for kind, (X, y) in frames.items():
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        if y is not None:
            frame["y"] = y
        files[(kind, "csv")] = root / f"{kind}.csv"
        files[(kind, "parquet")] = root / f"{kind}.parquet"
        frame.to_csv(files[(kind, "csv")], index=False)
        frame.to_parquet(files[(kind, "parquet")], index=False)
    return files


MODEL_PARAMS = {"ols": {}, "logistic": {}, "kmeans": {"k": 4}, "pca": {"n_components": 3}}


def mllib_spec(tmp_path: Path, kind: str, source: Path, **over) -> dict:
    spec = {"name": f"mllib-{kind}", "seed": 11, "engine": "spark",
            "data": {"source": str(source), **({"target": "y"} if kind in ("ols", "logistic") else {})},
            "model": {"kind": kind, **MODEL_PARAMS[kind]}, "plan": {"fit": {}},
            "output": str(tmp_path / f"run-{kind}")}
    spec.update(over)
    return spec


def single_node(spec: dict) -> dict[str, float]:
    """hpcml's own model on the same file: outputs + score, as a fit plan records them."""
    from hpcml.data import load_dataset
    from hpcml.models.base import FitContext
    from hpcml.plans import task_rng
    from hpcml.spec import load_job

    job = load_job({**spec, "engine": "hpcml"})
    data = load_dataset(job)
    fitted = job.model.fit(job.params, data, None, FitContext(rng=task_rng(job.spec.seed, 0)))
    return {**job.model.outputs(job.params, fitted, data), **job.model.score(job.params, fitted, data, None)}


# --------------------------------------------------------------------------- backend: spark

@pytest.mark.timeout(300)
def test_local2_is_bit_for_bit_local_and_resumes(spark_local, reference, tmp_path):
    from hpcml import run
    from hpcml.rundir.store import RunStore

    assert spark_local.sc.master == "local[2,4]"
    spec = small_spec(tmp_path, backend={"name": "spark", "workers": 2, "chunk_size": 5})
    first = run(spec, progress=False)
    assert first.ok and first.summary["run"]["backend"] == "spark"
    assert_same_results(reference, first.results)

    # Lose 3 of the 8 chunk files (a killed driver): resume reruns exactly those tasks.
    store = RunStore(first.run_dir)
    files = store.chunk_files()
    assert len(files) == 8
    lost = files[2:5]
    kept = {f: f.stat().st_mtime_ns for f in files if f not in lost}
    for f in lost:
        f.unlink()
    again = run(spec, resume=True, progress=False)
    assert again.ok
    assert_same_results(reference, again.results)
    assert all(f.stat().st_mtime_ns == m for f, m in kept.items()), "resume rewrote finished chunks"
    assert len(store.chunk_files()) == 8


CRASH_KIND = '''
"""A model kind whose Python worker dies (os._exit) the first time it meets task 3."""
import os
from pathlib import Path

from pydantic import Field

from hpcml.models.base import ModelKind, ModelParams, register_model


class CrashParams(ModelParams):
    marker_dir: str = Field(...)


@register_model
class CrashOnce(ModelKind):
    name = "crash_once"
    Params = CrashParams
    needs_target = False
    primary_metric = "value"

    def fit(self, params, data, weights, ctx):
        marker = Path(params.marker_dir, f"task-{ctx.task_index}")
        if ctx.task_index == 3 and not marker.exists():
            marker.touch()
            os._exit(17)  # the whole Python worker dies, as on a segfault or OOM kill
        return float(ctx.rng.standard_normal())

    def outputs(self, params, fitted, data):
        return {"value": fitted}

    def score(self, params, fitted, data, mask):
        return {}
'''


@pytest.mark.timeout(300)
def test_crashed_python_worker_is_retried_by_spark_and_lands_once(spark_local, tmp_path, monkeypatch):
    from hpcml import run
    from hpcml.rundir.store import RunStore

    module = tmp_path / "hpcml_crash_kind.py"
    module.write_text(textwrap.dedent(CRASH_KIND))
    monkeypatch.syspath_prepend(str(tmp_path))
    import hpcml_crash_kind  # noqa: F401  registers the kind on the driver

    markers = tmp_path / "markers"
    markers.mkdir()
    spec = small_spec(tmp_path, model={"kind": "crash_once", "marker_dir": str(markers)},
                      plan={"replicate": {"n": 12}}, data={"source": "none"},
                      backend={"name": "spark", "workers": 2, "chunk_size": 2, "py_files": [str(module)]})
    result = run(spec, progress=False)
    assert (markers / "task-3").exists(), "the worker never crashed: the test proves nothing"
    assert result.ok, result.failures()
    # Spark reran the partition; hpcml saw one result: one record per task, none failed.
    records = RunStore(result.run_dir).read_records()
    assert sorted(records["task_index"]) == list(range(12))
    assert set(records["status"]) == {"ok"} and set(records["attempt"]) == {0}
    # Same numbers as a run where nothing crashed (the marker now exists: no crash).
    clean = run({**spec, "output": str(tmp_path / "clean")}, progress=False)
    assert_same_results(clean.results, result.results)


@pytest.mark.timeout(300)
def test_task_failing_once_is_retried_by_the_runner_and_lands_once(spark_local, tmp_path):
    from hpcml import run
    from hpcml.rundir.store import RunStore

    flaky = tmp_path / "flaky"
    spec = small_spec(tmp_path, model={"kind": "sleep", "ms": 1, "flaky_dir": str(flaky)},
                      plan={"replicate": {"n": 10}}, data={"source": "none"}, retries=1,
                      backend={"name": "spark", "workers": 2})
    result = run(spec, progress=False)
    assert result.ok and len(result.results) == 10
    assert set(result.results["attempt"]) == {1} and set(result.results["status"]) == {"ok"}
    records = RunStore(result.run_dir).read_records()
    ok = records.loc[records["status"] == "ok"]
    assert ok["task_index"].value_counts().max() == 1 and len(ok) == 10  # exactly once
    assert (records.loc[records["status"] == "failed", "attempt"] == 0).sum() == 10


def test_ui_is_off_and_logs_go_to_the_log_dir(spark_local):
    assert spark_local.sc.uiWebUrl is None
    assert spark_local.sc.getConf().get("spark.ui.enabled") == "false"
    assert spark_local.log_file is not None and spark_local.log_file.parent.is_dir()
    # The JVM was told to stay on loopback; this process was not: a later run against a
    # cluster's master (or a process this one starts) must not advertise 127.0.0.1 to executors.
    assert spark_local.sc.getConf().get("spark.driver.host") == "127.0.0.1"
    assert os.environ.get("SPARK_LOCAL_IP") != "127.0.0.1"


# --------------------------------------------------------------------------- engine: spark

# Every model once, each reader (inferred-schema CSV, Parquet) at least twice; a fit is ~5 s.
CASES = [("ols", "parquet"), ("ols", "csv"), ("logistic", "parquet"), ("kmeans", "csv"), ("pca", "parquet")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind,fmt", CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_mllib_agrees_with_single_node(spark_local, data_files, tmp_path, kind, fmt):
    from hpcml import run

    spec = mllib_spec(tmp_path, kind, data_files[(kind, fmt)])
    result = run(spec, progress=False)
    assert result.ok, result.failures()
    assert result.summary["run"]["engine"] == "spark" and result.summary["run"]["rows"] == 3000
    assert (result.run_dir / "results.parquet").exists() and (result.run_dir / "spec.json").exists()
    got = result.results.iloc[0]
    want = single_node(spec)
    tol = TOLERANCE[kind]
    compared = [c for c in want if c in got.index and c != "n_iter"]
    assert len(compared) >= len(want) - 1, (sorted(want), list(got.index))
    for col in compared:
        assert math.isclose(got[col], want[col], rel_tol=tol, abs_tol=tol), (col, got[col], want[col])


@pytest.mark.timeout(120)
def test_mllib_resume_keeps_the_fit(spark_local, data_files, tmp_path):
    from hpcml import run

    spec = mllib_spec(tmp_path, "ols", data_files[("ols", "parquet")])
    first = run(spec, progress=False)
    chunk = next((first.run_dir / "chunks").iterdir())
    again = run(spec, resume=True, progress=False)
    assert again.ok and list((again.run_dir / "chunks").iterdir()) == [chunk]
    assert_same_results(first.results, again.results)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("section,key,value,field", [
    ("model", "features", ["x0", "nope"], "model.features"),
    ("data", "target", "nope", "data.target"),
    ("model", "kind", "kmeans", "model.k"),  # k=5000 > 3000 rows
])
def test_mllib_bad_columns_fail_cleanly(spark_local, data_files, tmp_path, section, key, value, field):
    from hpcml.errors import SpecError
    from hpcml import run

    spec = mllib_spec(tmp_path, "ols", data_files[("ols", "parquet")])
    spec[section][key] = value
    if value == "kmeans":
        spec["model"]["k"] = 5000
    with pytest.raises(SpecError) as err:
        run(spec, progress=False)
    assert len(err.value.lines()) == 1 and err.value.lines()[0].startswith(f"{field}:"), err.value.lines()
    assert not Path(spec["output"]).exists(), "bad input left a partial run directory"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("change,field", [
    ({"plan": {"bootstrap": {"replicates": 5}}}, "plan"),
    ({"model": {"kind": "svd"}}, "model.kind"),
    ({"data": {"source": "sklearn:diabetes", "target": "target"}}, "data.source"),
    ({"data": {"source": "/no/such/file.parquet", "target": "y"}}, "data.source"),
])
def test_mllib_bad_spec_exits_2_before_spark_starts(data_files, tmp_path, change, field):
    spec = {**mllib_spec(tmp_path, "ols", data_files[("ols", "parquet")]), **change}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("run", path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), proc.stderr
    assert not Path(spec["output"]).exists()


# --------------------------------------------------------------------------- subprocesses

def _write_job(tmp_path: Path, **backend) -> Path:
    spec = small_spec(tmp_path, backend={"name": "spark", "workers": 2, **backend})
    spec.pop("output")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.timeout(300)
def test_cli_backend_spark_quiet_terminal(reference, tmp_path):
    job = _write_job(tmp_path)
    out = tmp_path / "run"
    proc = hpcml_cli("run", job, "--backend", "spark", "--out", out, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_results(reference, pd.read_parquet(out / "results.parquet"))
    log_lines = [ln for ln in proc.stderr.splitlines() if "logs go to" in ln]
    assert len(log_lines) == 1 and str(out / "logs") in log_lines[0], proc.stderr
    assert "local[2,4]" in log_lines[0]
    # Nothing from Spark's JVM reaches the terminal: it is all in the log directory.
    noise = [ln for ln in (proc.stdout + proc.stderr).splitlines()
             if any(k in ln for k in (" WARN ", " INFO ", "log4j", "NativeCodeLoader", "SparkContext"))]
    assert not noise, noise
    assert (out / "logs" / "spark.log").exists()


@pytest.mark.parametrize("engine", [None, "spark"])
def test_an_unreachable_master_is_one_line_and_no_run_directory(tmp_path, engine):
    """A ``spark://`` master nobody listens at: one line naming ``backend.spark_master``, exit 2,
    no run directory, in seconds (Spark alone retries for about a minute, then prints a Java
    stack trace), for tasks on Spark and for an MLlib fit alike."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = small_spec(tmp_path, backend={"name": "spark", "spark_master": f"spark://127.0.0.1:{port}"})
    if engine:
        from sklearn.datasets import load_diabetes

        load_diabetes(as_frame=True).frame.to_csv(tmp_path / "diabetes.csv", index=False)
        spec.update(engine=engine, plan={"fit": {}}, data={"source": str(tmp_path / "diabetes.csv"), "target": "target"})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("run", path, "-q", timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: backend.spark_master: no Spark master reachable there "
                                                    f"(127.0.0.1:{port}: Connection refused)"), proc.stderr[-2000:]
    assert not Path(spec["output"]).exists()


@pytest.mark.timeout(400)
def test_standalone_master_is_bit_for_bit_local(spark_master, reference, tmp_path):
    job = _write_job(tmp_path, spark_master=spark_master)
    out = tmp_path / "run"
    proc = hpcml_cli("run", job, "--out", out, timeout=380)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"on {spark_master}" in proc.stderr, proc.stderr
    assert_same_results(reference, pd.read_parquet(out / "results.parquet"))


@pytest.mark.timeout(400)
def test_spark_submit_to_standalone_master(spark_master, reference, tmp_path):
    job = _write_job(tmp_path)
    out = tmp_path / "run"
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
           "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(venv_bin / "spark-submit"), "--master", spark_master,
                           "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
                           str(ROOT / "scripts" / "spark_run.py"), str(job), "--out", str(out), "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=380, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "40/40 tasks ok" in proc.stdout, proc.stdout
    assert_same_results(reference, pd.read_parquet(out / "results.parquet"))
    # spark-submit's JVM logged INFO to the terminal by default; hpcml moved it to the run's logs.
    assert not [line for line in proc.stderr.splitlines() if " INFO " in line or "log4j profile" in line], proc.stderr
    assert (out / "logs" / "spark.log").exists()
    # The installed entry point (for spark-submit without a checkout) is found the same way.
    where = subprocess.run([sys.executable, "-m", "hpcml.spark_submit", "--path"], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
    assert where.returncode == 0 and Path(where.stdout.strip()) == ROOT / "hpcml" / "spark_submit.py"


@pytest.mark.timeout(120)
def test_validate_checks_an_engine_spark_job_without_loading_its_data(data_files, tmp_path):
    # A directory of Parquet parts: Spark reads it; pandas (the hpcml engine's loader) would not.
    parts = tmp_path / "parts"
    parts.mkdir()
    frame = pd.read_parquet(data_files[("ols", "parquet")])
    for i in range(3):
        frame.iloc[i * 1000:(i + 1) * 1000].to_parquet(parts / f"part-{i}.parquet", index=False)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(mllib_spec(tmp_path, "ols", parts)))
    proc = hpcml_cli("validate", path, timeout=120)
    assert proc.returncode == 0 and "1 fit task(s) of model ols" in proc.stdout, proc.stderr
