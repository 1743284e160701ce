"""The ``als`` kind: matrix factorization of a ratings table by alternating least squares,
fitted by Spark MLlib's ``ALS`` under ``engine: spark`` only (``spark_only``): a job without
it is refused in one line when the spec is loaded.

The data is a ratings table (a user, an item and a rating column, named by ``user_col``,
``item_col``, ``rating_col``); the job's seed seeds ALS and the split of the ratings into
training and held-out ones. Outputs: ``test_rmse`` (held-out ratings whose user or item the
training ratings lack are dropped, Spark's ``coldStartStrategy="drop"``) and ``train_rmse``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model


class ALSParams(ModelParams):
    user_col: str = Field("user", description="column of user ids (integers)")
    item_col: str = Field("item", description="column of item ids (integers)")
    rating_col: str = Field("rating", description="column of ratings")
    rank: int = Field(10, ge=1, description="number of latent factors")
    max_iter: int = Field(10, ge=1, description="alternating least-squares sweeps")
    reg_param: float = Field(0.1, ge=0, description="L2 regularization (Spark's regParam)")
    holdout: float = Field(0.2, gt=0, lt=1, description="plan fit: fraction of ratings held out for test_rmse")


SPARK_ONLY = "als runs only as a Spark MLlib fit: add engine: spark to the spec"


@register_model
class ALSKind(ModelKind):
    name = "als"
    Params = ALSParams
    needs_target = False
    spark_only = True
    primary_metric = "rmse"
    greater_is_better = False

    def fit(self, params: ALSParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> Any:
        raise NotImplementedError(SPARK_ONLY)

    def outputs(self, params: ALSParams, fitted: Any, data: Dataset) -> dict[str, float]:
        raise NotImplementedError(SPARK_ONLY)

    def score(self, params: ALSParams, fitted: Any, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        raise NotImplementedError(SPARK_ONLY)
