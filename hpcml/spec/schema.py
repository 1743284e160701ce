"""The job spec's pydantic models: the YAML's shape, unknown keys errors everywhere; the
``plan`` section has a field per registered plan, rebuilt when a plan is added."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from hpcml.plans import PLANS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(Strict):
    source: str = Field(description="sklearn:<name>, synthetic:<generator>, idx:<dir>, or a .csv/.parquet/.npy path")
    target: str | None = Field(None, description="target column (supervised models)")
    options: dict[str, Any] = Field(default_factory=dict, description="generator/reader options, e.g. n_samples")
    dropna: bool = Field(False, description="drop rows with NaN in the used columns instead of failing")
    blocks_above_mb: float = Field(256.0, ge=0, description="a fit (ols, logistic, pca, kmeans) or bootstrap (ols, "
                                   "logistic) of a .parquet (file or set), .csv or .npy source larger than this runs "
                                   "over row blocks: no process holds all rows (docs/larger-than-memory.md)")
    block_rows: int | None = Field(None, gt=0, description="rows per block of such a fit (rounded down to 1024 "
                                   "times a power of two); default: about 64 MB of rows, at least two blocks a worker")


class ModelSpec(BaseModel):
    """``kind`` and ``features``; every other key is a parameter of that kind."""

    model_config = ConfigDict(extra="allow")
    kind: str
    features: list[str] | None = Field(None, min_length=1, description="columns used as features (default: all but target)")


class PlanSpecBase(Strict):
    """Exactly one plan: ``plan: {<name>: {options}}``; a field per registered plan
    (``hpcml.plans.PLANS``), whose ``Options`` validate what it is given."""

    @model_validator(mode="before")
    @classmethod
    def _bare_plan(cls, value: Any) -> Any:
        # `fit:` with nothing after it parses as None in YAML; for a plan without options it
        # still means that plan. Only when no other plan is given: a dumped spec carries
        # `fit: null` beside its real plan.
        if isinstance(value, dict) and all(v is None for v in value.values()):
            bare = [k for k in value if k in PLANS and not PLANS[k].Options.model_fields]
            if len(bare) == 1:
                value = {**value, bare[0]: {}}
        return value

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def options(self) -> BaseModel:
        return getattr(self, self.kind)


def _plan_spec() -> type[PlanSpecBase]:
    return create_model("PlanSpec", __base__=PlanSpecBase,
                        **{name: (plan.Options | None, None) for name, plan in PLANS.items()})


PLAN_KINDS = tuple(PLANS)
PlanSpec = _plan_spec()


class BackendSpec(BaseModel):
    """``name``, ``workers``, ``chunk_size``; other keys are options of that backend."""

    model_config = ConfigDict(extra="allow")
    name: str = "local"
    workers: int | None = Field(None, gt=0, description="worker processes (default: the machine's cores)")
    chunk_size: int | None = Field(None, gt=0, description="tasks per chunk (default: automatic)")


class MlflowSpec(Strict):
    uri: str = Field("./mlruns", description="MLflow tracking URI: a directory (hpcml keeps a SQLite store, "
                     "mlflow.db, and the artifacts there), sqlite:, http(s): or databricks")
    experiment: str | None = Field(None, description="experiment name (default: the job's name)")
    child_runs: bool = Field(True, description="a sweep's tasks as nested runs of the job's run")

    @field_validator("uri")
    @classmethod
    def _no_file_store(cls, uri: str) -> str:
        # Found before the run, not as a warning after it: MLflow 3 writes no new data to its
        # plain-file store.
        if uri.startswith("file:"):
            raise ValueError("MLflow 3 refuses a file: tracking URI for new runs; give the directory itself "
                             "(hpcml keeps a SQLite store there), sqlite:///path/mlflow.db, or http(s)://server")
        return uri


class TrackingSpec(Strict):
    mlflow: MlflowSpec | None = Field(None, description="log the run to MLflow (the `tracking` extra)")

    @model_validator(mode="before")
    @classmethod
    def _empty_mlflow(cls, value: Any) -> Any:
        # `mlflow:` with nothing after it parses as None in YAML; it means "the defaults".
        if isinstance(value, dict) and "mlflow" in value and value["mlflow"] is None:
            value = {**value, "mlflow": {}}
        return value


class JobSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = Field(0, ge=0, description="root seed; task i uses SeedSequence(seed, spawn_key=(i,))")
    data: DataSpec
    model: ModelSpec
    plan: PlanSpec
    backend: BackendSpec = Field(default_factory=BackendSpec)
    output: str | None = Field(None, description="run directory (default runs/<name>)")
    retries: int = Field(0, ge=0, description="extra attempts for a failed task")
    timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="per-task time limit in seconds")
    threads_per_task: int = Field(1, gt=0, description="BLAS/OpenMP/torch threads per task, same on every backend")
    tracking: TrackingSpec | None = Field(None, description="experiment tracking of the finished run (MLflow)")
    engine: Literal["hpcml", "spark"] = Field(
        "hpcml", description="hpcml: independent tasks on the backend; spark: distributed pyspark.ml fits (plan fit, cv or sweep)")


def sync_plans() -> None:
    """The spec's ``plan`` section with a field for every registered plan: rebuilt here, before
    a spec is read, once ``register_plan`` has added a plan since it was last built."""
    global PLAN_KINDS, PlanSpec
    if PLAN_KINDS == tuple(PLANS):
        return
    PLAN_KINDS, PlanSpec = tuple(PLANS), _plan_spec()
    JobSpec.model_fields["plan"].annotation = PlanSpec
    JobSpec.model_rebuild(force=True)


def spec_from_json(text: str) -> JobSpec:
    """A spec as ``Job.to_json`` wrote it (workers, a run directory's spec.json)."""
    sync_plans()
    return JobSpec.model_validate_json(text)


def json_schema() -> dict:
    sync_plans()
    return JobSpec.model_json_schema()
