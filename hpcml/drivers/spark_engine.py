"""``engine: spark``: one distributed pyspark.ml fit of the whole data set (data too big for one node).

Where the hpcml engine runs many independent single-node fits, this engine runs one fit with
Spark MLlib over a Parquet/CSV data set that Spark reads in partitions, so the data never has
to fit in one process. The run directory is the same as any run's (spec.json, chunks/,
results.parquet, summary.json) and the output columns carry the same names as the single-node
kinds (``coef_bmi``, ``center_1_x0``, ``evr_1``...), so the two engines compare column by column.

Models: ols -> LinearRegression (normal equations), logistic -> LogisticRegression
(unpenalised), kmeans -> KMeans (k-means||), pca -> PCA. Plan: ``fit`` only.
"""
from __future__ import annotations

import glob
import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any

from hpcml.drivers.attempts import refuse_retries_and_timeout
from hpcml.errors import SpecError
from hpcml.rundir.store import Chunk
from hpcml.tasks.task_records import failure_record, ok_record
from hpcml.rundir.opening import open_run
from hpcml.spec import Job
from hpcml.rundir.store import write_chunk_records
from hpcml.backends.spark import SparkOptions
from hpcml.backends.spark import spark_session
from hpcml.drivers.finish import finish
from hpcml.backends.spark import spark_error_line

log = logging.getLogger("hpcml")

MODELS = ("ols", "logistic", "kmeans", "pca")
FEATURES, LABEL = "_hpcml_features", "_hpcml_label"


def static_problems(job: Job) -> None:
    """Everything that can be found wrong without starting Spark."""
    refuse_retries_and_timeout(job, "engine: spark runs one distributed fit (Spark retries its own failed tasks)")
    spec = job.spec
    if spec.model.kind not in MODELS:
        raise SpecError.one("model.kind", spec.model.kind, f"engine: spark supports {', '.join(MODELS)}")
    if not job.plan.single_fit:
        raise SpecError.one("plan", spec.plan.kind, "engine: spark runs one distributed fit; use plan: {fit: {}}")
    if spec.model.kind == "pca" and job.params.scale:
        raise SpecError.one("model.scale", True, "engine: spark fits PCA of the unscaled columns; scale them first "
                            "or use engine: hpcml")
    source = spec.data.source
    if "://" in source:  # hdfs://, s3a://...: only Spark can look there
        return
    if not source.lower().rstrip("/").endswith((".csv", ".parquet")) and not Path(source).is_dir():
        raise SpecError.one("data.source", source,
                            "engine: spark reads .csv or .parquet data (a file, a directory of parts, or a glob)")
    if not glob.glob(source):
        raise SpecError.one("data.source", source, "file not found")


def _spark_options(job: Job):
    backend = job.spec.backend
    # Spark options apply only when the spec names the spark backend; another backend's
    # options (e.g. local's start_method) mean nothing to this engine.
    return SparkOptions(**(backend.model_extra or {})) if backend.name == "spark" else SparkOptions()


def read_frame(spark, job: Job):
    """The data as a Spark DataFrame, read lazily in partitions."""
    source, options = job.spec.data.source, {k: str(v) for k, v in job.spec.data.options.items()}
    try:
        if source.lower().rstrip("/").endswith(".csv") or (Path(source).is_dir() and glob.glob(f"{source}/*.csv")):
            # inferSchema costs one extra pass; Parquet carries its schema and needs none.
            return spark.read.options(header="true", inferSchema="true", **options).csv(source)
        return spark.read.options(**options).parquet(source)
    except Exception as err:
        raise SpecError.one("data.source", source, f"cannot read: {str(err).strip().splitlines()[0]}") from None


