"""``engine: spark``'s data: read a Parquet/CSV source as a Spark DataFrame, check its columns
as hpcml.data does, and assemble it for MLlib (a feature vector and a label; a ratings table
for ``als``), kept in the executors for the fits that pass over it many times."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from hpcml.errors import SpecError
from hpcml.spec import Job

FEATURES, LABEL = "_hpcml_features", "_hpcml_label"
SPLIT = "_hpcml_u"  # a uniform draw per row (Spark's rand(seed)): folds and held-out rows
MAX_CLASSES = 1000  # a classifier's target with more distinct values is a mistake


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


def _scan(job: Job, frame, features: list[str], target: str | None) -> tuple[Any, dict[str, Any]]:
    """One pass: row count, missing values per column, per-feature variances, means and least
    values; drops or refuses NaN rows."""
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
                *[F.avg(F.col(c)).alias(f"m_{i}") for i, c in enumerate(features)],
                *[F.min(F.col(c).cast("double")).alias(f"lo_{i}") for i, c in enumerate(features)]]
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
                   "mean": [float(row[f"m_{i}"] or 0.0) for i in range(len(features))],
                   "min": [float(row[f"lo_{i}"] or 0.0) for i in range(len(features))]}


def _class_label(job: Job, frame, target: str):
    """Target -> label 0, 1, ...: the classes sorted (as hpcml's classifiers); logistic needs 2."""
    from pyspark.sql import functions as F

    classes = sorted(r[0] for r in frame.select(target).distinct().limit(MAX_CLASSES + 1).collect())
    if job.model.name == "logistic" and len(classes) != 2:
        raise SpecError.one("data.target", target, f"logistic needs 2 classes, found {len(classes)}")
    if len(classes) < 2 or len(classes) > MAX_CLASSES:
        raise SpecError.one("data.target", target, f"{job.model.name} needs 2 to {MAX_CLASSES} classes, "
                            f"found {len(classes)}{'+' if len(classes) > MAX_CLASSES else ''}")
    label = F.lit(0.0)
    for i, c in enumerate(classes[1:], start=1):
        label = F.when(F.col(target) == F.lit(c), float(i)).otherwise(label)
    return frame.withColumn(LABEL, label), classes


def _check_params(job: Job, n: int, p: int, facts: dict) -> None:
    params, kind = job.params, job.model.name
    if kind in ("ols", "logistic") and n < p + int(params.fit_intercept):
        raise SpecError.one("data", n, f"{n} rows cannot determine {p + int(params.fit_intercept)} coefficients")
    if kind == "kmeans" and params.k > n:
        raise SpecError.one("model.k", params.k, f"k={params.k} exceeds the number of rows ({n})")
    if kind == "pca" and params.n_components is not None and params.n_components > min(n, p):
        raise SpecError.one("model.n_components", params.n_components, f"n_components={params.n_components} exceeds min(n, p) = {min(n, p)}")
    if kind == "naive_bayes" and params.model_type != "gaussian" and min(facts["min"], default=0.0) < 0:
        raise SpecError.one("model.model_type", params.model_type,
                            f"{params.model_type} naive Bayes needs non-negative features")


def prepare(spark, job: Job):
    """Read, check and assemble: (cached DataFrame with feature vector [+ label], features, facts)."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    if job.model.name == "als":
        return prepare_ratings(spark, job)
    frame = read_frame(spark, job)
    features, target = _columns(job, frame)
    frame, facts = _scan(job, frame.select(*features, *([target] if target else [])), features, target)
    _check_params(job, facts["n"], len(features), facts)
    if job.model.task_type == "classification" and target:
        frame, facts["classes"] = _class_label(job, frame, target)
    elif target:
        frame = frame.withColumn(LABEL, F.col(target).cast("double"))
    cols = [F.col(c).cast("double").alias(c) for c in features]
    assembled = VectorAssembler(inputCols=features, outputCol=FEATURES).transform(
        frame.select(*cols, *([LABEL] if target else [])))
    # Iterative fits (L-BFGS, Lloyd) pass over the data many times: keep it in executors.
    assembled = assembled.select(FEATURES, *([LABEL] if target else [])).persist()
    return assembled, features, facts


def prepare_ratings(spark, job: Job):
    """``als``'s ratings table: user and item ids as integers, the rating as a double, cached."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    p, frame = job.params, read_frame(spark, job)
    types = {f.name: f.dataType for f in frame.schema.fields}
    cols = [p.user_col, p.item_col, p.rating_col]
    for field, col in zip(("user_col", "item_col", "rating_col"), cols):
        if col not in types:
            raise SpecError.one(f"model.{field}", col, f"unknown column; available: {', '.join(frame.columns)}")
        if not isinstance(types[col], NumericType):
            raise SpecError.one(f"model.{field}", col, f"column is not numeric (dtype {types[col].simpleString()})")
    if len(set(cols)) != 3:
        raise SpecError.one("model.rating_col", p.rating_col, "user, item and rating need three different columns")
    frame, facts = _scan(job, frame.select(*cols), cols, None)
    ids = frame.agg(*[F.sum(F.when(F.col(c) != F.floor(F.col(c)), 1).otherwise(0)).alias(c) for c in cols[:2]]).first()
    for field, col in zip(("user_col", "item_col"), cols[:2]):
        if ids[col]:
            raise SpecError.one(f"model.{field}", col, f"ids must be whole numbers ({ids[col]} rows are not)")
    ratings = frame.select(F.col(cols[0]).cast("int").alias(cols[0]), F.col(cols[1]).cast("int").alias(cols[1]),
                           F.col(cols[2]).cast("double").alias(cols[2])).persist()
    return ratings, cols, facts


def with_split(frame, seed: int):
    """``frame`` with a uniform draw per row (``SPLIT``, Spark's ``rand(seed)``), kept so that
    every fold and held-out set is cut from the same draws. The draws depend on the seed and
    on how the source splits into partitions (the same files read the same way: the same)."""
    from pyspark.sql import functions as F

    return frame.withColumn(SPLIT, F.rand(seed)).persist()
