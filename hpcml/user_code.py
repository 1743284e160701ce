"""Python functions on any backend in one call: ``hpcml.map`` and ``hpcml.bootstrap``.

    >>> results = hpcml.map(simulate, range(500), backend="local", workers=2)
    >>> boot = hpcml.bootstrap(np.median, x, replicates=2000, backend="dask")
    >>> boot.estimate, boot.se, boot.percentile, boot.bca

Both build a job of the ``python`` kind and run it like any other: the same seeds, the same
numbers on every backend, retries, timeouts, and resume when ``out`` names a run directory.
Without ``out`` nothing would be kept, so nothing durable is written: the records come back
to this process (``drivers/in_memory.py``), with no run directory, provenance or
results.parquet; the function and items files live in a temporary directory, removed in the
background as the call returns. The function travels by reference when importable, else by value: cloudpickled
once into a file named by its content. ``map``'s items are pickled once into a file the same
way; each worker process loads both once, never once per task.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import numbers
import pickle
import re
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hpcml.errors import RunFailed, SpecError

if TYPE_CHECKING:  # pandas is imported with the first call, not with hpcml
    import pandas as pd


def _write_once(directory: Path, prefix: str, payload: bytes, durable: bool = True) -> str:
    """The file of ``payload``, named by its content; ``durable``: written atomically and fsynced
    (a temporary directory, removed within the call, needs neither)."""
    from hpcml.files import atomic_write_bytes  # import hpcml stays light: loaded on the first call

    path = directory / f"{prefix}-{hashlib.sha256(payload).hexdigest()[:24]}.pkl"
    if durable:
        if not path.is_file() or path.read_bytes() != payload:  # named by its content: checked on reuse
            atomic_write_bytes(path, payload)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    return str(path)


def _importable_name(func: Callable) -> str | None:
    """``module:qualname`` when workers can import ``func`` by name, else None."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return f"{module}:{qualname}" if obj is func else None


def function_fields(func: Callable, directory: Path, durable: bool = True) -> dict[str, str]:
    """The ``model`` fields that name ``func``: by reference, or a cloudpickle file by value
    (in ``directory``; ``durable``: fsynced, for a directory that outlives the call)."""
    import cloudpickle

    if not callable(func):
        raise SpecError.one("function", type(func).__name__, "not callable")
    name = _importable_name(func)
    if name is not None:
        return {"function": name}
    try:
        payload = cloudpickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:
        raise SpecError.one("function", getattr(func, "__qualname__", repr(func)),
                            f"cannot be pickled by value: {type(err).__name__}: {err}") from None
    return {"function_pickle": _write_once(directory / "functions", "function", payload, durable)}


def _inputs_dir(out: Path | None, temp: Path | None) -> Path:
    if temp is not None:
        return temp / "inputs"
    from hpcml.data.cache import cache_dir  # import hpcml stays light: loaded on the first call
    from hpcml.trust import private_dir  # import hpcml stays light: loaded on the first call

    inputs = private_dir(cache_dir() / "inputs")
    if inputs is None:
        raise SpecError.one("HPCML_CACHE_DIR", str(cache_dir()), "has no directory only you can write; hpcml "
                            "keeps the function and items it will unpickle in one: set HPCML_CACHE_DIR")
    return inputs


def _job_name(prefix: str, func: Callable) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", getattr(func, "__name__", "function"))
    return f"{prefix}-{name}".strip("_") or prefix


def _execute(spec: dict, out: str | Path | None, progress: bool, in_driver: bool = False):
    """The run of ``spec``: in a run directory that later calls resume (``out``), else in memory
    (then its :class:`MemoryRecords`; ``in_driver``: this process may run the tasks itself)."""
    from hpcml.spec import load_job  # import hpcml stays light: loaded on the first call

    job = load_job(spec)
    if out is None:
        from hpcml.drivers.in_memory import execute_in_memory  # import hpcml stays light: loaded on the first call

        return job, execute_in_memory(job, progress=progress, in_driver=in_driver)
    from hpcml.drivers.run import execute  # import hpcml stays light: loaded on the first call

    return job, execute(job, resume=True, overwrite=False, progress=progress, plots=False)


