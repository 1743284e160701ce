"""One embedded R per worker process (rpy2), started lazily, and conversions to and from it.

R is started on the first call that needs it, never at import: a process that runs no R
task never pays for R, and a machine without rpy2 fails only when an R kind is used.
R errors surface as :class:`RError` carrying R's own message, all its lines, as R prints it.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import warnings
from typing import Any

import numpy as np
import pandas as pd

# rpy2's embedded R is one per process and not thread-safe: calls are serialized.
_LOCK = threading.RLock()
# R objects whose last Python reference another thread dropped while R was busy (see _guard_releases).
_PENDING: list[Any] = []
_RELEASE: list[Any] = []  # rpy2's own release function, once guarded


class RError(RuntimeError):
    """An error raised by R code; ``str()`` is R's message."""


@functools.lru_cache(maxsize=1)
def _r():
    # Starting R puts R's library folders (the system's first) on LD_LIBRARY_PATH. Every
    # process started afterwards (hpcml's spawned workers, Rscript tasks, mpirun) would then
    # load the system libpython instead of this interpreter's and fail: keep the old value.
    ld_path = os.environ.get("LD_LIBRARY_PATH")
    # Dask starts R from a worker thread; rpy2 then warns that Ctrl-C cannot reach R. Workers
    # are stopped by their scheduler, never by Ctrl-C, so the warning is noise in every log.
    warnings.filterwarnings("ignore", message="R is not initialized by the main thread")
    # rpy2 logs "cffi mode is CFFI_MODE.ANY" and the like at INFO; under MPI and Slurm, where
    # hpcml's log goes to the terminal at INFO, those lines would reach every rank's output.
    logging.getLogger("rpy2").setLevel(logging.WARNING)
    try:
        import rpy2.robjects as ro
        from rpy2.rinterface_lib import callbacks
    except ImportError as err:
        raise ImportError(f"R task kinds need rpy2 and R: pip install 'hpcml[r]' ({err})") from None
    finally:
        if ld_path is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = ld_path
    # R's console output would interleave with progress bars; warnings stay visible in the log.
    callbacks.consolewrite_print = lambda text: None
    callbacks.consolewrite_warnerror = lambda text: None
    _guard_releases()
    return ro


def _guard_releases() -> None:
    """Release R objects only while no other thread runs R.

    rpy2 releases an R object (``R_ReleaseObject``, and its own count of references) in
    whichever thread drops the last Python reference to it, with the GIL released, and
    nothing stops that from happening while another thread is inside R. In a Dask worker that
    thread exists: for Dask's profiler, the worker's event loop takes the task thread's frames
    every 10 ms (``Worker.trigger_profile``) and drops them when it is done, so the locals of
    an R call that returned meanwhile (an R function, a data.frame) are released in the event
    loop's thread while the task thread may already be inside R again; the garbage collector
    can do the same from any thread. Two threads changing R's list of protected
    objects at once can corrupt it, and a corrupted list can make R loop forever. So a
    release asked for while another thread holds R waits in ``_PENDING`` and is done when
    that thread lets R go.
    """
    from rpy2.rinterface_lib import _rinterface_capi as capi

    if _RELEASE:
        return
    release = capi._release
    _RELEASE.append(release)

    def guarded(cdata) -> None:
        if _LOCK.acquire(blocking=False):  # this thread holds R already, or nobody does
            try:
                release(cdata)
            finally:
                _LOCK.release()
        else:
            _PENDING.append(cdata)

    capi._release = guarded  # SexpCapsule.__del__ looks the name up in its module at each call


def _release_pending() -> None:
    """Do the releases other threads asked for while R was busy (the caller holds R)."""
    while _PENDING:
        _RELEASE[0](_PENDING.pop())


def r():
    """The ``rpy2.robjects`` module with R started."""
    with _LOCK:
        return _r()


@contextlib.contextmanager
def session():
    """Hold R for this thread, with rpy2's default conversion rules set.

    rpy2 keeps its conversion rules in a ``contextvars.ContextVar``; threads that a scheduler
    starts (Dask runs tasks in a thread pool) do not inherit them, and every call from such a
    thread would fail with "Conversion rules ... appear to be missing". R task kinds run their
    whole fit inside this.
    """
    ro = r()
    from rpy2.robjects import conversion

    # What rpy2's localconverter(default_converter) does, without copying every rule into a
    # new Converter each time (a millisecond per call, several calls per task): the rules
    # are copied once per process and only set for this thread while it holds R.
    with _LOCK:
        token = conversion.converter_ctx.set(_default_rules())
        try:
            yield ro
        finally:
            conversion.converter_ctx.reset(token)
            _release_pending()


@functools.lru_cache(maxsize=1)
def _default_rules():
    from rpy2.robjects.conversion import Converter

    return Converter("hpcml-default", template=r().default_converter)


# R's "Error in <call> : " (or "Error: ") before the message; a long call puts the message on
# the next line, indented by two spaces.
_ERROR_HEAD = re.compile(r"^Error(?: in [^\n]*? : ?|: ?)(?:\n  )?")


