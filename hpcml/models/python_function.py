"""The ``python`` kind: the user's own Python function as a task.

    model:
      kind: python
      function: mypkg.stats:trimmed_mean     # or  file: analysis.py  +  function: trimmed_mean
      args: {cut: 0.1}                       # extra keyword arguments (a sweep's grid sets them)

The function asks for what it needs by parameter name (see ``INJECTED``): ``data`` (the data
source as a pandas DataFrame, None for ``source: none``), ``weights``, ``rng``, ``params``,
``task``, ``scratch``, ``train``, ``test``, ``item``; names in ``args`` are passed too. Any
other parameter without a default is bad input, found before a run directory exists.

It returns a number (column ``value``), a mapping of numbers, a pandas Series or a 1-D array
(``value_0``, ``value_1``...). Arrays and frames inside a mapping are saved in the task's
artifact directory and the record holds their path. Anything else fails the task.

A function travels by reference (``module:name``, a file) or by value: ``function_pickle`` is
a cloudpickle file the Python API writes for functions defined in ``__main__``, a notebook or
a closure. Each worker process loads a function (and ``items``) once, not once per task.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import pickle
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from hpcml.files import bytes_digest
from hpcml.models.base import Dataset, FitContext, FunctionParams, ModelKind, register_model, with_function_args
from hpcml.models.user_outputs import pickled, to_record
from hpcml.models.vectorized import leave_group_out_values, one_column, resampled_values, vector_batch
from hpcml.models.whole_data import read_only, whole_frame
from hpcml.trust import why_untrusted

# A vectorized function's replicates run in groups of VECTOR_BATCH (the tasks a plan's group
# holds); each call gets vector_batch(n) of them, fewer than a group for data above 1,024 rows.
VECTOR_BATCH = 512
# What a function may ask for by parameter name.
INJECTED = ("data", "weights", "rng", "params", "task", "scratch", "train", "test", "item")


class PythonParams(FunctionParams):
    path_fields: ClassVar[tuple[str, ...]] = ("file", "function_pickle", "items")
    function: str | None = Field(None, description="`package.module:name`, or the function's name in `file`")
    file: str | None = Field(None, description="a Python file that defines `function`")
    function_pickle: str | None = Field(
        None, description="a cloudpickle file of the function (written by the Python API for functions defined "
                          "in __main__, a notebook or a closure)")
    resample: Literal["auto", "weights", "copy"] = Field(
        "auto", description="weights: pass row weights; copy: pass the resampled (or training) rows as `data`; "
                            "auto: weights if the function asks for `weights`, `train` or `test`, else copy")
    data_as: Literal["frame", "array"] = Field("frame", description="`data` as a pandas DataFrame or a float64 array")
    items: str | None = Field(None, description="a pickle file of a list; task i calls function(items[i]) "
                                                "(written by hpcml.map)")
    result: Literal["outputs", "object"] = Field(
        "outputs", description="outputs: numbers, one column each; object: any picklable value, kept pickled "
                               "in column `result` (hpcml.map)")
    vectorized: bool = Field(
        False, description="a bootstrap of data of one column: `data` is that column (1-D), and the function also "
                           "takes a (G, n) array of G resamples at once and returns G numbers, as "
                           "scipy.stats.bootstrap's vectorized statistics (`axis=-1`)")

    @model_validator(mode="after")
    def _one_source(self) -> "PythonParams":
        if (self.function is None) == (self.function_pickle is None):
            raise ValueError("give exactly one of `function` or `function_pickle`")
        if self.file is not None and self.function_pickle is not None:
            raise ValueError("`file` goes with `function`, not with `function_pickle`")
        bad = sorted(set(self.args) & set(INJECTED))
        if bad:
            raise ValueError(f"args: {bad[0]!r} is a name hpcml passes itself; rename it")
        if self.vectorized and (self.resample == "weights" or self.result == "object" or self.items is not None):
            raise ValueError("vectorized: the function gets resampled copies of one column and returns numbers "
                             "(resample weights, result object and items do not go with it)")
        return self


class UserCodeError(Exception):
    """The user's function could not be loaded or called as the spec says (bad input)."""

    def __init__(self, field: str, value: Any, message: str):
        super().__init__(f"{field}: {message} (got {value!r})")
        self.problem = (field, value, message)