def _raise_failures(n_failed: int, n_tasks: int, first, what: str, run_dir: Path | None) -> None:
    """RunFailed naming the first failed task (``first``: its record, a mapping)."""
    if n_failed:
        named = f"; first: {first['task_id']}: {first.get('error')}" if first is not None else ""
        where = f" (records in {run_dir})" if run_dir is not None else ""
        raise RunFailed(f"{n_failed} of {n_tasks} {what} failed{named}{where}")


def _check(result, what: str) -> None:
    """A run directory's result: RunFailed if a task failed."""
    if result.n_failed:
        failures = result.failures()
        _raise_failures(result.n_failed, result.n_tasks, failures.iloc[0] if len(failures) else None, what,
                        result.run_dir)


# The name of the thread that removes a call's temporary directory.
REMOVER = "hpcml-remove-temp-run"


class _Run:
    """Where a call's files go: ``out`` (a run directory, kept and resumable; the function and
    items in the shared cache) or, without it, a temporary directory removed on exit that holds
    the function and items files and any ``scratch`` a task asks for."""

    def __init__(self, out: str | Path | None):
        from hpcml.trust import why_not_my_run_dir  # import hpcml stays light: loaded on the first call

        why = why_not_my_run_dir(Path(out)) if out is not None else None
        if why is not None:  # its chunk files hold pickles that would be loaded as the results
            raise SpecError.one("out", str(out), f"{why}; hpcml resumes only a run directory of your own")
        self.temp = Path(tempfile.mkdtemp(prefix="hpcml-")) if out is None else None
        self.out = Path(out) if out is not None else self.temp / "run"
        self.inputs = _inputs_dir(self.out, self.temp)
        self.durable = out is not None

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, *exc) -> None:
        if self.temp is not None:
            # Removed while the caller goes on with the results: on a busy file system removing
            # even a few files can take longer than the whole map. The thread is not a daemon,
            # so the interpreter waits for it.
            threading.Thread(target=shutil.rmtree, args=(self.temp,), kwargs={"ignore_errors": True},
                             name=REMOVER).start()


def _backend(backend: str, workers: int | None, chunk_size: int | None, options: dict[str, Any]) -> dict[str, Any]:
    spec = {"name": backend, **options}
    if workers is not None:
        spec["workers"] = workers
    if chunk_size is not None:
        spec["chunk_size"] = chunk_size
    return spec


def _start_workers_early(backend: str, options: dict[str, Any], tables: bool = True) -> None:
    """A call that will need local workers starts their fork server first: its imports then
    overlap this process's own (``backends/fork_server.py``). ``tables``: its workers will
    need pandas and pyarrow (not an in-memory map's)."""
    if backend == "local" and options.get("start_method", "forkserver") == "forkserver":
        # light; the heavy imports come after it
        from hpcml.backends.fork_server import MAP_PRELOAD, PRELOAD, start_fork_server

        start_fork_server(PRELOAD if tables else MAP_PRELOAD)


def map(func: Callable, items: Iterable, *, backend: str = "local", workers: int | None = None,
        out: str | Path | None = None, seed: int = 0, chunk_size: int | None = None, retries: int = 0,
        timeout_s: float | None = None, progress: bool = False, **backend_options: Any) -> list:
    """``[func(item) for item in items]``, run as tasks on ``backend``; results in order.

    With ``out`` the run directory is kept and a second call with the same function and items
    runs only the calls that have no result yet (after a crash, a kill, a timeout). Raises
    :class:`RunFailed` naming the first failure if any call failed after its ``retries``.
    """
    items = list(items)
    if not items:
        return []
    _start_workers_early(backend, backend_options, tables=out is not None)
    with _Run(out) as run:
        spec = {
            "name": _job_name("map", func), "seed": seed, "data": {"source": "none"},
            "model": {"kind": "python", **function_fields(func, run.inputs, run.durable),
                      "items": _write_once(run.inputs / "items", "items", _pickle_items(items), run.durable),
                      "result": "object"},
            "plan": {"replicate": {"n": len(items)}}, "backend": _backend(backend, workers, chunk_size, backend_options),
            "output": str(run.out), "retries": retries, "timeout_s": timeout_s,
        }
        _, result = _execute(spec, out, progress)
        if out is None:  # the records themselves, in task order: no table is built
            records = result.ordered()
            if result.n_failed:
                first = next((r for r in records if r["status"] != "ok"), None)
                _raise_failures(result.n_failed, result.n_tasks, first, "calls", None)
            return [pickle.loads(r["result"]) for r in records]
        _check(result, "calls")
        frame = result.results.sort_values("task_index")
        return [pickle.loads(b) for b in frame["result"]]


