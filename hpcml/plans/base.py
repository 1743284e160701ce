"""What a plan is: the tasks of a job, what they share, a task's view of the data, checks,
summary and plots. One class per plan, one file each; ``hpcml.plans`` holds the registry.

A task's result depends only on (spec, task index): its generator is
``SeedSequence(job.seed, spawn_key=(index,))`` and everything it shares with other tasks
(CV folds, the sweep holdout) is drawn from the job seed under a spawn key of its own.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


@dataclass(slots=True)  # not frozen: a frozen dataclass takes twice as long to build, once per task
class Task:
    index: int
    id: str
    params: dict[str, Any] = field(default_factory=dict)


def task_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def shared_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for draws every task shares; keys of length >= 2 never collide with tasks'."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class PlanOptions(BaseModel):
    """Base of each plan's options in the spec (``plan: {<name>: {...}}``): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Plan(ABC):
    """One way of turning a model and a data set into independent tasks."""

    name: ClassVar[str]
    Options: ClassVar[type[PlanOptions]]

    @abstractmethod
    def count(self, options: PlanOptions) -> int:
        """How many tasks (without building them)."""

    @abstractmethod
    def params_at(self, options: PlanOptions, index: int) -> dict[str, Any]:
        """The plan's parameters of one task: a worker builds only the tasks it runs."""

    def task_params(self, options: PlanOptions) -> list[dict[str, Any]]:
        """The plan's parameters of each task, in task-index order."""
        return [self.params_at(options, i) for i in range(self.count(options))]

    def group_size(self, job) -> int:
        """Tasks run together by ``run_group``, in groups fixed by task index (1: one by one)."""
        return 1

    def run_group(self, job, data, tasks: list[Task], ctxs: list, shared: dict[str, Any],
                  wanted: set[int]) -> dict[int, dict[str, Any]]:
        """Records of the ``wanted`` tasks of one whole group (``tasks``, each with its ctx). A
        wanted task left out of the result runs on its own (``run_task``) afterwards."""
        raise NotImplementedError

    def shared(self, job, n: int) -> dict[str, Any]:
        """What every task of the job shares (drawn once per process, never per task)."""
        return {}

    def check(self, job, data) -> list[tuple[str, Any, str]]:
        """Problems of (plan, data) found before any task runs: (field, value, message)."""
        return []

    @abstractmethod
    def run_task(self, job, data, task: Task, ctx, shared: dict[str, Any]) -> dict[str, Any]:
        """One task's record of outputs (raises on failure; the worker records it)."""

    @abstractmethod
    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        """The plan's summary of the ok records: JSON-ready, with a ``table`` the CLI prints.
        ``data()`` loads the job's data, for summaries that refit (BCa's jackknife)."""

    def plots(self, job, ok, summary: dict[str, Any], plot_dir: Path) -> None:
        """PNG figures of the ok records (none by default)."""

    def task_id(self, index: int) -> str:
        return f"{self.name}/{index:06d}"

    def task(self, job, index: int) -> Task:
        """One task, built on its own: a worker never builds the job's every task."""
        return Task(index, self.task_id(index), self.params_at(job.spec.plan.options, index))

    def tasks(self, job) -> list[Task]:
        return [Task(i, self.task_id(i), p) for i, p in enumerate(self.task_params(job.spec.plan.options))]


def fit_and_record(job, data, weights, ctx, params=None) -> tuple[Any, dict[str, Any]]:
    """Fit the job's model and return (fitted, its outputs): the step every plan shares."""
    params = job.params if params is None else params
    fitted = job.model.fit(params, data, weights, ctx)
    return fitted, job.model.outputs(params, fitted, data)
