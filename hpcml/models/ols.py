"""The ``ols`` model kind: weighted least squares (``numerics.least_squares``) with R's
coefficient names, bootstrap groups fitted 64 at a time and BCa's leave-group-out fits."""
from __future__ import annotations

from typing import Any

import numpy as np

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.numerics.least_squares import (BOOTSTRAP_GROUP, OLSFit, coef_outputs, fit_ols, leave_group_out_coefs,
                                          ols_summary, predict, regression_metrics)
from hpcml.numerics.weights import row_mask
from hpcml.models.full_fit import refit_whole_data
from hpcml.numerics.batched_ols import ols_coefs_batch


class OLSParams(ModelParams):
    fit_intercept: bool = True


@register_model
class OLSKind(ModelKind):
    name = "ols"
    Params = OLSParams
    runs_in_driver = True
    needs_target = True
    task_type = "regression"
    primary_metric = "r2"
    greater_is_better = True

    def check(self, params: OLSParams, data: Dataset) -> list[tuple[str, Any, str]]:
        problems: list[tuple[str, Any, str]] = []
        if data.y is None:
            return [("data.target", data.target, "ols needs a target column")]
        labels = data.classes is not None and not all(isinstance(c, (bool, np.bool_)) for c in data.classes)
        if labels or not np.issubdtype(np.asarray(data.y).dtype, np.number):
            # A text target is encoded as class codes for classifiers: not a quantity (a bool one,
            # as R's lm takes it, is 0/1).
            problems.append(("data.target", data.target, "ols needs a numeric target (this column holds labels)"))
        n_coef = data.X.shape[1] + int(params.fit_intercept)
        if data.n < n_coef:
            problems.append(("data", data.n, f"{data.n} rows cannot determine {n_coef} coefficients"))
        return problems

    def fit(self, params: OLSParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> OLSFit:
        return fit_ols(data.X, data.y, weights, params.fit_intercept)

    def outputs(self, params: OLSParams, fitted: OLSFit, data: Dataset) -> dict[str, float]:
        return coef_outputs(fitted.coef, fitted.fit_intercept, data.features)

    def whole_data_summary(self, params: OLSParams, fit) -> dict[str, Any]:
        """R's ``summary(lm)`` table (see :func:`ols_summary`)."""
        fitted, data = refit_whole_data(self, params, fit)
        return ols_summary(data.X, data.y, fitted, data.features)

    def batch_size(self, params: OLSParams) -> int:
        return BOOTSTRAP_GROUP if params.fit_intercept else 1

    def outputs_batch(self, params: OLSParams, data: Dataset, weights: np.ndarray) -> list[dict[str, float] | None]:
        return [None if c is None else coef_outputs(c, True, data.features)
                for c in ols_coefs_batch(data.X, data.y, weights)]

    def jackknife(self, params: OLSParams, data: Dataset, labels: np.ndarray, groups: int) -> list[dict[str, float]]:
        coefs = leave_group_out_coefs(data.X, data.y, labels, groups, params.fit_intercept)
        return [coef_outputs(c, params.fit_intercept, data.features) for c in coefs]

    def score(self, params: OLSParams, fitted: OLSFit, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        m = row_mask(mask, data.n)
        y = np.asarray(data.y, dtype=np.float64)[m]
        return regression_metrics(y, predict(fitted, data.X[m]))