def _pickle_items(items: list) -> bytes:
    # cloudpickle, not pickle: items made of classes defined in __main__ travel by value, as
    # workers never import the driver's script (backends/without_main.py)
    import cloudpickle  # import hpcml stays light: loaded on the first call

    return cloudpickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


# ---------------------------------------------------------------- bootstrap

# A vectorized bootstrap resampling at most this many values in all (replicates x rows) runs in
# this process when the backend allows it (local's ``in_driver``, on by default): about 0.1 s of
# work for a trimmed mean, less than a worker takes to start or a warm one to be sent it and
# answer. The numbers are those of a worker run (the same chunks, seeds and records).
IN_DRIVER_VALUES = 2**24

@dataclass
class BootstrapResult:
    """Estimate, standard error, percentile and BCa intervals of each output of the statistic.

    For a statistic returning one number the attributes are numbers and (low, high) tuples;
    for several outputs they are pandas Series indexed by output name. ``table`` has them all,
    ``replicates`` every replicate's outputs (one row per replicate).
    """

    estimate: Any
    se: Any
    percentile: tuple
    bca: tuple
    level: float
    table: pd.DataFrame
    replicates: pd.DataFrame
    run_dir: Path | None
    notes: tuple[str, ...] = ()  # why a number is missing or less sure (also given as warnings)


def _plain(statistic: Callable) -> tuple[bool, list[str]]:
    """(whether the first argument is the data, positionally; the names to ask for)."""
    from hpcml.models.python_function import INJECTED  # hpcml.map stays light: its fork server starts first

    try:
        params = list(inspect.signature(statistic).parameters.values())
    except (TypeError, ValueError):
        return True, ["data"]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first_is_data = bool(params) and params[0].kind in positional and params[0].name not in INJECTED
    rest = params[1:] if first_is_data else params
    names = [p.name for p in rest if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
             and (p.name in INJECTED or p.default is inspect.Parameter.empty)]
    return first_is_data, (["data"] if first_is_data else []) + names


def _adapt(statistic: Callable, vector: bool) -> Callable:
    """``statistic`` as the python kind calls it: by parameter name, the data as the user gave it."""
    first_is_data, names = _plain(statistic)
    if not first_is_data and not vector:
        return statistic
    if vector and "data" not in names:
        names = ["data", *names]

    def call(**kwargs):
        if vector and kwargs.get("data") is not None:
            kwargs["data"] = kwargs["data"][:, 0]
        if first_is_data:
            return statistic(kwargs.pop("data"), **kwargs)
        return statistic(**kwargs)

    call.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    call.__name__ = getattr(statistic, "__name__", "statistic")
    return call


def _along_last_axis(statistic: Callable) -> Callable:
    """A vectorized statistic as the python kind calls it: ``data`` one resample (1-D) or a
    batch of them (G, n), reduced along the last axis."""
    def call(data):
        return statistic(data, axis=-1)

    call.__name__ = getattr(statistic, "__name__", "statistic")
    return call


def _as_source(data: Any) -> tuple[Any, str, bool]:
    """(the table to store, data_as, whether the statistic gets a 1-D vector)."""
    import numpy as np  # hpcml.map stays light: its fork server starts first
    import pandas as pd  # (as above)

    if isinstance(data, pd.DataFrame):
        return data, "frame", False
    if isinstance(data, pd.Series):
        return pd.DataFrame({str(data.name or "x"): data.to_numpy()}), "array", True
    arr = np.asarray(data)
    if arr.ndim == 1:
        return pd.DataFrame({"x": arr}), "array", True
    if arr.ndim == 2:
        return arr, "array", False
    raise SpecError.one("data", f"array of shape {arr.shape}", "expected a DataFrame, a 1-D or a 2-D array")


