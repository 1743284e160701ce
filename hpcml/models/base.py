"""The contract every model kind fulfils, and the registry the job spec validates against.

A model kind is plain numerical code: it imports no backend and knows nothing of plans.
Plans call ``fit`` with observation weights and a seeded ``numpy.random.Generator``, then
``outputs`` and ``score`` to turn the fit into a flat record of scalars (one Parquet column
each). A plan also decides which of a kind's reports it asks for: the report on one fit of the
whole data (``whole_data_summary``, ``save_whole_data_files``, ``whole_data_plots``) or on fits
under a grid of parameter settings (``grid_summary``, ``grid_plots``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hpcml.files import current_digest, file_digest


class ModelParams(BaseModel):
    """Base for each kind's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    code_sha256: dict[str, str] = Field(
        default_factory=dict, description="set by hpcml when a job is loaded (a value given in the spec is replaced): "
        "the SHA-256 of each code file the model runs, part of the run's identity like its data")
    # Fields holding a path, and fields that may name `path/to/file.py:Name`: made absolute
    # where the job is loaded (``hpcml.spec.absolute_paths``), so workers anywhere read the same file.
    path_fields: ClassVar[tuple[str, ...]] = ()
    code_file_fields: ClassVar[tuple[str, ...]] = ()


class CodeChanged(RuntimeError):
    """A code file of the job was edited after the job was loaded."""


@dataclass
class Dataset:
    """A design matrix in memory, loaded once per worker process.

    ``X`` is float64 (n, p) C-contiguous; ``y`` is None for unsupervised kinds.
    ``image_shape`` is set for image data (rows of X are flattened images).
    ``test`` is a separate held-out set when the source ships one (e.g. IDX test files).
    """

    X: np.ndarray
    y: np.ndarray | None
    features: list[str]
    target: str | None = None
    image_shape: tuple[int, ...] | None = None
    classes: list[Any] | None = None
    test: "Dataset | None" = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.X.shape[0]


class FitContext:
    """What a fit may use besides the data: its seeded generator, threads, a scratch dir.

    ``rng`` and ``scratch`` may be given as zero-argument factories (``rng_factory``,
    ``scratch_factory``) and are then built on first use: seeding a generator costs about
    as much as the rest of a task's bookkeeping, and many tasks never draw a number.
    """

    # One is built per task: slots make that, and reading its fields, cheaper.
    __slots__ = ("_rng", "_rng_factory", "_scratch", "_scratch_factory", "threads", "log", "task_id", "task_index",
                 "task_params", "seed", "split_seed")

    def __init__(self, rng: np.random.Generator | None = None, threads: int = 1, scratch: Any = None,
                 log: Any = None, task_id: str | None = None, task_index: int | None = None,
                 task_params: dict[str, Any] | None = None, seed: int | None = None, *,
                 rng_factory: Callable[[], np.random.Generator] | None = None,
                 scratch_factory: Callable[[], Any] | None = None):
        if rng is None and rng_factory is None:
            raise TypeError("FitContext needs rng or rng_factory")
        self._rng, self._rng_factory = rng, rng_factory
        self._scratch, self._scratch_factory = scratch, scratch_factory
        self.threads = threads
        self.log = log  # logging.Logger
        self.task_id = task_id  # e.g. "bootstrap/000731"
        self.task_index = task_index
        self.task_params = task_params if task_params is not None else {}  # the plan's params of this task
        self.seed = seed  # the job's root seed
        # Set by a plan whose tasks must validate on the same rows (a sweep, so that its
        # configurations are compared on one validation split): the seed of that split.
        self.split_seed: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = self._rng_factory()
        return self._rng

    @property
    def scratch(self) -> Any:
        """pathlib.Path of the task's artifact directory (not created), or None."""
        if self._scratch is None and self._scratch_factory is not None:
            self._scratch = self._scratch_factory()
        return self._scratch


@dataclass(frozen=True)
class TaskLayout:
    """What a model kind may know of a job's tasks (the plan itself is none of its business):
    how many, and, when every task is one more run of the same work on the whole data told
    apart only by its index and generator, the spec field that says how many (else None)."""

    plan: str  # the plan's name, for messages
    count: int
    repeats_field: str | None = None