# ---------------------------------------------------------------- loading, once per process

def module_from_file(path: str, sha256: str | None = None):
    """The module of a Python file, loaded once per process and content: the name carries the
    content's digest, so a warm worker given an edited file loads it anew instead of reusing
    the old module, and the code run is the code whose digest the job recorded."""
    resolved = Path(path).resolve()
    if resolved.suffix != ".py":
        raise UserCodeError("model.file", path, "not a Python file")
    source = resolved.read_bytes()
    digest = bytes_digest(source)
    if sha256 is not None and digest != sha256:
        raise UserCodeError("model.file", path, "changed since the job was loaded (its SHA-256 differs); a run's "
                            "tasks all run the same code: start a new run (another --out)")
    name = "hpcml_user_" + hashlib.sha1(f"{resolved}\0{digest}".encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(resolved)
    sys.modules[name] = module  # so that pickling what it defines works
    try:
        exec(compile(source, str(resolved), "exec"), module.__dict__)  # the bytes that were checked
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _resolve(params: PythonParams) -> Callable:
    if params.function_pickle is not None:
        import cloudpickle  # noqa: F401  (registers what pickle needs for functions by value)

        path = Path(params.function_pickle)
        if not path.is_file():
            raise UserCodeError("model.function_pickle", params.function_pickle, "file not found")
        check_unpicklable("model.function_pickle", path)
        with open(path, "rb") as fh:
            fn = pickle.load(fh)
        where, what = "model.function_pickle", params.function_pickle
    elif params.file is not None:
        if not Path(params.file).is_file():
            raise UserCodeError("model.file", params.file, "file not found")
        try:
            module = module_from_file(params.file, params.code_sha256.get("file"))
        except UserCodeError:
            raise
        except Exception as err:
            raise UserCodeError("model.file", params.file, f"cannot import: {type(err).__name__}: {err}") from None
        fn = getattr(module, params.function, None)
        if fn is None:
            raise UserCodeError("model.function", params.function, f"not defined in {params.file}")
        where, what = "model.function", params.function
    else:
        module_name, sep, attr = params.function.partition(":")
        if not sep or not module_name or not attr:
            raise UserCodeError("model.function", params.function,
                                "expected `package.module:name` (or set `file` to a Python file)")
        try:
            obj = importlib.import_module(module_name)
        except Exception as err:
            raise UserCodeError("model.function", params.function,
                                f"cannot import {module_name}: {type(err).__name__}: {err}") from None
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise UserCodeError("model.function", params.function, f"{module_name} has no {attr!r}")
        fn = obj
        where, what = "model.function", params.function
    if not callable(fn):
        raise UserCodeError(where, what, f"not callable ({type(fn).__name__})")
    return fn


def _signature_names(fn: Callable, params: PythonParams) -> tuple[tuple[str, ...], bool, frozenset]:
    """(the injected names the function asks for, whether it takes **kwargs, the ``args`` it takes).

    Raises UserCodeError for a parameter hpcml cannot fill.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins: the item, or the data
        return (("item",) if params.items is not None else ("data",)), False, frozenset()
    where = "model.function_pickle" if params.function_pickle is not None else "model.function"
    what = params.function_pickle or params.function
    wanted, var_kw, takes = [], False, set()
    parameters = list(sig.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if params.items is not None:
        # hpcml.map: the item is the first positional argument, whatever it is called.
        if not parameters or parameters[0].kind not in positional + (inspect.Parameter.VAR_POSITIONAL,):
            raise UserCodeError(where, what, "takes no positional argument for the item")
        if parameters[0].kind != inspect.Parameter.VAR_POSITIONAL:
            parameters = parameters[1:]
        wanted.append("item")
    for p in parameters:
        if p.kind == inspect.Parameter.VAR_KEYWORD:
            var_kw = True
        elif p.kind == inspect.Parameter.VAR_POSITIONAL:
            continue
        elif p.kind == inspect.Parameter.POSITIONAL_ONLY:
            if p.default is inspect.Parameter.empty:
                raise UserCodeError(where, what, f"parameter {p.name!r} is positional-only; hpcml passes "
                                    "arguments by name")
        elif p.name in INJECTED and p.name != "item":
            wanted.append(p.name)
        elif p.name in params.args:
            takes.add(p.name)
        elif p.default is inspect.Parameter.empty:
            hint = "" if p.name != "item" else " (`item` is given by hpcml.map only)"
            raise UserCodeError(where, what, f"asks for unknown parameter {p.name!r}{hint}; it may ask for "
                                f"{', '.join(n for n in INJECTED if n != 'item')} or a name in model.args")
    if not var_kw:
        extra = sorted(set(params.args) - takes)
        if extra:
            raise UserCodeError(f"model.args.{extra[0]}", params.args[extra[0]],
                                "the function has no parameter of this name")
    return tuple(dict.fromkeys(wanted)), var_kw, frozenset(takes)


@functools.lru_cache(maxsize=16)
def _load(params_json: str) -> Callable:
    return _resolve(PythonParams.model_validate_json(params_json))


@functools.lru_cache(maxsize=256)
def _binding(params_json: str) -> tuple[Callable, tuple[str, ...], bool]:
    params = PythonParams.model_validate_json(params_json)
    # A sweep changes only ``args``: the function itself is loaded once for all of them.
    fn = _load(params.model_copy(update={"args": {}}).model_dump_json())
    wanted, var_kw, _ = _signature_names(fn, params)
    return fn, wanted, var_kw


_LAST: list = [None, None]


def load_function(params: PythonParams) -> tuple[Callable, tuple[str, ...], bool]:
    """The function, the injected names it asks for, whether it takes **kwargs; cached per process."""
    if _LAST[0] is not params:  # most jobs hand every task the same params object
        _LAST[:] = [params, _binding(params.model_dump_json())]
    return _LAST[1]


@functools.lru_cache(maxsize=4)
def load_items(path: str) -> list:
    import cloudpickle  # noqa: F401

    check_unpicklable("model.items", Path(path))
    with open(path, "rb") as fh:
        return pickle.load(fh)


def check_unpicklable(field: str, path: Path) -> None:
    """Loading a pickle runs its code: only a file this user alone can have written is loaded."""
    why = why_untrusted(path.resolve())
    if why is not None:
        raise UserCodeError(field, str(path), f"{why}; hpcml never unpickles a file another user could "
                            "have written")


_TEMP: list[str] = []


def _fallback_scratch() -> Path:
    # Refits on the driver (BCa's jackknife) have no task directory.
    if not _TEMP:
        _TEMP.append(tempfile.mkdtemp(prefix="hpcml-scratch-"))
    return Path(_TEMP[0])


# ---------------------------------------------------------------- the kind

@register_model
class PythonFunctionKind(ModelKind):
    name = "python"
    code_fields = ("file", "function_pickle", "items")
    Params = PythonParams
    needs_target = False
    primary_metric = "value"
    open_grid = True  # a sweep's grid names the function's own arguments (model.args)

    def check(self, params: PythonParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if data.target is not None:
            return [("data.target", data.target, "the python kind passes every column to the function; "
                     "remove data.target and use the column in the function")]
        if params.vectorized and data.X.shape[1] != 1:
            return [("model.vectorized", True, f"a vectorized function resamples data of one column; these data "
                     f"have {data.X.shape[1]}")]
        if params.file is not None and not Path(params.file).is_file():
            return [("model.file", params.file, "file not found")]
        if params.items is not None and not Path(params.items).is_file():
            return [("model.items", params.items, "file not found")]
        try:
            load_function(params)
        except UserCodeError as err:
            return [err.problem]
        return []

    def with_params(self, base: PythonParams, overrides: dict[str, Any]) -> PythonParams:
        return with_function_args(base, overrides)

    def batch_size(self, params: PythonParams) -> int:
        return VECTOR_BATCH if params.vectorized else 1

    def resamples_as_rows(self, params: PythonParams, n: int) -> int:
        return min(VECTOR_BATCH, vector_batch(n)) if params.vectorized else 0

    def outputs_rows(self, params: PythonParams, data: Dataset, resamples) -> list[dict[str, Any] | None]:
        """A vectorized function's values for every replicate of ``resamples`` in one call
        (``models/vectorized.py``)."""
        fn, _, _ = load_function(params)
        return resampled_values(lambda batch: fn(data=batch, **params.args), one_column(data), resamples)

    def jackknife(self, params: PythonParams, data: Dataset, labels: np.ndarray, groups: int) -> list[dict[str, Any]] | None:
        """A vectorized function's leave-group-out values, batched like its replicates."""
        if not params.vectorized:
            return None
        fn, _, _ = load_function(params)
        return leave_group_out_values(lambda batch: fn(data=batch, **params.args), one_column(data), labels, groups,
                                      min(VECTOR_BATCH, vector_batch(data.n)))

    def warm(self, params: PythonParams) -> None:
        load_function(params)
        if params.items is not None:
            load_items(params.items)

    def sweep_metric(self, params: PythonParams) -> tuple[str, bool]:
        return params.metric, params.greater_is_better

    def fit(self, params: PythonParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> Any:
        fn, wanted, var_kw = load_function(params)
        kwargs = self._values(params, data, weights, ctx, wanted) if len(wanted) > ("item" in wanted) else {}
        kwargs.update(params.args)
        if params.items is not None:
            value = fn(load_items(params.items)[int(ctx.task_index or 0)], **kwargs)
        else:
            value = fn(**kwargs)
        if params.result == "object":
            return {"result": pickled(value)}
        if params.vectorized and np.ndim(value) != 0:  # what its batched call would have to give per resample
            raise TypeError(f"a vectorized function must return one number per resample; one resample gave an "
                            f"array of shape {np.shape(value)}")
        return to_record(value, lambda: ctx.scratch if ctx.scratch is not None else None)

    def _values(self, params: PythonParams, data: Dataset, weights, ctx: FitContext, wanted) -> dict[str, Any]:
        n = data.n
        # auto: a function that asks for no weights and no masks gets the rows themselves.
        copy = params.resample == "copy" or (params.resample == "auto" and not {"weights", "train", "test"} & set(wanted))
        rows = None
        if copy and weights is not None:
            rows = np.repeat(np.arange(n), weights.astype(np.int64))
            weights = None
        getters = {
            "data": lambda: self._data(params, data, rows),
            "weights": lambda: np.ones(n if rows is None else rows.size) if weights is None else weights,
            "rng": lambda: ctx.rng,
            "params": lambda: dict(params.args),
            "task": lambda: {"index": ctx.task_index, "id": ctx.task_id, "seed": ctx.seed, **ctx.task_params},
            "scratch": lambda: self._scratch(ctx),
            "train": lambda: np.ones(n if rows is None else rows.size, dtype=bool) if weights is None else weights > 0,
            "test": lambda: np.zeros(n if rows is None else rows.size, dtype=bool) if weights is None else weights == 0,
        }
        return {name: getters[name]() for name in wanted if name != "item"}

    @staticmethod
    def _scratch(ctx: FitContext) -> Path:
        path = Path(ctx.scratch) if ctx.scratch is not None else _fallback_scratch()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _data(params: PythonParams, data: Dataset, rows: np.ndarray | None):
        if data.X.shape[1] == 0:  # source: none
            return None
        # The whole data read-only (see read_only); a resampled copy is the task's own.
        if params.vectorized:  # the one column, as the batched call gets each row of its batch
            column = np.asarray(data.X, dtype=np.float64)[:, 0]
            return read_only(column) if rows is None else column[rows]
        if params.data_as == "array":
            X = np.asarray(data.X)
            return read_only(X) if rows is None else X[rows]
        frame = whole_frame(data)
        return frame if rows is None else frame.iloc[rows].reset_index(drop=True)

    def outputs(self, params, fitted: dict[str, Any], data: Dataset) -> dict[str, Any]:
        return dict(fitted)

    def score(self, params, fitted, data: Dataset, mask) -> dict[str, float]:
        return {}
