"""The job spec: pydantic models of the YAML, and the checks that need more than a schema.

``load_job`` returns a validated :class:`Job` or raises :class:`SpecError` with one
problem per bad field (path, value, message). Unknown keys are errors everywhere.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from hpcml.errors import SpecError, pydantic_problems
from hpcml.machine import BYTES_PER_TASK, BYTES_PER_WORKER, too_big
from hpcml.models.base import ModelParams, get_model, model_names
from hpcml.plans import PLANS, Plan


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(Strict):
    source: str = Field(description="sklearn:<name>, synthetic:<generator>, idx:<dir>, or a .csv/.parquet/.npy path")
    target: str | None = Field(None, description="target column (supervised models)")
    options: dict[str, Any] = Field(default_factory=dict, description="generator/reader options, e.g. n_samples")
    dropna: bool = Field(False, description="drop rows with NaN in the used columns instead of failing")


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
    uri: str = Field("./mlruns", description="MLflow tracking URI: a directory (a local file store), "
                     "file:, sqlite:, http(s): or databricks")
    experiment: str | None = Field(None, description="experiment name (default: the job's name)")
    child_runs: bool = Field(True, description="a sweep's tasks as nested runs of the job's run")


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
        "hpcml", description="hpcml: independent tasks on the backend; spark: one distributed pyspark.ml fit of the whole data")


class Job:
    """A validated spec with its model kind and typed parameters resolved."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.model = get_model(spec.model.kind)
        self.params: ModelParams = self.model.Params(**(spec.model.model_extra or {}))

    @property
    def plan_kind(self) -> str:
        return self.spec.plan.kind

    @property
    def plan(self) -> Plan:
        """The plan object: everything that depends on the plan is asked of it."""
        return PLANS[self.spec.plan.kind]

    @property
    def n_tasks(self) -> int:
        return self.plan.count(self.spec.plan.options)

    def task_id(self, index: int) -> str:
        return self.plan.task_id(index)

    def params_with(self, overrides: dict[str, Any]) -> ModelParams:
        return self.model.with_params(self.params, overrides)

    def to_json(self) -> str:
        return json.dumps(self.spec.model_dump(mode="json", exclude_none=False), sort_keys=True)

    def normalized(self, spec: dict) -> dict:
        """``spec`` (a spec.json) with its model parameters' defaults filled in, so that two specs
        that differ only in spelling out a default compare equal (a spec this version cannot
        read is returned as it is: it then differs)."""
        try:
            job = Job(JobSpec.model_validate(spec))
        except (ValidationError, SpecError, KeyError, TypeError, ValueError):
            return spec
        return {**spec, "model": {**spec["model"], **job.params.model_dump(mode="json")}}

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls(spec_from_json(text))

    @staticmethod
    def absolute_paths(raw: dict) -> dict:
        """A raw spec's paths made absolute, as ``load_job`` makes them (``absolute_paths``)."""
        return absolute_paths(raw)

    @property
    def output(self) -> Path:
        return Path(self.spec.output or f"runs/{self.spec.name}")


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


def _backend_problems(backend: BackendSpec) -> list[tuple[str, Any, str]]:
    from hpcml.backends import backend_names, get_backend_class

    if backend.name not in backend_names():
        return [("backend.name", backend.name, f"unknown backend; choose one of {', '.join(backend_names())}")]
    options_model = get_backend_class(backend.name).Options
    try:
        options = options_model(**(backend.model_extra or {}))
    except ValidationError as err:
        return pydantic_problems(err, "backend")
    # Worker processes this machine starts (local, a Dask LocalCluster): each holds an
    # interpreter with numpy, pandas and scikit-learn loaded before it holds any data.
    here = backend.name == "local" or (backend.name == "dask" and options.address is None and options.cluster == "local")
    why = too_big(backend.workers * BYTES_PER_WORKER) if here and backend.workers else None
    if why is not None:
        return [("backend.workers", backend.workers, f"{backend.workers:,} worker processes on this machine {why}")]
    return []


def validate_spec(raw: Any) -> Job:
    """Raw mapping -> Job, or SpecError listing every problem found."""
    if not isinstance(raw, dict):
        raise SpecError.one("job", raw, "the spec must be a mapping of fields")
    sync_plans()
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(pydantic_problems(err)) from None
    problems: list[tuple[str, Any, str]] = []
    set_plans = [k for k in PLAN_KINDS if getattr(spec.plan, k) is not None]
    if len(set_plans) != 1:
        problems.append(("plan", raw.get("plan"), f"give exactly one of {', '.join(PLAN_KINDS)}"))
    else:
        problems += _count_problems(spec.plan)
        if problems:  # a grid too large to hold is not walked point by point below
            raise SpecError(problems)
    if spec.model.kind not in model_names():
        problems.append(("model.kind", spec.model.kind, f"unknown model; choose one of {', '.join(model_names())}"))
        raise SpecError(problems)
    try:
        model = get_model(spec.model.kind)
    except ImportError as err:
        raise SpecError.one("model.kind", spec.model.kind, f"needs an optional dependency that is missing: {err}") from None
    try:
        base = model.Params(**(spec.model.model_extra or {}))
    except ValidationError as err:
        problems += pydantic_problems(err, "model")
        base = None
    if base is not None and len(set_plans) == 1:
        problems += PLANS[spec.plan.kind].check_spec(model, base, spec.plan.options)
    if model.needs_target and not spec.data.target:
        problems.append(("data.target", None, f"model {spec.model.kind!r} needs a target column"))
    problems += _backend_problems(spec.backend)
    if problems:
        raise SpecError(problems)
    return with_code_digests(Job(spec))