@dataclass
class WholeDataFit:
    """One fit of the model on the whole data, as the kind's report on it sees it: the task's
    record, its files (``save_whole_data_files``: ``files`` relative to ``run_dir``; ``run_dir``
    None when nothing was written) and, for a summary, the data, loaded on first use."""

    record: Any  # the task's ok record (a pandas Series)
    run_dir: Path | None
    files: str
    load: Callable[[], Dataset] | None = None  # None: plots draw from the record and files only
    threads: int = 1
    _data: Dataset | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path | None:
        return None if self.run_dir is None else Path(self.run_dir, self.files)

    def data(self) -> Dataset:
        if self._data is None:
            if self.load is None:
                raise RuntimeError("the data is not at hand here: draw from the record and the saved files")
            self._data = self.load()
        return self._data


class ModelKind(ABC):
    """One model family. Subclasses set ``name`` and ``Params`` and register themselves."""

    name: ClassVar[str]
    Params: ClassVar[type[ModelParams]]
    needs_target: ClassVar[bool] = True
    # "regression" or "classification" for supervised kinds; decides the default metric.
    task_type: ClassVar[str] = "regression"
    # Parameters that name files of code the model runs (a Python file, an R script, a file of
    # command lines): their content is recorded when the job is loaded and checked by every
    # worker, so edited code never mixes with the old in one run.
    code_fields: ClassVar[tuple[str, ...]] = ()

    def code_digests(self, params: ModelParams) -> dict[str, str]:
        """SHA-256 of each code file ``params`` names (files that are missing are checked later)."""
        paths = {f: getattr(params, f, None) for f in self.code_fields}
        return {f: file_digest(p) for f, p in paths.items() if isinstance(p, str) and Path(p).is_file()}

    def check_code(self, params: ModelParams) -> None:
        """A ``CodeChanged`` error if a code file's content is not what the job was loaded with."""
        for field, digest in params.code_sha256.items():
            path = getattr(params, field, None)
            if isinstance(path, str) and Path(path).is_file() and current_digest(path) != digest:
                raise CodeChanged(f"model.{field}: {path} changed since the job was loaded (its SHA-256 differs); "
                                  "a run's tasks all run the same code: start a new run (another --out)")

    def check(self, params: ModelParams, data: Dataset) -> list[tuple[str, Any, str]]:
        """Problems of (params, data) found before any task runs: (field, value, message)."""
        return []

    @abstractmethod
    def fit(self, params: ModelParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> Any:
        """Fit on ``data`` with observation ``weights`` (None = all ones; 0 = left out)."""

    @abstractmethod
    def outputs(self, params: ModelParams, fitted: Any, data: Dataset) -> dict[str, float]:
        """The fit as a flat dict of scalars (coefficients, inertia, variance ratios...)."""

    @abstractmethod
    def score(self, params: ModelParams, fitted: Any, data: Dataset, mask: np.ndarray | None) -> dict[str, float]:
        """Metrics of the fit on the rows selected by boolean ``mask`` (None = all rows)."""

    def jackknife(self, params: ModelParams, data: Dataset, labels: np.ndarray, groups: int) -> list[dict[str, float]] | None:
        """``outputs`` of the fits leaving out each group of rows (``labels == g``), for BCa.

        None: the summary refits group by group with ``fit``. A kind overrides this where
        downdating one fit of the whole data is much cheaper than ``groups`` refits.
        """
        return None

    def batch_size(self, params: ModelParams) -> int:
        """How many bootstrap replicates ``outputs_batch`` fits at once (1: no batched path)."""
        return 1

    def outputs_batch(self, params: ModelParams, data: Dataset, weights: np.ndarray) -> list[dict[str, float] | None]:
        """``outputs`` of the fits for each row of ``weights`` (G x n) at once; None for a row
        the ordinary ``fit`` must handle. Only called when ``batch_size`` > 1."""
        raise NotImplementedError

    def resamples_as_rows(self, params: ModelParams, n: int) -> int:
        """How many replicates' resamples ``outputs_rows`` takes at once, for data of ``n``
        rows, in place of ``outputs_batch``'s counts (0: it does not)."""
        return 0

    def outputs_rows(self, params: ModelParams, data: Dataset, resamples) -> list[dict[str, float] | None]:
        """``outputs`` of the fits of each of G replicates' ``resamples``
        (``plans.bootstrap.GroupResamples``: ``rows()``, the (G, n) row indices each replicate
        drew, in increasing order; ``values(column)``, a column at them); None for a replicate
        the ordinary ``fit`` must handle."""
        raise NotImplementedError

    def replicate_group(self, params: ModelParams) -> int:
        """How many runs of a ``replicate`` plan ``fit_replicates`` makes at once (1: one by one)."""
        return 1

    def fit_replicates(self, params: ModelParams, data: Dataset, ctxs: list) -> list[Any | None]:
        """The fitted results of several runs at once (``ctxs``: each run's context, in order);
        None for a run that must be fitted on its own (``fit`` then says why it fails). Only
        called when ``replicate_group`` > 1; each result must be what ``fit`` would return."""
        raise NotImplementedError

    def summarize_extra(self, job, ok, run_dir) -> dict[str, Any]:
        """What this kind adds to any plan's summary, from the ok records (and the run's
        artifacts in ``run_dir``): PCA's variance thresholds, bayesm's R-hat, logistic's
        warnings. Keys replace the plan's (a ``table`` replaces the plan's table). A kind's
        ``fit`` may save files under ``ctx.scratch`` (``hpcml.models.artifacts``)."""
        return {}

    def plots(self, job, ok, summary: dict[str, Any], plot_dir) -> None:
        """PNG figures of this kind's own (a scree plot), beside the plan's, for any plan."""

    def save_whole_data_files(self, params: ModelParams, fitted: Any, data: Dataset, folder: Path) -> None:
        """Files of one fit of the whole data, saved in its task's ``folder`` beside its record
        (PCA scores and loadings, each row's k-means cluster). Never asked of fits of resamples
        or parts: a bootstrap of 10,000 replicates must not write 10,000 copies of the scores."""

    def whole_data_summary(self, params: ModelParams, fit: WholeDataFit) -> dict[str, Any]:
        """What this kind adds to the summary of one fit of the whole data (R's ``summary(lm)``
        table, PCA's loadings, k-means' cluster sizes); keys replace the plan's."""
        return {}

    def whole_data_plots(self, params: ModelParams, fit: WholeDataFit, plot_dir: Path) -> None:
        """PNG figures of one fit of the whole data (PCA's biplot)."""

    def grid_summary(self, params: ModelParams, ok) -> dict[str, Any]:
        """What this kind adds to the summary of fits of the same rows under a grid of
        parameter settings (``param_<name>`` columns): a CNN's leaderboard chosen on its
        validation split. Keys replace the plan's."""
        return {}

    def grid_plots(self, params: ModelParams, ok, summary: dict[str, Any], plot_dir: Path) -> None:
        """PNG figures of fits under a grid of parameter settings (the k-means elbow)."""

    def check_tasks(self, params: ModelParams, tasks: TaskLayout) -> list[tuple[str, Any, str]]:
        """Problems of (params, the job's tasks) found before any task runs: a kind whose
        parameters list the tasks (a file of command lines) needs one task per entry."""
        return []

    def with_params(self, base: ModelParams, overrides: dict[str, Any]) -> ModelParams:
        """``base`` with a sweep's grid point applied."""
        return self.Params(**{**base.model_dump(), **overrides})

    def sweep_metric(self, params: ModelParams) -> tuple[str, bool]:
        """The output column a sweep ranks by, and whether larger is better. A kind with a
        validation split of its own (``cnn``) ranks by it, so the test rows choose nothing."""
        return f"test_{self.primary_metric}", self.greater_is_better

    def one_task_in_driver(self, params: Any) -> bool:
        """Whether a job of one task (a fit) may run in the driver although the kind's tasks
        run in workers otherwise (cnn with a built-in network): the driver has already imported
        the kind's libraries and loaded the data for its checks, which a worker would do again.
        The driver never runs such a kind's tasks beside workers; several tasks use workers."""
        return False

    def warm(self, params: Any) -> None:
        """Load, once per process, what every task of the kind needs (user code): workers call
        it before a task's ``timeout_s`` is armed, so the import is not charged to one task."""

    # Whether a sweep's grid may name keys that are not fields of Params (with_params places them).
    open_grid: ClassVar[bool] = False
    # Whether a task forks processes when threads_per_task > 1 (the r kind's doParallel): a fork
    # of a process that runs other threads can hang, so MPI's dynamic mode refuses such jobs.
    forks_in_task: ClassVar[bool] = False
    # Whether a job of one chunk may run in the driver process instead of a worker (the local
    # backend's `in_driver`): built-in code that cannot take the process down, as user code,
    # R, torch or a subprocess could. Third-party kinds run in workers.
    runs_in_driver: ClassVar[bool] = False
    # Whether the kind is fitted only by Spark MLlib (``engine: spark``; als): a job of another
    # engine is refused when the spec is loaded.
    spark_only: ClassVar[bool] = False
    # Whether refitting on the driver is cheap enough for BCa's jackknife (not for CNNs).
    cheap_refit: ClassVar[bool] = True
    # The metric a sweep ranks by, and whether larger is better.
    primary_metric: ClassVar[str] = "r2"
    greater_is_better: ClassVar[bool] = True


class FunctionParams(ModelParams):
    """What every kind that calls the user's own function (python, r) takes besides it."""

    args: dict[str, Any] = Field(default_factory=dict, description="extra named arguments for the function; "
                                                                    "a sweep's grid sets them")
    metric: str = Field("value", description="the output a sweep ranks by")
    greater_is_better: bool = Field(True, description="whether a larger `metric` is better")


def with_function_args(base: FunctionParams, overrides: dict[str, Any]) -> ModelParams:
    """A sweep's grid point for kinds that call the user's function (python, r): the grid names
    the function's arguments one by one (``a: [1, 3]``) or as whole mappings (``args: [{a: 1},
    {a: 3}]``); either way they are merged into ``args``. Other keys are the kind's own fields."""
    cls = type(base)
    fields = {k: v for k, v in overrides.items() if k in cls.model_fields and k != "args"}
    args = {**base.args, **dict(overrides.get("args") or {}),
            **{k: v for k, v in overrides.items() if k not in cls.model_fields}}
    return cls(**{**base.model_dump(), **fields, "args": args})


MODEL_KINDS: dict[str, ModelKind] = {}


def register_model(cls: type[ModelKind]) -> type[ModelKind]:
    MODEL_KINDS[cls.name] = cls()
    return cls


# Where each built-in kind lives. Kinds are imported on first use, so validating an OLS job
# never imports torch or starts R; third-party kinds register themselves with register_model.
BUILTIN_KINDS = {
    "ols": "hpcml.models.ols",
    "logistic": "hpcml.models.logistic",
    "kmeans": "hpcml.models.kmeans",
    "pca": "hpcml.models.pca_svd",
    "svd": "hpcml.models.pca_svd",
    "naive_bayes": "hpcml.models.naive_bayes",
    "als": "hpcml.models.als",
    "sleep": "hpcml.models.sleep",
    "cnn": "hpcml.models.cnn.kind",
    "r": "hpcml.models.r.kinds",
    "rscript": "hpcml.models.r.kinds",
    "bayesm": "hpcml.models.r.bayesm",
    "python": "hpcml.models.python_function",
    "command": "hpcml.models.command",
}


def get_model(name: str) -> ModelKind:
    """The registered kind; raises KeyError for an unknown name, ImportError for a missing extra."""
    if name not in MODEL_KINDS and name in BUILTIN_KINDS:
        import importlib

        importlib.import_module(BUILTIN_KINDS[name])
    return MODEL_KINDS[name]


def model_names() -> list[str]:
    return sorted(set(BUILTIN_KINDS) | set(MODEL_KINDS))
