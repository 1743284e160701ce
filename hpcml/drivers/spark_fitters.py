"""``engine: spark``'s MLlib fits, one per model kind, with output columns named as the
single-node kinds name theirs (``coef_bmi``, ``center_1_x0``, ``evr_1``, ``log_prior_yes``).

Each kind is an ``MLlibKind``: ``fit`` (parameters, training DataFrame, features, facts of the
data, seed -> fitted model), ``outputs`` (the fitted model's own numbers), ``score`` (metrics of
the fitted model on a DataFrame of rows: what cv and sweep record as ``test_*``/``train_*``;
None where the kind has no held-out score here) and ``whole`` (the record of one fit of the
whole data, ``plan: fit``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from hpcml.drivers.spark_frames import FEATURES, LABEL


@dataclass(frozen=True)
class MLlibKind:
    fit: Callable[..., Any]
    outputs: Callable[..., dict[str, float]]
    score: Callable[..., dict[str, float]] | None

    def whole(self, params, data, features: list[str], facts: dict, seed: int) -> dict[str, float]:
        model = self.fit(params, data, features, facts, seed)
        return {**self.outputs(params, model, features, facts), **self.score(params, model, data, facts)}


def _coef_record(features: list[str], intercept: float, coef, fit_intercept: bool) -> dict[str, float]:
    out = {"coef_(Intercept)": float(intercept)} if fit_intercept else {}
    out.update({f"coef_{f}": float(c) for f, c in zip(features, coef)})
    return out


def _linear_outputs(params, model, features, facts) -> dict[str, float]:
    return _coef_record(features, model.intercept, model.coefficients, params.fit_intercept)


def fit_ols(params, data, features, facts, seed):
    from pyspark.ml.regression import LinearRegression

    # regParam 0 + solver auto: the normal equations (WeightedLeastSquares) up to 4096 features,
    # the exact least-squares solution the single-node kind also computes.
    return LinearRegression(featuresCol=FEATURES, labelCol=LABEL, regParam=0.0, elasticNetParam=0.0,
                            fitIntercept=params.fit_intercept, standardization=False, solver="auto").fit(data)


def score_ols(params, model, frame, facts) -> dict[str, float]:
    from pyspark.ml.evaluation import RegressionEvaluator

    pred = model.transform(frame).persist()
    try:
        metric = lambda name: float(RegressionEvaluator(labelCol=LABEL, metricName=name).evaluate(pred))  # noqa: E731
        return {"r2": metric("r2"), "rmse": metric("rmse"), "mse": metric("mse")}
    finally:
        pred.unpersist()


def fit_logistic(params, data, features, facts, seed):
    from pyspark.ml.classification import LogisticRegression

    # Unpenalised maximum likelihood, as the single-node kind (and R's glm); L-BFGS on the
    # standardized problem converges to the same optimum, to within its tolerance.
    return LogisticRegression(featuresCol=FEATURES, labelCol=LABEL, regParam=0.0, elasticNetParam=0.0,
                              family="binomial", fitIntercept=params.fit_intercept, maxIter=params.max_iter,
                              tol=params.tol, standardization=True).fit(data)


def _classifier_scores(model, frame, auc: bool) -> dict[str, float]:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator

    pred = model.transform(frame).persist()
    try:
        multi = lambda metric: float(MulticlassClassificationEvaluator(  # noqa: E731
            labelCol=LABEL, metricName=metric, eps=1e-15).evaluate(pred))
        scores = {"accuracy": multi("accuracy"), "log_loss": multi("logLoss")}
        if auc:
            # numBins=0: the exact ROC curve (the model summary's AUC down-samples to 100 bins).
            scores["auc"] = float(BinaryClassificationEvaluator(rawPredictionCol="probability", labelCol=LABEL,
                                                                metricName="areaUnderROC", numBins=0).evaluate(pred))
        return scores
    finally:
        pred.unpersist()


def fit_kmeans(params, data, features, facts, seed):
    from pyspark.ml.clustering import KMeans

    # The single-node kind stops when the summed squared centre shift < tol * mean variance;
    # Spark stops when every centre moves less than an absolute distance: the square root of
    # the same threshold.
    tol = math.sqrt(params.tol * (sum(facts["var_pop"]) / max(1, len(features))))
    return KMeans(featuresCol=FEATURES, k=params.k, maxIter=params.max_iter, tol=tol, seed=seed,
                  initMode="k-means||").fit(data)


def _clusters(model):
    """Centres in lexicographic order, as hpcml numbers them; each cluster's size with it."""
    return sorted(zip((tuple(float(v) for v in c) for c in model.clusterCenters()), model.summary.clusterSizes))


def outputs_kmeans(params, model, features, facts) -> dict[str, float]:
    clusters = _clusters(model)
    out = {"inertia": float(model.summary.trainingCost), "n_iter": float(model.summary.numIter)}
    for j, (c, _) in enumerate(clusters, start=1):
        out.update({f"center_{j}_{f}": v for f, v in zip(features, c)})
    out.update({f"size_{j}": float(size) for j, (_, size) in enumerate(clusters, start=1)})
    return out


def whole_kmeans(params, data, features, facts, seed) -> dict[str, float]:
    model = fit_kmeans(params, data, features, facts, seed)
    out = outputs_kmeans(params, model, features, facts)
    out["mean_sq_dist"] = out["inertia"] / facts["n"]
    out["calinski_harabasz"] = _calinski_harabasz(_clusters(model), facts["mean"], out["inertia"], facts["n"])
    return out


