"""What a schema cannot check: one plan, a known model kind and its parameters, the plan's own
checks, the backend's options, counts that would not fit in memory, and the code's digests."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hpcml.backends import backend_names, get_backend_class
from hpcml.errors import SpecError, pydantic_problems
from hpcml.machine import BYTES_PER_TASK, BYTES_PER_WORKER, too_big
from hpcml.models.base import get_model, model_names
from hpcml.plans import PLANS
import hpcml.spec.schema as schema
from hpcml.spec.job import Job
from hpcml.spec.schema import BackendSpec, JobSpec, PlanSpecBase, sync_plans


def _backend_problems(backend: BackendSpec) -> list[tuple[str, Any, str]]:
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
    set_plans = [k for k in schema.PLAN_KINDS if getattr(spec.plan, k) is not None]
    if len(set_plans) != 1:
        problems.append(("plan", raw.get("plan"), f"give exactly one of {', '.join(schema.PLAN_KINDS)}"))
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
    if model.spark_only and spec.engine != "spark":
        raise SpecError.one("model.kind", spec.model.kind, f"{spec.model.kind} runs only as a Spark MLlib fit: "
                            "add engine: spark to the spec")
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