def with_code_digests(job: Job) -> Job:
    """The job with the SHA-256 of its code files in ``model.code_sha256`` (replacing any given):
    shipped to every worker, which checks them, and kept in spec.json, so a resume with edited
    code is refused like one with edited data."""
    digests = job.model.code_digests(job.params)
    extra = dict(job.spec.model.model_extra or {})
    if not digests and "code_sha256" not in extra:
        return job
    extra["code_sha256"] = digests
    model = job.spec.model.model_copy(update=extra)
    return Job(job.spec.model_copy(update={"model": model}))


def _count_problems(plan: PlanSpecBase) -> list[tuple[str, Any, str]]:
    """A plan whose tasks' results alone would not fit in this machine's memory (counted
    from its options: no task is built)."""
    options, owner = plan.options, PLANS[plan.kind]
    n = owner.count(options)
    why = too_big(n * BYTES_PER_TASK)
    if why is None:
        return []
    sizes = owner.size_options(options)
    if not sizes:
        return [(f"plan.{plan.kind}", n, f"{n:,} tasks: their results alone {why}")]
    name = max(sizes, key=lambda k: sizes[k][0])
    return [(f"plan.{plan.kind}.{name}", sizes[name][1], f"{n:,} tasks: their results alone {why}")]


class _SpecLoader(yaml.SafeLoader):
    """YAML without aliases (``*name``: an alias bomb expands a 1 KB file into billions of
    nodes) and without duplicate keys (the second would silently win)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not supported in a job "
                                              "spec; write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# A job spec is a page of settings; anything this large is a mistake (or an attack).
MAX_SPEC_BYTES = 1 << 20


def read_spec_file(path: str | Path) -> dict:
    path = Path(path)
    if "\x00" in str(path):
        raise SpecError.one("spec", str(path), "a path cannot contain a NUL byte")
    if not path.is_file():
        raise SpecError.one("spec", str(path), "file not found")
    with open(path, "rb") as fh:  # read no more than the cap, even from a file still growing
        text = fh.read(MAX_SPEC_BYTES + 1)
    if len(text) > MAX_SPEC_BYTES:  # YAML parses slowly and into many objects: 50 MB took minutes and a GB
        size = max(path.stat().st_size, len(text))
        raise SpecError.one("spec", str(path), f"{size:,} bytes; a job spec is at most {MAX_SPEC_BYTES:,} bytes "
                            "(put data in data.source, not in the spec)")
    try:
        raw = yaml.load(text.decode("utf-8"), Loader=_SpecLoader)
    except (UnicodeDecodeError, ValueError):
        raise SpecError.one("spec", str(path), "not a text file (a YAML job spec is UTF-8 text)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise SpecError.one("spec", str(path), f"not valid YAML at {where}: {getattr(err, 'problem', err)}") from None
    return raw


COMMON_BACKEND_KEYS = ("name", "workers", "chunk_size")


def _drop_other_backend_options(raw: dict, new_name: str | None) -> None:
    """One spec, every backend: a backend chosen on the command line or in the API drops the
    options the spec gives its own backend, with one note."""
    backend = raw.get("backend")
    if new_name is None or not isinstance(backend, dict) or backend.get("name", "local") == new_name:
        return
    dropped = sorted(k for k in backend if k not in COMMON_BACKEND_KEYS)
    if dropped:
        logging.getLogger("hpcml").warning("note: running on %s; ignoring the spec's %s options: %s", new_name,
                                           backend.get("name", "local"), ", ".join(dropped))
        raw["backend"] = {k: v for k, v in backend.items() if k in COMMON_BACKEND_KEYS}


_CODE_FILE = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_][\w.]*)$")


def _absolute(value: Any) -> Any:
    return os.path.abspath(value) if isinstance(value, str) and value and "\x00" not in value else value


def data_source_path(source: Any) -> Any:
    """``source`` with a relative file, directory or glob made absolute; generated data
    (``none``, ``sklearn:``, ``synthetic:``) and URLs (``hdfs://``) as they are."""
    if not isinstance(source, str) or source == "none":
        return source
    if source.startswith("idx:"):
        return "idx:" + _absolute(source[4:])
    if ":" in source.split("/")[0]:
        return source
    return _absolute(source)


def absolute_paths(raw: dict) -> dict:
    """Every path of a raw spec made absolute, once, where the job is loaded: relative paths
    mean what they mean in the working directory hpcml was started from (the driver's), never
    in a worker's own (a Dask worker started elsewhere, a Spark executor). Changes ``raw``."""
    data, model = raw.get("data"), raw.get("model")
    if isinstance(data, dict) and "source" in data:
        data["source"] = data_source_path(data["source"])
    kind = model.get("kind") if isinstance(model, dict) else None
    if isinstance(kind, str) and kind in model_names():
        try:
            params = get_model(kind).Params
        except ImportError:  # reported by validate_spec
            return raw
        for name in params.path_fields:
            if name in model:
                model[name] = _absolute(model[name])
        for name in params.code_file_fields:  # `path/to/file.py:Class`; a built-in name stays
            match = _CODE_FILE.match(model.get(name) or "") if isinstance(model.get(name), str) else None
            if match:
                model[name] = f"{_absolute(match['file'])}:{match['name']}"
    return raw


def load_job(source: str | Path | dict, **overrides: Any) -> Job:
    """Load and validate a spec from a YAML path or a mapping; ``overrides`` are dotted fields."""
    raw = copy.deepcopy(source) if isinstance(source, dict) else read_spec_file(source)
    if not isinstance(raw, dict):
        raise SpecError.one("job", raw, "the spec must be a mapping of fields")
    _drop_other_backend_options(raw, overrides.get("backend.name"))
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = value
    return validate_spec(absolute_paths(raw))


def json_schema() -> dict:
    sync_plans()
    return JobSpec.model_json_schema()
