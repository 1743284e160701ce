"""The ``naive_bayes`` kind: multinomial, Bernoulli or Gaussian naive Bayes (scikit-learn),
with the math of Spark MLlib's ``NaiveBayes`` so that ``engine: spark`` fits the same model.

Outputs, per class ``c`` (its label as text) and feature ``f``: ``log_prior_<c>`` and
``theta_<c>_<f>`` (the log probability of the feature given the class, multinomial and
Bernoulli; the class mean, Gaussian), plus ``var_<c>_<f>`` (Gaussian: the class variance).
Scores: ``accuracy`` and ``log_loss`` (multi-class).

The class priors are smoothed as Spark smooths them for multinomial and Bernoulli,
``log((n_c + smoothing) / (n + K * smoothing))``; Gaussian priors are not smoothed (in both).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.numerics.weights import row_mask


class NaiveBayesParams(ModelParams):
    model_type: Literal["multinomial", "gaussian", "bernoulli"] = Field(
        "multinomial", description="Spark's modelType: multinomial (counts), bernoulli (0/1 features), gaussian")
    smoothing: float = Field(1.0, ge=0, description="additive (Laplace) smoothing; unused by gaussian")


def class_name(value: Any) -> str:
    """A class label as it appears in output names: whole floats without '.0'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value)


@dataclass
class NaiveBayesFit:
    model: Any  # the fitted scikit-learn estimator
    labels: list[str]  # class names, in the order of the estimator's classes


def smoothed_log_priors(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """Spark's class priors for multinomial and Bernoulli: smoothed counts."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log(counts + smoothing) - np.log(counts.sum() + counts.size * smoothing)


@register_model
class NaiveBayesKind(ModelKind):
    name = "naive_bayes"
    Params = NaiveBayesParams
    runs_in_driver = True
    needs_target = True
    task_type = "classification"
    primary_metric = "accuracy"
    greater_is_better = True

    def check(self, params: NaiveBayesParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if data.y is None:
            return [("data.target", data.target, "naive_bayes needs a target column")]
        if np.unique(np.asarray(data.y)).size < 2:
            return [("data.target", data.target, "naive_bayes needs at least 2 classes")]
        if params.model_type == "multinomial" and (data.X < 0).any():
            return [("model.model_type", "multinomial", "multinomial naive Bayes needs non-negative features")]
        if params.model_type == "bernoulli" and not np.isin(data.X, (0.0, 1.0)).all():
            return [("model.model_type", "bernoulli", "Bernoulli naive Bayes needs 0/1 features")]
        return []

    def fit(self, params: NaiveBayesParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> NaiveBayesFit:
        from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB

        keep = np.ones(data.n, dtype=bool) if weights is None else np.asarray(weights) > 0
        X, y = data.X[keep], np.asarray(data.y)[keep]
        w = None if weights is None else np.asarray(weights, dtype=np.float64)[keep]
        classes = np.unique(y)
        if params.model_type == "gaussian":
            model = GaussianNB(var_smoothing=1e-9)
        else:
            counts = np.array([(w[y == c].sum() if w is not None else (y == c).sum()) for c in classes])
            prior = np.exp(smoothed_log_priors(counts, params.smoothing))
            cls = MultinomialNB if params.model_type == "multinomial" else BernoulliNB
            extra = {} if params.model_type == "multinomial" else {"binarize": None}
            model = cls(alpha=params.smoothing, force_alpha=True, class_prior=prior, **extra)
        model.fit(X, y, sample_weight=w)
        names = [class_name(data.classes[int(c)]) if data.classes is not None else class_name(c) for c in classes]
        return NaiveBayesFit(model, names)

    def outputs(self, params: NaiveBayesParams, fitted: NaiveBayesFit, data: Dataset) -> dict[str, float]:
        m = fitted.model
        if params.model_type == "gaussian":
            priors, theta = np.log(m.class_prior_), m.theta_
        else:
            priors, theta = m.class_log_prior_, m.feature_log_prob_
        out = {f"log_prior_{c}": float(v) for c, v in zip(fitted.labels, priors)}
        for i, c in enumerate(fitted.labels):
            out.update({f"theta_{c}_{f}": float(v) for f, v in zip(data.features, theta[i])})
        if params.model_type == "gaussian":
            for i, c in enumerate(fitted.labels):
                out.update({f"var_{c}_{f}": float(v) for f, v in zip(data.features, m.var_[i])})
        return out

    def score(self, params: NaiveBayesParams, fitted: NaiveBayesFit, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        m = row_mask(mask, data.n)
        if not m.any():
            return {"accuracy": float("nan"), "log_loss": float("nan")}
        X, y = data.X[m], np.asarray(data.y)[m]
        proba = fitted.model.predict_proba(X)
        classes = list(fitted.model.classes_)
        known = np.isin(y, classes)
        index = np.array([classes.index(v) if k else 0 for v, k in zip(y, known)])
        p_true = np.where(known, proba[np.arange(y.size), index], 0.0)
        accuracy = float(np.mean(known & (proba.argmax(axis=1) == index)))
        log_loss = float(-np.mean(np.log(np.clip(p_true, 1e-15, 1.0))))
        return {"accuracy": accuracy, "log_loss": log_loss}