def _message(err: Exception) -> str:
    """R's whole message, every line of it (a parse error's lines show where the code is wrong),
    without R's "Error in <call> :" head."""
    text = str(err).strip("\n").rstrip()
    message = _ERROR_HEAD.sub("", text, count=1).rstrip()
    return message or text or "R error"


def evaluate(code: str) -> Any:
    """Evaluate R code in R's global environment; R errors -> :class:`RError`.

    What ``ro.r(code)`` does, with the parsed code kept for the next call of the same code
    (kinds evaluate the same few lines for every task)."""
    ro = r()
    from rpy2.rinterface_lib.embedded import RRuntimeError

    with session():
        try:
            return function("eval")(_parsed(code))
        except RRuntimeError as err:
            raise RError(_message(err)) from None


@functools.lru_cache(maxsize=None)
def function(name: str) -> Any:
    """A function of R's base package (``serialize``, ``eval``), looked up once per process:
    rpy2 builds a Python wrapper for every lookup (milliseconds)."""
    return r().baseenv[name]


@functools.lru_cache(maxsize=64)
def _parsed(code: str) -> Any:
    import rpy2.rinterface as ri
    from rpy2.rinterface_lib.embedded import RRuntimeError

    with _LOCK:
        try:
            return ri.parse(code)
        except RRuntimeError as err:
            raise RError(_message(err)) from None


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call an R function; R errors -> :class:`RError` with R's message."""
    from rpy2.rinterface_lib.embedded import RRuntimeError

    with session():
        try:
            return fn(*args, **kwargs)
        except RRuntimeError as err:
            raise RError(_message(err)) from None


def seed(value: int) -> None:
    """Seed R's generator: L'Ecuyer-CMRG, whose streams doParallel's workers also derive from."""
    call(_seeder(), int(value))


@functools.lru_cache(maxsize=1)
def _seeder() -> Any:
    # every kind named: what an earlier task of this process set (RNGkind in its code) never
    # changes a later task's numbers
    return evaluate('function(seed) { RNGkind("L\'Ecuyer-CMRG", "Inversion", "Rejection"); set.seed(seed) }')


def raw_bytes(value: Any) -> bytes:
    """An R raw vector (e.g. what ``serialize`` returns) as bytes, copied at once, not byte by byte."""
    return np.asarray(value, dtype=np.uint8).tobytes()


def to_r(value: Any) -> Any:
    """pandas/NumPy/Python values -> R objects (data.frame, numeric vector, named list)."""
    ro = r()
    from rpy2.robjects import numpy2ri, pandas2ri
    from rpy2.robjects.conversion import localconverter

    if isinstance(value, dict):
        return ro.vectors.ListVector({k: to_r(v) for k, v in value.items()})
    if value is None:
        return ro.NULL
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ro.StrVector(list(value))
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "biuf":
        # A plain R vector: numpy2ri would add a `dim` attribute (a 1-d array), and ordinary R
        # such as cov.wt(x, wt = weights) then fails with "non-conformable arrays".
        vector = {"b": ro.BoolVector, "i": ro.IntVector, "u": ro.IntVector}.get(value.dtype.kind, ro.FloatVector)
        return vector(value.tolist())
    with _LOCK, localconverter(ro.default_converter + pandas2ri.converter + numpy2ri.converter):
        return ro.conversion.get_conversion().py2rpy(value)


def to_py(value: Any) -> Any:
    """R objects -> pandas DataFrame (data.frame), NumPy array (vector/matrix), dict (named list)."""
    ro = r()
    from rpy2.robjects import numpy2ri, pandas2ri
    from rpy2.robjects.conversion import localconverter

    with _LOCK, localconverter(ro.default_converter + pandas2ri.converter + numpy2ri.converter):
        return ro.conversion.get_conversion().rpy2py(value)


def frame(X: np.ndarray, columns: list[str]) -> Any:
    """A float matrix with column names -> an R data.frame (columns copied once)."""
    return to_r(pd.DataFrame(X, columns=columns))


def scalars(value: Any, what: str) -> dict[str, float]:
    """A named list / named vector / one-row data.frame of numbers -> {name: float}.

    Anything else is a clear error naming what was returned: outputs must be scalars so
    every task's record is one row of the results table.
    """
    ro = r()
    names = list(ro.r["names"](value)) if value is not ro.NULL else []
    if not names or any(n in ("", "NA") for n in names):
        raise RError(f"{what} must return a named list of numbers, got {_rclass(value)} without names")
    is_df = "data.frame" in _rclass(value)
    if is_df and ro.r["nrow"](value)[0] != 1:
        raise RError(f"{what} returned a data.frame with {ro.r['nrow'](value)[0]} rows; return one row of scalars")
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        item = value[i]
        arr = np.asarray(item).ravel() if not np.isscalar(item) else np.asarray([item])
        if arr.size != 1:
            raise RError(f"{what}: output {name!r} has length {arr.size}; each output must be one number")
        try:
            out[str(name)] = float(arr[0])
        except (TypeError, ValueError):
            raise RError(f"{what}: output {name!r} is not a number ({arr[0]!r})") from None
    return out


def _rclass(value: Any) -> str:
    return "/".join(r().r["class"](value))
