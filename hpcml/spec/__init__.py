"""The job spec: pydantic models of the YAML (``schema``), the checks that need more than a
schema (``checks``), paths made absolute where the job is loaded (``paths``), reading a spec
file (``loading``) and the validated :class:`Job`.

``load_job`` returns a validated :class:`Job` or raises :class:`SpecError` with one problem
per bad field (path, value, message). Unknown keys are errors everywhere.
"""
from __future__ import annotations

from hpcml.errors import pydantic_problems
from hpcml.spec.checks import validate_spec, with_code_digests
from hpcml.spec.job import Job
from hpcml.spec.loading import MAX_SPEC_BYTES, load_job, read_spec_file
from hpcml.spec.paths import absolute_paths, data_source_path
from hpcml.spec.schema import (PLAN_KINDS, BackendSpec, DataSpec, JobSpec, MlflowSpec, ModelSpec, PlanSpec,
                               TrackingSpec, json_schema, spec_from_json, sync_plans)

__all__ = ["MAX_SPEC_BYTES", "PLAN_KINDS", "BackendSpec", "DataSpec", "Job", "JobSpec", "MlflowSpec", "ModelSpec",
           "PlanSpec", "TrackingSpec", "absolute_paths", "data_source_path", "json_schema", "load_job",
           "pydantic_problems", "read_spec_file", "spec_from_json", "sync_plans", "validate_spec", "with_code_digests"]
