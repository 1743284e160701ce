"""Data sources -> :class:`Dataset`, loaded once per process and cached.

Workers receive only the (small) data spec and load the data themselves, so a task never
carries the data with it. Every problem is a :class:`SpecError` naming field and value.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a frame is built (a map's driver builds none)
    import pandas as pd

from hpcml.data.columns import array_columns, file_columns
from hpcml.data.fingerprint import source_files
from hpcml.data.parts import ParquetSetColumns, is_file_set, parquet_parts
from hpcml.data.mapped import dataset_key, load_shared
from hpcml.data.validate import Columns, FrameColumns, NoColumns, frame_to_dataset, is_categorical, to_dataset
from hpcml.errors import SpecError
from hpcml.machine import too_big
from hpcml.models.base import Dataset
from hpcml.spec import DataSpec
from hpcml.data.images import load_image_source

# Re-exported: shards.py and the tests validate frames and name array columns through here.
__all__ = ["array_columns", "build_dataset", "frame_to_dataset", "full_load", "is_categorical", "load_stats",
           "open_table", "SKLEARN_SETS", "SYNTHETIC"]

SKLEARN_SETS = ("diabetes", "iris", "breast_cancer", "wine", "digits", "linnerud")


# Generators: hpcml's name -> scikit-learn's function.
GENERATORS = {"regression": "make_regression", "classification": "make_classification", "blobs": "make_blobs",
              "lowrank": "make_low_rank_matrix"}
SYNTHETIC = tuple(GENERATORS)
# Set by hpcml (``seed`` is its random_state), or changing the shape of what the function
# returns (hpcml's target is one column, `y`).
_NOT_OPTIONS = {"random_state", "coef", "return_centers", "n_targets", "return_X_y", "as_frame", "data_home",
                "download_if_missing", "n_retries", "delay"}
# The generator's arrays, the frame made of them and the validated design matrix: about three
# float64 copies of the data are alive at once while a synthetic set is made.
_COPIES = 3


def _check_options(function, options: dict[str, Any], own: tuple[str, ...] = ()) -> None:
    """Every key of ``options`` is an argument of ``function`` (or one hpcml reads itself)."""
    import inspect

    allowed = [*own, *(p for p in inspect.signature(function).parameters if p not in _NOT_OPTIONS and p not in own)]
    for key, value in options.items():
        if key not in allowed:
            choices = ", ".join(allowed) if allowed else "none"
            raise SpecError.one(f"data.options.{key}", value, f"not an option of sklearn.datasets.{function.__name__}; "
                                f"allowed: {choices}")


def _sklearn_frame(name: str, options: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    import sklearn.datasets as skd

    if name not in SKLEARN_SETS:
        raise SpecError.one("data.source", f"sklearn:{name}", f"unknown sklearn data set; choose one of {', '.join(SKLEARN_SETS)}")
    load = getattr(skd, f"load_{name}")
    _check_options(load, options)
    try:
        bunch = load(as_frame=True, **options)
    except (TypeError, ValueError) as err:
        raise SpecError.one("data.options", options, str(err).splitlines()[0]) from None
    frame = bunch.frame.copy()
    meta: dict[str, Any] = {}
    if name == "digits":
        meta["image_shape"] = (1, 8, 8)
        meta["scale"] = 16.0  # pixel values 0..16 -> [0, 1]
    return frame, meta


def _synthetic_frame(kind: str, options: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd  # loaded with the first frame: a map's driver builds none
    import sklearn.datasets as skd

    if kind not in GENERATORS:
        raise SpecError.one("data.source", f"synthetic:{kind}", f"unknown generator; choose one of {', '.join(SYNTHETIC)}")
    make = getattr(skd, GENERATORS[kind])
    _check_options(make, options, own=("seed", "n_samples", "n_features"))
    opts = dict(options)
    seed = opts.pop("seed", 0)
    n = opts.pop("n_samples", 1000)
    p = opts.pop("n_features", 10)
    for field, value in (("n_samples", n), ("n_features", p)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError.one(f"data.options.{field}", value, "must be a positive integer")
    why = too_big(_COPIES * 8 * n * (p + 1))
    if why is not None:
        field, value = ("n_samples", n) if n >= p else ("n_features", p)
        raise SpecError.one(f"data.options.{field}", value, f"{n:,} rows x {p:,} features: making the data {why}")
    try:
        if kind == "lowrank":
            X, y = make(n_samples=n, n_features=p, random_state=seed, **opts), np.zeros(n)
        else:
            if kind == "regression":
                opts.setdefault("noise", 1.0)
            X, y = make(n_samples=n, n_features=p, random_state=seed, **opts)
    except (TypeError, ValueError) as err:
        raise SpecError.one("data.options", options, str(err).splitlines()[0]) from None
    frame = pd.DataFrame(X, columns=array_columns(X.shape[1]))
    frame["y"] = y
    return frame


def open_table(spec: DataSpec) -> tuple[Columns, dict[str, Any]]:
    """The source as a table read column by column, and what it says about itself (meta)."""
    source = spec.source
    if source == "none":  # kinds that make their own data (rscript, bayesm, python): one row, no columns
        return NoColumns(), {}
    if source.startswith("sklearn:"):
        frame, meta = _sklearn_frame(source.split(":", 1)[1], spec.options)
        return FrameColumns(frame), meta
    if source.startswith("synthetic:"):
        return FrameColumns(_synthetic_frame(source.split(":", 1)[1], spec.options)), {}
    if is_file_set(source):  # a directory or glob of Parquet files: one table
        files = parquet_parts(source)
        return _unreadable(Path(source), ParquetSetColumns, files), {}
    path = Path(source)
    if not path.exists():
        raise SpecError.one("data.source", str(path), "file not found")
    if not path.resolve().is_file():  # a FIFO blocks the read forever, /dev/zero never ends
        raise SpecError.one("data.source", str(path), "not a regular file (a pipe, a device or a socket, "
                            "here or where a link points); give a .csv, .parquet or .npy file")
    cols = _unreadable(path, file_columns, path)
    if cols is None:
        raise SpecError.one("data.source", str(path), "unsupported file type; use .csv, .parquet or .npy")
    return cols, {}


def _unreadable(path: Path, read, *args):
    """``read(*args)``, a corrupt file reported as one line that names it."""
    try:
        return read(*args)
    except SpecError:
        raise
    except Exception as err:
        raise SpecError.one("data.source", str(path), f"cannot read: {type(err).__name__}: {err}".splitlines()[0]) from None


def build_dataset(spec: DataSpec, features: list[str] | None, needs_target: bool,
                  allocate: Callable[[tuple[int, int]], np.ndarray] = np.empty) -> Dataset:
    """The validated data, its design matrix written into ``allocate((rows, columns))``."""
    if spec.source.startswith("idx:"):
        return load_image_source(spec.source, spec.options)
    cols, meta = open_table(spec)
    if isinstance(cols, (FrameColumns, NoColumns)):
        return to_dataset(cols, spec, features, needs_target, meta, allocate)
    return _unreadable(Path(spec.source), to_dataset, cols, spec, features, needs_target, meta, allocate)


def _load(spec_json: str, features_json: str, needs_target: bool) -> Dataset:
    spec = DataSpec.model_validate_json(spec_json)
    features = json.loads(features_json)
    if spec.source.startswith("idx:"):
        return build_dataset(spec, features, needs_target)
    # Large data is written once per machine to a file every process maps (mapped.py).
    return load_shared(dataset_key(spec, features, needs_target),
                       functools.partial(build_dataset, spec, features, needs_target))


def _source_stamp(source: str) -> tuple:
    """Where the data's files are and how they stand (absolute path, size, mtime): part of the
    per-process cache key, so a process that runs several jobs (warm workers, an R session)
    never serves a file's old contents after it changed, nor another directory's file of the
    same relative name. Generated data has no files: its spec is its key."""
    try:
        return tuple((str(f.resolve()), (st := f.stat()).st_size, st.st_mtime_ns) for f in source_files(source))
    except (OSError, SpecError):
        return ()  # the load itself says what is wrong


@functools.lru_cache(maxsize=4)
def _load_stamped(spec_json: str, features_json: str, needs_target: bool, stamp: tuple) -> Dataset:
    _LOADS[spec_json] = _LOADS.get(spec_json, 0) + 1
    data = _load(spec_json, features_json, needs_target)
    # How often this process has loaded this source: a worker kept for several jobs
    # (warm workers) still loads each job's data once.
    data.meta["loads"] = _LOADS[spec_json]
    return data


_LOADS: dict[str, int] = {}


def full_load(spec: DataSpec, features: list[str] | None, needs_target: bool, *, keep: bool = True) -> Dataset:
    """The whole data set, validated; cached per process unless ``keep`` is False (the driver's
    checks: it needs the data again only for the summary, and maps it again then)."""
    if not keep:
        return _load(spec.model_dump_json(), json.dumps(features), needs_target)
    return _load_stamped(spec.model_dump_json(), json.dumps(features), needs_target, _source_stamp(spec.source))


def load_stats() -> tuple[int, int]:
    """(full loads, cache reuses) of this process: proof that a worker loads its data once."""
    info = _load_stamped.cache_info()
    return info.misses, info.hits
