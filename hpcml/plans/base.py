"""What a plan is: the tasks of a job, what they share, a task's view of the data, checks,
summary and plots, and everything else that depends on the plan (the columns its records
hold, how it reads the data, which report it asks the model kind for). One class per plan,
one file each, registered with :func:`register_plan`; no module outside ``hpcml.plans``
decides anything by a plan's name.

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

from hpcml.models.base import TaskLayout
from hpcml.rundir.columns import reserve_plan_columns


@dataclass(slots=True)  # not frozen: a frozen dataclass takes twice as long to build, once per task
class Task:
    index: int
    id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DrawnSplit:
    """One task of a plan that fits on some rows and scores the others, for an engine that
    draws a uniform number ``u`` per row under seed ``job seed + draw`` (Spark's ``rand``):
    the rows with ``low <= u < high`` are held out and scored (``test_<metric>``; also
    ``train_<metric>`` of the training rows where ``score_train``); the model is fitted on the
    others with parameters ``overrides`` applied and seed ``job seed + fit_seed``. ``record``:
    the plan's own columns of the task's record."""

    draw: int
    low: float
    high: float
    record: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    fit_seed: int = 0
    score_train: bool = False


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
    # The columns a task's record holds beside the model's outputs (cv's repeat and fold, a
    # shard's rows): never summarized as outputs, and an R function's output of such a name is
    # renamed. ``param_<name>`` columns (a sweep's grid point) need no listing.
    records: ClassVar[tuple[str, ...]] = ()
    # The scalar parameters ``params_at`` gives each task (a command names them: ``{fold}``).
    parameters: ClassVar[tuple[str, ...]] = ()
    # One fit of the model on all the data: an engine that distributes one fit (spark, DDP)
    # runs only such a plan, and the plan asks the kind for its report on that fit.
    single_fit: ClassVar[bool] = False
    # Each task reads only its own rows: on a file, workers get lazy rows (each reads its
    # part) and the driver does not keep the whole data during the run.
    reads_rows_lazily: ClassVar[bool] = False
    # A pass of a fit over row blocks: the data is only a reader (``data/row_blocks.py``);
    # each task reads its own block.
    reads_blocks: ClassVar[bool] = False
    # The model kinds this plan runs as passes over row blocks on data larger than a node
    # (``data.blocks_above_mb``; ``drivers/row_blocks.py`` asks ``over_row_blocks``); none:
    # the plan always runs as tasks.
    row_block_kinds: ClassVar[tuple[str, ...]] = ()
    # The tasks fit the model under different parameter settings (``param_<name>`` columns) to
    # compare them: an experiment tracker logs each task as a run of its own.
    compares_settings: ClassVar[bool] = False
    # The option that says how many tasks when each task is one more run of the same work on
    # the whole data, told apart only by its index and generator (replicate's ``n``); None
    # otherwise. A kind whose parameters list its tasks (a file of command lines) needs one.
    repeat_count_option: ClassVar[str | None] = None
    # Each task fits on some rows and scores the others, and an engine that draws its own
    # rows (``engine: spark``) can cut them: the plan says how in ``drawn_split``.
    splits_by_draw: ClassVar[bool] = False

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

    def run_group(self, job, data, tasks: list[Task], ctxs, shared: dict[str, Any],
                  wanted: set[int]) -> dict[int, dict[str, Any]]:
        """Records of the ``wanted`` tasks of one whole group (``tasks``, each with its ctx:
        ``ctxs`` is a sequence that builds each when first read, and ``ctxs.rngs(ks)`` gives
        the generators of tasks ``ks`` (positions) without their contexts). A wanted task left
        out of the result runs on its own (``run_task``) afterwards."""
        raise NotImplementedError

    def shared(self, job, n: int) -> dict[str, Any]:
        """What every task of the job shares (drawn once per process, never per task)."""
        return {}

    def check_spec(self, model, params, options: PlanOptions) -> list[tuple[str, Any, str]]:
        """Problems of the plan's options with the model kind and its parameters, found from the
        spec alone (no data read): (field, value, message)."""
        return []

    def size_options(self, options: PlanOptions) -> dict[str, tuple[int, Any]]:
        """The options a job of too many tasks is blamed on: name -> (how many tasks it
        multiplies in, the value the error shows); the largest is named."""
        return {k: (v, v) for k, v in options if isinstance(v, int) and not isinstance(v, bool)}

    def task_layout(self, options: PlanOptions) -> TaskLayout:
        """What a model kind may know of the tasks (``ModelKind.check_tasks``)."""
        field = self.repeat_count_option
        return TaskLayout(self.name, self.count(options), f"plan.{self.name}.{field}" if field else None)

    def check_model(self, job, data) -> list[tuple[str, Any, str]]:
        """Problems of the model kind's parameters on the data, before any task runs: the
        job's parameters (a plan whose tasks change them checks each setting in ``check``)."""
        return job.model.check(job.params, data)

    def check(self, job, data) -> list[tuple[str, Any, str]]:
        """Problems of (plan, data) found before any task runs: (field, value, message)."""
        return []

    @abstractmethod
    def run_task(self, job, data, task: Task, ctx, shared: dict[str, Any]) -> dict[str, Any]:
        """One task's record of outputs (raises on failure; the worker records it)."""

    @abstractmethod
    def summarize(self, job, results, run_dir: Path, data: Callable[[], Any]) -> dict[str, Any]:
        """The plan's summary of the ok records: JSON-ready, with a ``table`` the CLI prints.
        ``data()`` loads the job's data, for summaries that refit (BCa's jackknife); ``data``
        is None where the data must not be read into this process (too large for it)."""

    def plots(self, job, ok, summary: dict[str, Any], plot_dir: Path) -> None:
        """PNG figures of the ok records (none by default); the model kind's own ``plots``
        are drawn beside them."""

    def over_row_blocks(self, job, blocks) -> dict[str, Any]:
        """The job run as passes over row blocks (a kind of ``row_block_kinds``): ``blocks``
        (``drivers/row_blocks.RowBlocksRun``) runs passes (``blocks.run_pass``), keeps records
        (``blocks.write``) and knows the data's features and rows. Returns the summary body."""
        raise NotImplementedError

    def drawn_split(self, job, index: int) -> "DrawnSplit":
        """Task ``index`` as an engine that draws a uniform number per row sees it (only
        where ``splits_by_draw``)."""
        raise NotImplementedError

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


# The registered plans by name, in the order the job spec lists them.
PLANS: dict[str, Plan] = {}


def register_plan(cls: type[Plan]) -> type[Plan]:
    """Make a plan known to the job spec (``plan: {<name>: {...}}``), the workers and the
    summaries. Built-in plans register themselves; a plan of your own registers with
    ``hpcml.register_plan`` in a module its workers import too (or with forked workers)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or name in ("kind", "options") \
            or name.startswith(("_", "model_")):
        raise ValueError(f"a plan's name must be a plain identifier, not {name!r}")
    if not (isinstance(getattr(cls, "Options", None), type) and issubclass(cls.Options, PlanOptions)):
        raise TypeError(f"plan {name!r}: Options must subclass hpcml.plans.base.PlanOptions")
    PLANS[name] = cls()
    reserve_plan_columns(tuple(cls.records), tuple(cls.parameters))
    return cls


def block_share(n: int, part: int, parts: int) -> range:
    """Part ``part`` of ``parts`` contiguous blocks of range(n) (sizes differ by at most one)."""
    base, extra = divmod(n, parts)
    start = part * base + min(part, extra)
    return range(start, start + base + (1 if part < extra else 0))
