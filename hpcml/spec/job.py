"""A validated spec with its model kind, typed parameters and plan resolved."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpcml.errors import SpecError
from hpcml.models.base import ModelParams, get_model
from hpcml.plans import PLANS, Plan
from hpcml.spec.paths import absolute_paths
from hpcml.spec.schema import JobSpec, spec_from_json


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
