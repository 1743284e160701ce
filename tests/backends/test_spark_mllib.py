"""``engine: spark`` beyond one fit of ols/logistic/kmeans/pca: naive Bayes and ALS, and the cv
and sweep plans over MLlib fits, each against pyspark's own result computed here directly
(same data, same seeded split, same parameters), and naive Bayes also against the single-node
``naive_bayes`` kind.

One in-process SparkSession (module fixture) serves every test: hpcml's runs reuse it.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT

pyspark = pytest.importorskip("pyspark", reason="pyspark not installed (pip install 'hpcml[spark]')")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SEED = 11
EXACT = 1e-9  # hpcml's MLlib fit vs the same MLlib fit made here: the same numbers


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from hpcml.backends.spark import SparkOptions, spark_session

    handle = spark_session(SparkOptions(), 2, tmp_path_factory.mktemp("spark-logs"))
    yield handle.spark
    handle.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Naive Bayes data of each model type (3 classes, a text target), a regression and
    blobs (for cv), and a ratings table (low rank plus noise) for ALS; all as Parquet."""
    from sklearn.datasets import make_blobs, make_regression

    root, rng = tmp_path_factory.mktemp("data"), np.random.default_rng(5)
    y = rng.integers(0, 3, 900)
    frames = {
        "multinomial": rng.poisson(np.array([[1, 4, 2, 0.5], [3, 1, 1, 2], [2, 2, 5, 1]])[y]).astype(float),
        "bernoulli": (rng.random((900, 5)) < np.array([[.2, .7, .5, .1, .9], [.6, .3, .5, .8, .2],
                                                        [.5, .5, .1, .4, .6]])[y]).astype(float),
        "gaussian": rng.normal(np.array([[0, 1, 2], [1, -1, 0], [3, 0, 1]])[y], [1.0, 2.0, 0.5]),
    }
    out = {}
    for name, X in frames.items():
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame["y"] = np.array(["ant", "bee", "cat"])[y]
        out[name] = root / f"nb-{name}.parquet"
        frame.to_parquet(out[name], index=False)
    X, t = make_regression(n_samples=1200, n_features=4, noise=3.0, random_state=1)
    out["ols"] = root / "ols.parquet"
    pd.DataFrame(X, columns=["x0", "x1", "x2", "x3"]).assign(y=t).to_parquet(out["ols"], index=False)
    X, _ = make_blobs(n_samples=1200, centers=[[0, 0], [6, 0], [0, 6]], cluster_std=1.0, random_state=4)
    out["kmeans"] = root / "kmeans.parquet"
    pd.DataFrame(X, columns=["x0", "x1"]).to_parquet(out["kmeans"], index=False)
    users, items, rank = 80, 50, 3
    true = rng.normal(size=(users, rank)) @ rng.normal(size=(rank, items)) + 3.0
    seen = rng.random((users, items)) < 0.5
    u, i = np.nonzero(seen)
    out["als"] = root / "ratings.parquet"
    pd.DataFrame({"uid": u, "iid": i, "stars": true[u, i] + rng.normal(0, 0.3, u.size)}).to_parquet(out["als"], index=False)
    return out


def _spec(tmp_path: Path, source: Path, model: dict, plan: dict | None = None, **data) -> dict:
    return {"name": f"mllib-{model['kind']}", "seed": SEED, "engine": "spark", "data": {"source": str(source), **data},
            "model": model, "plan": plan or {"fit": {}}, "output": str(tmp_path / "run")}


