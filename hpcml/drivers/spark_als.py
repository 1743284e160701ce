"""``engine: spark``'s ``als``: matrix factorization of a ratings table by Spark MLlib's ALS
(explicit ratings), scored by the RMSE of its predicted ratings. Ratings whose user or item
the training ratings lack get no prediction and are left out of the RMSE
(``coldStartStrategy="drop"``)."""
from __future__ import annotations

from hpcml.drivers.spark_fitters import MLlibKind
from hpcml.drivers.spark_frames import SPLIT, with_split


def fit_als(params, ratings, cols: list[str], facts: dict, seed: int):
    from pyspark.ml.recommendation import ALS

    user, item, rating = cols
    return ALS(userCol=user, itemCol=item, ratingCol=rating, rank=params.rank, maxIter=params.max_iter,
               regParam=params.reg_param, implicitPrefs=False, coldStartStrategy="drop", seed=seed).fit(ratings)


def outputs_als(params, model, cols: list[str], facts: dict) -> dict[str, float]:
    return {"users": float(model.userFactors.count()), "items": float(model.itemFactors.count())}


def score_als(params, model, frame, facts: dict) -> dict[str, float]:
    from pyspark.ml.evaluation import RegressionEvaluator

    pred = model.transform(frame).persist()
    try:
        if pred.limit(1).count() == 0:  # every rating was a cold start
            return {"rmse": float("nan")}
        return {"rmse": float(RegressionEvaluator(metricName="rmse", labelCol=params.rating_col,
                                                  predictionCol="prediction").evaluate(pred))}
    finally:
        pred.unpersist()


def whole_als(params, ratings, cols: list[str], facts: dict, seed: int) -> dict[str, float]:
    """``plan: fit``: the ratings split by ``rand(seed) < holdout`` into held-out and training
    ones; ALS (seeded with the job's seed) fitted on the training ratings."""
    from pyspark.sql import functions as F

    split = with_split(ratings, seed)
    try:
        held = F.col(SPLIT) < params.holdout
        train, test = split.filter(~held), split.filter(held)
        model = fit_als(params, train, cols, facts, seed)
        return {"test_rmse": score_als(params, model, test, facts)["rmse"],
                "train_rmse": score_als(params, model, train, facts)["rmse"],
                **outputs_als(params, model, cols, facts)}
    finally:
        split.unpersist()


ALS_KIND = MLlibKind(fit_als, outputs_als, score_als)