def _calinski_harabasz(clusters, mean: list[float], within: float, n: int) -> float:
    """The index the single-node kind scores (``models/kmeans.calinski_harabasz``), from the
    fitted centres (the means of their clusters), their sizes, the data's mean and the
    within-cluster sum of squares."""
    from hpcml.models.kmeans import calinski_harabasz_ratio  # only for a k-means fit

    present = [(c, size) for c, size in clusters if size > 0]
    between = sum(size * sum((a - b) ** 2 for a, b in zip(c, mean)) for c, size in present)
    return calinski_harabasz_ratio(between, within, n, len(present))


def score_kmeans(params, model, frame, facts) -> dict[str, float]:
    """The single-node kind's scores of the rows of ``frame``: inertia (squared distances to
    the nearest fitted centre), its mean, and the Calinski-Harabasz index of the rows labelled
    by their nearest centre (the rows' own cluster means, as scikit-learn)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from hpcml.models.kmeans import calinski_harabasz_ratio  # only for a k-means fit

    centers = [[float(v) for v in c] for c in model.clusterCenters()]
    p = len(centers[0])
    pred = model.transform(frame).withColumn("_x", vector_to_array(F.col(FEATURES))).persist()
    try:
        x = [F.col("_x")[j] for j in range(p)]
        centre = [F.element_at(F.array(*[F.lit(c[j]) for c in centers]), F.col("prediction") + 1) for j in range(p)]
        d2 = sum(((x[j] - centre[j]) ** 2 for j in range(p)), F.lit(0.0))
        inertia = float(pred.agg(F.sum(d2)).first()[0] or 0.0)
        groups = pred.groupBy("prediction").agg(F.count(F.lit(1)).alias("n"),
                                                *[F.avg(x[j]).alias(f"m{j}") for j in range(p)],
                                                *[F.var_pop(x[j]).alias(f"v{j}") for j in range(p)]).collect()
    finally:
        pred.unpersist()
    n = sum(g["n"] for g in groups)
    if n == 0:
        return {"inertia": 0.0, "mean_sq_dist": float("nan"), "calinski_harabasz": float("nan")}
    mean = [sum(g["n"] * g[f"m{j}"] for g in groups) / n for j in range(p)]
    between = sum(g["n"] * sum((g[f"m{j}"] - mean[j]) ** 2 for j in range(p)) for g in groups)
    within = sum(g["n"] * sum(g[f"v{j}"] for j in range(p)) for g in groups)
    return {"inertia": inertia, "mean_sq_dist": inertia / n,
            "calinski_harabasz": calinski_harabasz_ratio(between, within, n, len(groups))}


def whole_pca(params, data, features, facts, seed) -> dict[str, float]:
    import numpy as np
    from pyspark.ml.feature import PCA

    from hpcml.models.pca_svd import k_for_variance  # the single-node kind's rule, loaded for a PCA only

    n, n_feat = facts["n"], len(features)
    # Spark's PCA eigendecomposes the distributed covariance matrix. Every component is
    # reported, as the single-node kind does (the scree and the k for 80/90/95 % need them);
    # n_components says how many are kept: given, by the variance rule, or all.
    model = PCA(k=min(n, n_feat), inputCol=FEATURES, outputCol="_pca").fit(data)
    ratio = np.asarray(model.explainedVariance.toArray(), dtype=float)
    cum = np.cumsum(ratio)
    if params.n_components is not None:
        k = params.n_components
    elif params.variance is not None:
        k = k_for_variance(ratio, params.variance)
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


def fit_naive_bayes(params, data, features, facts, seed):
    from pyspark.ml.classification import NaiveBayes

    return NaiveBayes(featuresCol=FEATURES, labelCol=LABEL, modelType=params.model_type,
                      smoothing=params.smoothing).fit(data)


def outputs_naive_bayes(params, model, features, facts) -> dict[str, float]:
    """``log_prior_<class>``, ``theta_<class>_<feature>`` (and ``var_...``, Gaussian): as the
    single-node kind names them. Spark's ``theta`` is the log conditional probability
    (multinomial, Bernoulli) or the class mean (Gaussian); ``sigma`` the class variance."""
    from hpcml.models.naive_bayes import class_name  # only for a naive Bayes fit

    labels = [class_name(c) for c in facts["classes"]]
    theta = model.theta.toArray()
    out = {f"log_prior_{c}": float(v) for c, v in zip(labels, model.pi.toArray())}
    for i, c in enumerate(labels):
        out.update({f"theta_{c}_{f}": float(v) for f, v in zip(features, theta[i])})
    if params.model_type == "gaussian":
        sigma = model.sigma.toArray()
        for i, c in enumerate(labels):
            out.update({f"var_{c}_{f}": float(v) for f, v in zip(features, sigma[i])})
    return out


def _pca_whole_only(*args):
    raise NotImplementedError("pca has no held-out score under engine: spark")


KINDS: dict[str, MLlibKind] = {
    "ols": MLlibKind(fit_ols, _linear_outputs, score_ols),
    "logistic": MLlibKind(fit_logistic, _linear_outputs, lambda p, m, f, facts: _classifier_scores(m, f, auc=True)),
    "naive_bayes": MLlibKind(fit_naive_bayes, outputs_naive_bayes,
                             lambda p, m, f, facts: _classifier_scores(m, f, auc=False)),
    "kmeans": MLlibKind(fit_kmeans, outputs_kmeans, score_kmeans),
    "pca": MLlibKind(_pca_whole_only, _pca_whole_only, None),
}

# plan: fit's record of each kind (a kind not listed: fit, outputs and score of all the rows).
WHOLE: dict[str, Callable[..., dict[str, float]]] = {"kmeans": whole_kmeans, "pca": whole_pca}