def _assembled(spark, source: Path, features: list[str], target: str | None = None):
    """The data as MLlib takes it, built here the plain way: a feature vector and, for a
    classifier, the label index of the sorted classes."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    frame = spark.read.parquet(str(source))
    cols = [F.col(c).cast("double").alias(c) for c in features]
    if target is not None:
        classes = sorted(r[0] for r in frame.select(target).distinct().collect())
        label = F.lit(0.0)
        for j, c in enumerate(classes[1:], start=1):
            label = F.when(F.col(target) == c, float(j)).otherwise(label)
        frame = frame.withColumn("label", label)
        cols.append(F.col("label"))
    return VectorAssembler(inputCols=features, outputCol="features").transform(frame.select(*cols))


def _close(got, want, tol=EXACT, what=""):
    assert math.isclose(float(got), float(want), rel_tol=tol, abs_tol=tol), (what, got, want)


# --------------------------------------------------------------------------- naive Bayes

# The single-node kind (scikit-learn) with Spark's smoothed priors: multinomial and Bernoulli
# are the same formulas; Gaussian variances differ only by the 1e-9 x largest variance added.
SINGLE_NODE = {"multinomial": 1e-10, "bernoulli": 1e-10, "gaussian": 1e-7}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("model_type", ["multinomial", "bernoulli", "gaussian"])
def test_naive_bayes_is_pysparks_and_the_single_node_kinds(spark, files, tmp_path, model_type):
    from pyspark.ml.classification import NaiveBayes

    from hpcml import run
    from hpcml.data import load_dataset
    from hpcml.models.base import FitContext
    from hpcml.plans import task_rng
    from hpcml.spec import load_job

    spec = _spec(tmp_path, files[model_type], {"kind": "naive_bayes", "model_type": model_type, "smoothing": 0.5},
                 target="y")
    result = run(spec, progress=False)
    assert result.ok, result.failures()
    got = result.results.iloc[0]
    features = [c for c in pd.read_parquet(files[model_type]).columns if c != "y"]

    model = NaiveBayes(modelType=model_type, smoothing=0.5).fit(_assembled(spark, files[model_type], features, "y"))
    pi, theta = model.pi.toArray(), model.theta.toArray()
    for i, c in enumerate(["ant", "bee", "cat"]):
        _close(got[f"log_prior_{c}"], pi[i], what=c)
        for j, f in enumerate(features):
            _close(got[f"theta_{c}_{f}"], theta[i, j], what=(c, f))
            if model_type == "gaussian":
                _close(got[f"var_{c}_{f}"], model.sigma.toArray()[i, j], what=(c, f))

    job = load_job({**spec, "engine": "hpcml"})
    data = load_dataset(job)
    fitted = job.model.fit(job.params, data, None, FitContext(rng=task_rng(SEED, 0)))
    single = {**job.model.outputs(job.params, fitted, data), **job.model.score(job.params, fitted, data, None)}
    assert set(single) <= set(got.index), sorted(set(single) - set(got.index))
    for col, want in single.items():
        _close(got[col], want, SINGLE_NODE[model_type], col)


def test_multinomial_naive_bayes_refuses_negative_features(spark, files, tmp_path):
    from hpcml import run
    from hpcml.errors import SpecError

    with pytest.raises(SpecError) as err:
        run(_spec(tmp_path, files["gaussian"], {"kind": "naive_bayes"}, target="y"), progress=False)
    assert err.value.lines()[0].startswith("model.model_type:"), err.value.lines()
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- ALS

ALS_MODEL = {"kind": "als", "user_col": "uid", "item_col": "iid", "rating_col": "stars", "rank": 3,
             "max_iter": 8, "reg_param": 0.05, "holdout": 0.25}


@pytest.mark.timeout(300)
def test_als_test_rmse_is_pysparks_own(spark, files, tmp_path):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from hpcml import run

    result = run(_spec(tmp_path, files["als"], ALS_MODEL), progress=False)
    assert result.ok, result.failures()
    got = result.results.iloc[0]

    ratings = spark.read.parquet(str(files["als"])).select(
        F.col("uid").cast("int"), F.col("iid").cast("int"), F.col("stars").cast("double"))
    split = ratings.withColumn("u", F.rand(SEED))
    train, test = split.filter(F.col("u") >= 0.25), split.filter(F.col("u") < 0.25)
    model = ALS(userCol="uid", itemCol="iid", ratingCol="stars", rank=3, maxIter=8, regParam=0.05,
                implicitPrefs=False, coldStartStrategy="drop", seed=SEED).fit(train)
    rmse = RegressionEvaluator(metricName="rmse", labelCol="stars")
    _close(got["test_rmse"], rmse.evaluate(model.transform(test)), what="test_rmse")
    _close(got["train_rmse"], rmse.evaluate(model.transform(train)), what="train_rmse")
    assert 0.2 < got["train_rmse"] < got["test_rmse"] < 1.5  # low rank plus noise of sd 0.3: learned
    assert result.summary["run"]["rows"] == len(pd.read_parquet(files["als"]))


def test_als_needs_engine_spark_in_one_line(files, tmp_path):
    from hpcml.errors import SpecError
    from hpcml.spec import load_job

    with pytest.raises(SpecError) as err:
        load_job({**_spec(tmp_path, files["als"], ALS_MODEL), "engine": "hpcml"})
    lines = err.value.lines()
    assert len(lines) == 1 and lines[0].startswith("model.kind: als runs only as a Spark MLlib fit: add engine: spark"), \
        lines


# --------------------------------------------------------------------------- cv and sweep

@pytest.mark.timeout(300)
def test_cv_of_ols_is_pysparks_own_folds(spark, files, tmp_path):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import functions as F

    from hpcml import run

    result = run(_spec(tmp_path, files["ols"], {"kind": "ols"}, {"cv": {"folds": 3}}, target="y"), progress=False)
    assert result.ok, result.failures()
    got = result.results.sort_values("fold").reset_index(drop=True)
    assert list(got["fold"]) == [0, 1, 2] and list(got["repeat"]) == [0, 0, 0]

    frame = spark.read.parquet(str(files["ols"]))
    data = VectorAssembler(inputCols=["x0", "x1", "x2", "x3"], outputCol="features").transform(
        frame.select(*[F.col(c).cast("double") for c in frame.columns])).withColumn("u", F.rand(SEED))
    for fold in range(3):
        held = (F.col("u") >= fold / 3) & (F.col("u") < (fold + 1) / 3)
        model = LinearRegression(labelCol="y", regParam=0.0, standardization=False).fit(data.filter(~held))
        pred = model.transform(data.filter(held))
        for metric in ("r2", "rmse", "mse"):
            want = RegressionEvaluator(labelCol="y", metricName=metric).evaluate(pred)
            _close(got.loc[fold, f"test_{metric}"], want, what=(fold, metric))
        _close(got.loc[fold, "coef_x0"], model.coefficients[0], what=(fold, "coef_x0"))
        _close(got.loc[fold, "coef_(Intercept)"], model.intercept, what=(fold, "intercept"))
    assert "train_r2" in got
    table = {row["output"]: row for row in result.summary["table"]}
    _close(table["test_rmse"]["mean"], got["test_rmse"].mean(), what="summary mean")


@pytest.mark.timeout(300)
def test_a_fit_of_data_above_blocks_above_mb_never_reads_it_into_the_driver(spark, files, tmp_path, monkeypatch):
    """Spark read the data in partitions; the summary's whole-data report (summary(lm)) refits
    in one process, which for data larger than the driver's memory ended in the kernel's
    out-of-memory kill after the fit had finished. Above data.blocks_above_mb it is left out
    and says so; below it, it is made as before."""
    import hpcml.drivers.finish as finish
    from hpcml import run

    small = run(_spec(tmp_path / "small", files["ols"], {"kind": "ols"}, target="y"), progress=False)
    assert small.ok, small.failures()
    assert small.summary["table"][0]["term"] == "(Intercept)" and not small.summary.get("notes")  # summary(lm)

    def refuse(job):
        raise AssertionError(f"the driver read {job.spec.data.source} into memory")

    monkeypatch.setattr(finish, "load_dataset", refuse)
    big = run(_spec(tmp_path / "big", files["ols"], {"kind": "ols"}, target="y", blocks_above_mb=0), progress=False)
    assert big.ok, big.failures()
    assert all("term" not in row for row in big.summary["table"])
    assert any("blocks_above_mb" in note for note in big.summary["notes"])
    got = {row["output"]: row["value"] for row in big.summary["table"]}
    coefs = [c for c in small.results if c.startswith("coef_")]
    assert len(coefs) == 5  # the intercept and x0..x3: Spark's own fit, the same in both runs
    for c in coefs:
        _close(got[c], small.results[c].iloc[0], what=c)


@pytest.mark.timeout(300)
def test_cv_of_kmeans_scores_the_held_out_fold_as_the_single_node_kind(spark, files, tmp_path):
    from sklearn.metrics import calinski_harabasz_score

    from hpcml import run

    result = run(_spec(tmp_path, files["kmeans"], {"kind": "kmeans", "k": 3}, {"cv": {"folds": 2}}), progress=False)
    assert result.ok, result.failures()
    # The held-out rows of fold 0 (rand < 1/2), scored with the fold's fitted centres.
    from pyspark.sql import functions as F

    rows = spark.read.parquet(str(files["kmeans"])).withColumn("u", F.rand(SEED)).toPandas()
    for fold in (0, 1):
        got = result.results.loc[result.results["fold"] == fold].iloc[0]
        test = rows.loc[(rows["u"] >= fold / 2) & (rows["u"] < (fold + 1) / 2), ["x0", "x1"]].to_numpy()
        centres = np.array([[got[f"center_{j}_x0"], got[f"center_{j}_x1"]] for j in (1, 2, 3)])
        d2 = ((test[:, None, :] - centres[None]) ** 2).sum(axis=2)
        _close(got["test_inertia"], d2.min(axis=1).sum(), 1e-9, "inertia")
        _close(got["test_calinski_harabasz"], calinski_harabasz_score(test, d2.argmin(axis=1)), 1e-9, "CH")


@pytest.mark.timeout(300)
def test_sweep_of_naive_bayes_is_pysparks_own_holdout(spark, files, tmp_path):
    from pyspark.ml.classification import NaiveBayes
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.sql import functions as F

    from hpcml import run

    grid = [0.1, 1.0, 10.0]
    spec = _spec(tmp_path, files["multinomial"], {"kind": "naive_bayes"},
                 {"sweep": {"grid": {"smoothing": grid}, "holdout": 0.3}}, target="y")
    result = run(spec, progress=False)
    assert result.ok, result.failures()
    got = result.results.set_index("param_smoothing")

    data = _assembled(spark, files["multinomial"], ["x0", "x1", "x2", "x3"], "y").withColumn("u", F.rand(SEED))
    held = F.col("u") < 0.3
    accuracy = {}
    for smoothing in grid:
        model = NaiveBayes(smoothing=smoothing).fit(data.filter(~held))
        pred = model.transform(data.filter(held))
        for metric, name in (("accuracy", "accuracy"), ("logLoss", "log_loss")):
            want = MulticlassClassificationEvaluator(metricName=metric, eps=1e-15).evaluate(pred)
            _close(got.loc[smoothing, f"test_{name}"], want, what=(smoothing, name))
        accuracy[smoothing] = got.loc[smoothing, "test_accuracy"]
    summary = result.summary
    assert summary["metric"] == "test_accuracy" and len(summary["table"]) == 3
    assert summary["best"]["test_accuracy_mean"] == max(accuracy.values())


@pytest.mark.timeout(120)
def test_pca_cv_and_bootstrap_are_refused_before_spark_starts(files, tmp_path):
    from hpcml.drivers.spark_engine import static_problems
    from hpcml.errors import SpecError
    from hpcml.spec import load_job

    for model, plan in (({"kind": "pca"}, {"cv": {"folds": 3}}), ({"kind": "ols"}, {"bootstrap": {"replicates": 5}})):
        job = load_job(_spec(tmp_path, files["ols"], model, plan, target="y"))
        with pytest.raises(SpecError) as err:
            static_problems(job)
        assert len(err.value.lines()) == 1 and err.value.lines()[0].startswith("plan:"), err.value.lines()


@pytest.mark.timeout(300)
def test_sweep_of_als_ranks_is_pysparks_own_and_resumes(spark, files, tmp_path):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from hpcml import run
    from hpcml.rundir.store import RunStore

    spec = _spec(tmp_path, files["als"], {k: v for k, v in ALS_MODEL.items() if k != "holdout"},
                 {"sweep": {"grid": {"rank": [1, 3]}, "holdout": 0.2}})
    first = run(spec, progress=False)
    assert first.ok, first.failures()
    got = first.results.set_index("param_rank")

    ratings = spark.read.parquet(str(files["als"])).select(
        F.col("uid").cast("int"), F.col("iid").cast("int"), F.col("stars").cast("double")).withColumn("u", F.rand(SEED))
    held = F.col("u") < 0.2
    for rank in (1, 3):
        model = ALS(userCol="uid", itemCol="iid", ratingCol="stars", rank=rank, maxIter=8, regParam=0.05,
                    coldStartStrategy="drop", seed=SEED).fit(ratings.filter(~held))
        want = RegressionEvaluator(metricName="rmse", labelCol="stars").evaluate(model.transform(ratings.filter(held)))
        _close(got.loc[rank, "test_rmse"], want, what=rank)
    assert first.summary["metric"] == "test_rmse" and first.summary["greater_is_better"] is False
    assert first.summary["best"]["rank"] == 3  # the data has rank 3

    # A lost task (a killed driver): resume refits that one and keeps the other's file.
    store = RunStore(first.run_dir)
    lost, kept = sorted(store.chunk_files())
    mtime = kept.stat().st_mtime_ns
    lost.unlink()
    again = run(spec, resume=True, progress=False)
    assert again.ok and kept.stat().st_mtime_ns == mtime and len(store.chunk_files()) == 2
    _close(again.results.set_index("param_rank").loc[1, "test_rmse"], got.loc[1, "test_rmse"], what="resumed")


def test_local_mode_asks_for_a_heap_sized_to_the_machine(tmp_path):
    """Spark's own default (1 GB of heap for the one local JVM) ran out of memory caching 20
    million rows of 10 features; hpcml asks for a quarter of the machine unless told."""
    from hpcml.backends.spark import SparkOptions, local_heap_mb, session_conf

    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    assert local_heap_mb() == max(1024, int(total_mb / 4))
    assert session_conf(SparkOptions(), 2, tmp_path)["spark.driver.memory"] == f"{local_heap_mb()}m"
    assert session_conf(SparkOptions(executor_memory_gb=3), 2, tmp_path)["spark.driver.memory"] == "3072m"
    told = SparkOptions(conf={"spark.driver.memory": "2g"})
    assert session_conf(told, 2, tmp_path)["spark.driver.memory"] == "2g"
    remote = session_conf(SparkOptions(spark_master="spark://127.0.0.1:7077"), 2, tmp_path)
    assert "spark.driver.memory" not in remote and "spark.executor.memory" not in remote


_OUT_OF_MEMORY = '''
import sys
from hpcml.drivers import spark_engine


def out_of_memory(job, data, features, facts):
    # One task needs more heap than the JVM has (100 million longs, 800 MB, in one array):
    # the JVM exits, as it did caching 20 million rows in Spark's default 1 GB.
    data.sparkSession.range(2).selectExpr("array_max(array_repeat(id, 100000000))").collect()
    return {}


spark_engine.FITTERS["ols"] = out_of_memory
from hpcml.cli import main
sys.argv = ["hpcml", "run", sys.argv[1]]
main()
'''


@pytest.mark.timeout(300)
def test_a_jvm_out_of_memory_is_one_line_and_a_failed_fit(files, tmp_path):
    """A fit whose JVM runs out of heap and exits: exit 1, one line naming the cause and the
    setting, a failed record (no coefficients passed off as a result), no traceback."""
    script, spec = tmp_path / "oom.py", tmp_path / "spec.yaml"
    script.write_text(_OUT_OF_MEMORY)
    spec.write_text(yaml.safe_dump({
        "name": "oom", "engine": "spark", "output": str(tmp_path / "run"), "data": {"source": str(files["ols"]), "target": "y"},
        "model": {"kind": "ols"}, "plan": {"fit": {}}, "backend": {"name": "spark", "workers": 1, "executor_memory_gb": 0.5}}))
    proc = subprocess.run([sys.executable, str(script), str(spec)], cwd=ROOT, capture_output=True, text=True, timeout=280,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ran out of memory" in ln]
    assert len(lines) == 1 and "Java heap space" in lines[0] and "spark.driver.memory=512m" in lines[0] \
        and "backend.executor_memory_gb" in lines[0], proc.stdout + proc.stderr
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert list(results["status"]) == ["failed"] and "coef_x0" not in results.columns