def bootstrap(statistic: Callable, data: Any, *, replicates: int = 1000, backend: str = "local",
              workers: int | None = None, seed: int = 0, resample: str = "auto", level: float = 0.95,
              out: str | Path | None = None, chunk_size: int | None = None, retries: int = 0,
              timeout_s: float | None = None, progress: bool = False, vectorized: bool = False,
              **backend_options: Any) -> BootstrapResult:
    """Bootstrap ``statistic`` of ``data`` on any backend: estimate, SE, percentile and BCa intervals.

    ``statistic(x)`` gets the resampled data (a 1-D array if ``data`` is 1-D, else what was
    given); a statistic that asks for ``weights`` by name gets the whole data and each
    replicate's counts instead. It may also ask for ``rng``, ``task``, ``scratch``.

    ``vectorized=True`` (1-D data): ``statistic(x, axis=-1)`` is handed a (G, n) array of G
    resamples at once and returns G values, as ``scipy.stats.bootstrap``'s vectorized
    statistics (``np.median``, ``scipy.stats.trim_mean`` with its cut, ...); the replicates are
    the same as without it. A job this cheap (``replicates`` times the rows at most
    ``IN_DRIVER_VALUES``) runs in this process on the local backend unless ``in_driver=False``
    is given: no worker starts, and the numbers are the same.
    """
    try:
        rows = len(data)
    except TypeError:  # not data: _as_source says so in one line
        rows = None
    small = vectorized and rows is not None and replicates * rows <= IN_DRIVER_VALUES  # runs here
    if not small:
        _start_workers_early(backend, backend_options)
    import numpy as np  # after the fork server has started: its imports overlap these
    import pandas as pd  # (as above)

    from hpcml.data.frames import frame_source  # import hpcml stays light: loaded on the first call

    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise SpecError.one("level", level, "must be a number between 0 and 1")
    table, data_as, vector = _as_source(data)
    if vectorized and not vector:
        raise SpecError.one("vectorized", True, "a vectorized statistic takes 1-D data (one sample); "
                            f"got {type(data).__name__} of shape {np.shape(data)}: pass one column "
                            "(a Series or a 1-D array)")
    with _Run(out) as run:
        fn = _along_last_axis(statistic) if vectorized else _adapt(statistic, vector)
        spec = {
            "name": _job_name("bootstrap", statistic), "seed": seed,
            "data": {"source": frame_source(table)},
            "model": {"kind": "python", **function_fields(fn, run.inputs, run.durable),
                      "resample": "copy" if vectorized else resample, "data_as": data_as,
                      **({"vectorized": True} if vectorized else {})},
            "plan": {"bootstrap": {"replicates": replicates}},
            "backend": _backend(backend, workers, chunk_size, backend_options),
            "output": str(run.out), "retries": retries, "timeout_s": timeout_s,
        }
        from hpcml.data import load_dataset  # import hpcml stays light: loaded on the first call

        job, result = _execute(spec, out, progress, in_driver=small)
        if out is None:
            result = result.result(job)
        _check(result, "replicates")
        summary = result.summary
        if level != summary.get("level", 0.95):
            summary = job.plan.summarize(job, result.results, run.out, lambda: load_dataset(job), level=level)
        ok = result.results.loc[result.results["status"] == "ok"].sort_values("task_index")
    rows = pd.DataFrame(summary["table"]).set_index("output")
    reps = ok[list(rows.index)].reset_index(drop=True)
    for col in ("bca_low", "bca_high"):
        if col not in rows:
            rows[col] = np.nan
    # An empty cell (no SE of one replicate, no BCa where the estimate lies outside every
    # replicate, no estimate where the whole data's fit raised) is NaN; the summary's notes say why.
    pick = (lambda c: float(pd.to_numeric(rows[c], errors="coerce").astype(float).iloc[0])) if len(rows) == 1 \
        else (lambda c: pd.to_numeric(rows[c], errors="coerce").astype(float))
    notes = tuple(summary.get("notes", ()))
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return BootstrapResult(estimate=pick("estimate"), se=pick("se"), percentile=(pick("pct_low"), pick("pct_high")),
                           bca=(pick("bca_low"), pick("bca_high")), level=level, table=rows, replicates=reps,
                           run_dir=Path(out) if out is not None else None, notes=notes)


__all__ = ["map", "bootstrap", "BootstrapResult", "function_fields"]
