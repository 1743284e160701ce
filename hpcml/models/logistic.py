"""The ``logistic`` kind: unpenalised logistic regression (IRLS in ``glm``), bootstrap
replicates fitted 64 at a time (``batched_logistic``), R's ``summary(glm)`` of a whole-data fit."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.numerics.irls import LogisticFit, classification_metrics, fit_logistic, logistic_summary, predict_proba
from hpcml.numerics.least_squares import BOOTSTRAP_GROUP, coef_outputs
from hpcml.numerics.weights import row_mask
from hpcml.numerics.batched_logistic import logistic_coefs_batch
from hpcml.models.full_fit import refit_whole_data


class LogisticParams(ModelParams):
    fit_intercept: bool = True
    max_iter: int = Field(100, ge=1)
    tol: float = Field(1e-10, gt=0)


@register_model
class LogisticKind(ModelKind):
    name = "logistic"
    Params = LogisticParams
    runs_in_driver = True
    needs_target = True
    task_type = "classification"
    primary_metric = "accuracy"
    greater_is_better = True

    def check(self, params: LogisticParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if data.y is None:
            return [("data.target", data.target, "logistic needs a target column")]
        k = np.unique(np.asarray(data.y)).size
        if k != 2:
            return [("data.target", data.target, f"logistic needs 2 classes, found {k}")]
        n_coef = data.X.shape[1] + int(params.fit_intercept)
        if data.n < n_coef:
            return [("data", data.n, f"{data.n} rows cannot determine {n_coef} coefficients")]
        return []

    def fit(self, params: LogisticParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> LogisticFit:
        return fit_logistic(data.X, data.y, weights, params.fit_intercept, params.max_iter, params.tol)

    def outputs(self, params: LogisticParams, fitted: LogisticFit, data: Dataset) -> dict[str, Any]:
        out: dict[str, Any] = coef_outputs(fitted.coef, fitted.fit_intercept, data.features)
        if fitted.warning:  # a string column: the task is ok, the estimate is flagged
            out["warning"] = fitted.warning
        return out

    def batch_size(self, params: LogisticParams) -> int:
        return BOOTSTRAP_GROUP

    def outputs_batch(self, params: LogisticParams, data: Dataset, weights: np.ndarray) -> list[dict[str, Any] | None]:
        coefs = logistic_coefs_batch(data.X, data.y, weights, params.fit_intercept, params.max_iter, params.tol)
        return [None if c is None else coef_outputs(c, params.fit_intercept, data.features) for c in coefs]

    def jackknife(self, params: LogisticParams, data: Dataset, labels: np.ndarray, groups: int) -> list[dict[str, Any]]:
        """Leave-group-out fits for BCa, a group of them at a time by the batched Newton path
        (each is the full data less a few rows: two or three passes); IRLS where it declines."""
        out: list[dict[str, Any]] = []
        for start in range(0, groups, BOOTSTRAP_GROUP):
            stop = min(groups, start + BOOTSTRAP_GROUP)
            keep = np.ones((stop - start, data.n), dtype=np.uint8)  # 1 byte a row per fit
            for i, g in enumerate(range(start, stop)):
                keep[i, labels == g] = 0
            coefs = logistic_coefs_batch(data.X, data.y, keep, params.fit_intercept, params.max_iter, params.tol)
            for w, c in zip(keep, coefs):
                fitted = c if c is not None else \
                    fit_logistic(data.X, data.y, w.astype(np.float64), params.fit_intercept, params.max_iter, params.tol).coef
                out.append(coef_outputs(fitted, params.fit_intercept, data.features))
        return out

    def whole_data_summary(self, params: LogisticParams, fit) -> dict[str, Any]:
        """R's ``summary(glm)`` table."""
        fitted, data = refit_whole_data(self, params, fit)
        return logistic_summary(data.X, data.y, fitted, data.features)

    def summarize_extra(self, job, results, run_dir) -> dict[str, Any]:
        """How many tasks were warned (separation, no convergence)."""
        extra: dict[str, Any] = {}
        if "warning" in results.columns:
            ok = results.loc[results["status"] == "ok"] if "status" in results else results
            counts = ok["warning"].dropna().value_counts()
            if len(counts):
                extra["warnings"] = {str(k): int(v) for k, v in counts.items()}
        return extra

    def score(
        self, params: LogisticParams, fitted: LogisticFit, data: Dataset, mask: np.ndarray | None
    ) -> dict[str, float]:
        m = row_mask(mask, data.n)
        y01 = (np.asarray(data.y)[m] == fitted.classes[1]).astype(np.float64)
        # Every row's probability (a product with X), then the masked ones: no copy of X[m].
        return classification_metrics(y01, predict_proba(fitted, data.X)[m])