def _columns(job: Job, frame) -> tuple[list[str], str | None]:
    """Feature and target columns, checked against the schema (as hpcml.data does)."""
    from pyspark.sql.types import BooleanType, NumericType

    spec, names = job.spec, frame.columns
    types = {f.name: f.dataType for f in frame.schema.fields}
    target = spec.data.target if job.model.needs_target else None
    if target is not None and target not in names:
        raise SpecError.one("data.target", target, f"unknown column; available: {', '.join(names)}")
    features = spec.model.features or [c for c in names if c != spec.data.target]
    for col in features:
        if col not in names:
            raise SpecError.one("model.features", col, f"unknown column; available: {', '.join(names)}")
        if col == target:
            raise SpecError.one("model.features", col, "the target cannot also be a feature")
        if not isinstance(types[col], (NumericType, BooleanType)):
            raise SpecError.one("model.features", col, f"column is not numeric (dtype {types[col].simpleString()})")
    if len(set(features)) != len(features):
        raise SpecError.one("model.features", next(f for f in features if features.count(f) > 1), "listed twice")
    if target is not None and job.model.name == "ols" and not isinstance(types[target], NumericType):
        raise SpecError.one("data.target", target, "ols needs a numeric target")
    return features, target


def _scan(job: Job, frame, features: list[str], target: str | None) -> tuple[Any, dict[str, float]]:
    """One pass: row count, missing values per column, per-feature variances; drops or refuses NaN rows."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    used = features + ([target] if target else [])
    numeric = {f.name for f in frame.schema.fields if isinstance(f.dataType, NumericType)}

    def missing(i, c):
        bad = F.col(c).isNull() | (F.isnan(F.col(c)) if c in numeric else F.lit(False))
        return F.sum(F.when(bad, 1).otherwise(0)).alias(f"na_{i}")

    def summary(df):
        aggs = [F.count(F.lit(1)).alias("n"), *[missing(i, c) for i, c in enumerate(used)],
                *[F.var_pop(F.col(c)).alias(f"v_{i}") for i, c in enumerate(features)],
                *[F.avg(F.col(c)).alias(f"m_{i}") for i, c in enumerate(features)]]
        return df.agg(*aggs).first().asDict()

    row = summary(frame)
    na = {c: int(row[f"na_{i}"] or 0) for i, c in enumerate(used)}
    if any(na.values()):
        if not job.spec.data.dropna:
            col = max(na, key=na.get)
            raise SpecError.one("data.source", job.spec.data.source,
                                f"column {col!r} has {na[col]} missing/NaN values (set data.dropna: true to drop those rows)")
        frame = frame.dropna(subset=used)  # Spark drops rows with null or NaN
        row = summary(frame)  # a second pass only when rows were dropped
    n = int(row["n"])
    if n == 0:
        raise SpecError.one("data.source", job.spec.data.source, "the data has no rows")
    return frame, {"n": n, "var_pop": [float(row[f"v_{i}"] or 0.0) for i in range(len(features))],
                   "mean": [float(row[f"m_{i}"] or 0.0) for i in range(len(features))]}


def _binary_label(job: Job, frame, target: str):
    """Target -> 0/1 label: sorted classes, the larger is 1 (as hpcml's logistic)."""
    from pyspark.sql import functions as F

    classes = sorted(r[0] for r in frame.select(target).distinct().limit(3).collect())
    if len(classes) != 2:
        raise SpecError.one("data.target", target, f"logistic needs 2 classes, found {len(classes)}")
    return frame.withColumn(LABEL, F.when(F.col(target) == F.lit(classes[1]), 1.0).otherwise(0.0)), classes


def _check_params(job: Job, n: int, p: int) -> None:
    params, kind = job.params, job.model.name
    if kind in ("ols", "logistic") and n < p + int(params.fit_intercept):
        raise SpecError.one("data", n, f"{n} rows cannot determine {p + int(params.fit_intercept)} coefficients")
    if kind == "kmeans" and params.k > n:
        raise SpecError.one("model.k", params.k, f"k={params.k} exceeds the number of rows ({n})")
    if kind == "pca" and params.n_components is not None and params.n_components > min(n, p):
        raise SpecError.one("model.n_components", params.n_components, f"n_components={params.n_components} exceeds min(n, p) = {min(n, p)}")


def prepare(spark, job: Job):
    """Read, check and assemble: (cached DataFrame with feature vector [+ label], features, facts)."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    frame = read_frame(spark, job)
    features, target = _columns(job, frame)
    frame, facts = _scan(job, frame.select(*features, *([target] if target else [])), features, target)
    _check_params(job, facts["n"], len(features))
    if job.model.name == "logistic":
        frame, facts["classes"] = _binary_label(job, frame, target)
    elif target:
        frame = frame.withColumn(LABEL, F.col(target).cast("double"))
    cols = [F.col(c).cast("double").alias(c) for c in features]
    assembled = VectorAssembler(inputCols=features, outputCol=FEATURES).transform(
        frame.select(*cols, *([LABEL] if target else [])))
    # Iterative fits (L-BFGS, Lloyd) pass over the data many times: keep it in executors.
    assembled = assembled.select(FEATURES, *([LABEL] if target else [])).persist()
    return assembled, features, facts


def _coef_record(features: list[str], intercept: float, coef, fit_intercept: bool) -> dict[str, float]:
    out = {"coef_(Intercept)": float(intercept)} if fit_intercept else {}
    out.update({f"coef_{f}": float(c) for f, c in zip(features, coef)})
    return out


def fit_ols(job: Job, data, features: list[str], facts: dict) -> dict[str, float]:
    from pyspark.ml.regression import LinearRegression

    p = job.params
    # regParam 0 + solver auto: the normal equations (WeightedLeastSquares) up to 4096 features,
    # the exact least-squares solution the single-node kind also computes.
    model = LinearRegression(featuresCol=FEATURES, labelCol=LABEL, regParam=0.0, elasticNetParam=0.0,
                             fitIntercept=p.fit_intercept, standardization=False, solver="auto").fit(data)
    s = model.summary
    return {**_coef_record(features, model.intercept, model.coefficients, p.fit_intercept),
            "r2": float(s.r2), "rmse": float(s.rootMeanSquaredError), "mse": float(s.meanSquaredError)}


def fit_logistic(job: Job, data, features: list[str], facts: dict) -> dict[str, float]:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator

    p = job.params
    # Unpenalised maximum likelihood, as the single-node kind (and R's glm); L-BFGS on the
    # standardized problem converges to the same optimum, to within its tolerance.
    model = LogisticRegression(featuresCol=FEATURES, labelCol=LABEL, regParam=0.0, elasticNetParam=0.0,
                               family="binomial", fitIntercept=p.fit_intercept, maxIter=p.max_iter,
                               tol=p.tol, standardization=True).fit(data)
    pred = model.transform(data).persist()
    try:
        multi = lambda metric: MulticlassClassificationEvaluator(  # noqa: E731
            labelCol=LABEL, metricName=metric, eps=1e-15).evaluate(pred)
        # numBins=0: the exact ROC curve (the model summary's AUC down-samples to 100 bins).
        auc = BinaryClassificationEvaluator(rawPredictionCol="probability", labelCol=LABEL,
                                            metricName="areaUnderROC", numBins=0).evaluate(pred)
        scores = {"accuracy": float(multi("accuracy")), "log_loss": float(multi("logLoss")), "auc": float(auc)}
    finally:
        pred.unpersist()
    return {**_coef_record(features, model.intercept, model.coefficients, p.fit_intercept), **scores}


def fit_kmeans(job: Job, data, features: list[str], facts: dict) -> dict[str, float]:
    from pyspark.ml.clustering import KMeans

    p = job.params
    # The single-node kind stops when the summed squared centre shift < tol * mean variance;
    # Spark stops when every centre moves less than an absolute distance: the square root of
    # the same threshold.
    tol = math.sqrt(p.tol * (sum(facts["var_pop"]) / max(1, len(features))))
    model = KMeans(featuresCol=FEATURES, k=p.k, maxIter=p.max_iter, tol=tol, seed=job.spec.seed,
                   initMode="k-means||").fit(data)
    # Centres in lexicographic order, as hpcml numbers them; each cluster's size with it.
    clusters = sorted(zip((tuple(float(v) for v in c) for c in model.clusterCenters()), model.summary.clusterSizes))
    inertia = float(model.summary.trainingCost)
    out = {"inertia": inertia, "n_iter": float(model.summary.numIter)}
    for j, (c, _) in enumerate(clusters, start=1):
        out.update({f"center_{j}_{f}": v for f, v in zip(features, c)})
    out.update({f"size_{j}": float(size) for j, (_, size) in enumerate(clusters, start=1)})
    out["mean_sq_dist"] = inertia / facts["n"]
    out["calinski_harabasz"] = _calinski_harabasz(clusters, facts["mean"], inertia, facts["n"])
    return out


def _calinski_harabasz(clusters, mean: list[float], within: float, n: int) -> float:
    """The index the single-node kind scores (``models/kmeans.calinski_harabasz``), from the
    fitted centres (the means of their clusters), their sizes, the data's mean and the
    within-cluster sum of squares."""
    from hpcml.models.kmeans import calinski_harabasz_ratio  # only for a k-means fit

    present = [(c, size) for c, size in clusters if size > 0]
    between = sum(size * sum((a - b) ** 2 for a, b in zip(c, mean)) for c, size in present)
    return calinski_harabasz_ratio(between, within, n, len(present))


def fit_pca(job: Job, data, features: list[str], facts: dict) -> dict[str, float]:
    import numpy as np
    from pyspark.ml.feature import PCA

    p, n, n_feat = job.params, facts["n"], len(features)
    # Spark's PCA eigendecomposes the distributed covariance matrix. Every component is
    # reported, as the single-node kind does (the scree and the k for 80/90/95 % need them);
    # n_components says how many are kept: given, by the variance rule, or all.
    model = PCA(k=min(n, n_feat), inputCol=FEATURES, outputCol="_pca").fit(data)
    ratio = np.asarray(model.explainedVariance.toArray(), dtype=float)
    cum = np.cumsum(ratio)
    if p.n_components is not None:
        k = p.n_components
    elif p.variance is not None:
        k = int(min(np.searchsorted(cum, p.variance * (1 - 1e-12), side="left") + 1, ratio.size))
    else:
        k = ratio.size
    total_ss = sum(facts["var_pop"]) * n  # sum of squares of the centred data
    out = {"n_components": float(k)}
    for j in range(ratio.size):
        out[f"evr_{j + 1}"] = float(ratio[j])
        out[f"cum_evr_{j + 1}"] = float(cum[j])
        out[f"sv_{j + 1}"] = float(math.sqrt(max(ratio[j], 0.0) * total_ss))
    # What the k kept components leave unexplained, per entry: the single-node reconstruction MSE.
    out["reconstruction_mse"] = float(total_ss * max(0.0, 1.0 - cum[k - 1]) / (n * n_feat))
    return out


FITTERS = {"ols": fit_ols, "logistic": fit_logistic, "kmeans": fit_kmeans, "pca": fit_pca}


def execute_mllib(job: Job, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
    """Run an ``engine: spark`` job; returns the same RunResult as any run."""
    t0 = time.perf_counter()
    static_problems(job)
    try:
        import pyspark  # noqa: F401
    except ImportError as err:
        raise SpecError.one("engine", "spark", f"needs the 'spark' extra: pip install 'hpcml[spark]' ({err})") from None
    with open_run(job, resume=resume, overwrite=overwrite) as run:
        return _fit_and_finish(job, run, t0)


def _fit_and_finish(job: Job, run, t0: float):

    store = run.store
    if 0 in store.completed():
        log.info("%s: the fit is already in %s", job.spec.name, store.path)
        return finish(job, store, time.perf_counter() - t0)
    options = _spark_options(job)
    handle = spark_session(options, job.spec.backend.workers, store.log_dir)
    try:
        data, features, facts = prepare(handle.spark, job)  # bad input here leaves no new run directory
        run.keep()
        record = _fit_record(job, data, features, facts)
        data.unpersist()
    finally:
        handle.stop()
    write_chunk_records(store.path, Chunk((0,)), [record])
    return finish(job, store, time.perf_counter() - t0, run_extra={"engine": "spark", "rows": facts["n"]})


def _fit_record(job: Job, data, features: list[str], facts: dict) -> dict[str, Any]:
    """The fit as the plan's one task record; a failure is a record, not a crash."""
    t, task_id = time.perf_counter(), job.task_id(0)
    try:
        outputs = FITTERS[job.model.name](job, data, features, facts)
    except Exception as err:
        return failure_record(0, task_id, spark_error_line(err).replace("Spark task failed: ", "Spark fit failed: "),
                              traceback.format_exc(), 0, time.perf_counter() - t)
    return ok_record(task_id, 0, 0, time.perf_counter() - t, {"rows": facts["n"], **outputs})
