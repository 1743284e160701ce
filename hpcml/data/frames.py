"""In-memory tables as data sources: ``hpcml.run(spec, data=frame)``.

Workers load data from a source they can read themselves (see ``sources.py``), never from the
driver's memory. A frame handed to ``run`` is therefore written once as Parquet under a
content-addressed name in a cache directory, and the spec points at that file: the same frame
gives the same path, so ``resume=True`` recognises the run, and workers on other nodes read
it where the cache directory is on a shared file system (the home directory, by default).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from hpcml.data.cache import cache_dir
from hpcml.data.sources import array_columns
from hpcml.errors import SpecError
from hpcml.trust import private_dir, trusted_file
from hpcml.files import atomic_write_bytes, parquet_bytes


FRAME_PREFIX = "frame-"


def is_frame_file(path: str) -> bool:
    """Whether ``path`` is a frame this module wrote (``<cache dir>/frames/frame-<digest>.parquet``),
    whichever cache directory the process that asks has."""
    p = Path(path)
    return p.parent.name == "frames" and p.name.startswith(FRAME_PREFIX) and p.suffix == ".parquet"


def as_frame(data: Any) -> pd.DataFrame:
    """A pandas DataFrame, or a 2-D NumPy array (columns named x0, x1, ... as for .npy files)."""
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise SpecError.one("data", f"array of shape {data.shape}", "an array must be 2-D (rows x columns)")
        frame = pd.DataFrame(data, columns=array_columns(data.shape[1]))
    else:
        raise SpecError.one("data", type(data).__name__, "expected a pandas DataFrame or a 2-D NumPy array")
    if frame.empty:
        raise SpecError.one("data", f"frame of shape {frame.shape}", "the table has no rows or no columns")
    if isinstance(frame.columns, pd.MultiIndex) or frame.columns.duplicated().any():
        raise SpecError.one("data.columns", list(map(str, frame.columns)), "column names must be unique and flat")
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def _numeric_digest(frame: pd.DataFrame) -> str | None:
    """SHA-256 of a frame whose columns are all plain numbers (bool, integer, float): column
    names, types and values, read from memory; None for any other frame (text, categories)."""
    if not all(isinstance(t, np.dtype) and t.kind in "biuf" for t in frame.dtypes):
        return None
    h = hashlib.sha256(b"hpcml-numeric-frame-1\0")
    h.update(json.dumps([[name, frame[name].dtype.str] for name in frame.columns]).encode())
    for name in frame.columns:
        h.update(memoryview(np.ascontiguousarray(frame[name].to_numpy())).cast("B"))
    return h.hexdigest()


def frame_source(data: Any) -> str:
    """Write ``data`` once (by content) and return the path to use as ``data.source``."""
    frame = as_frame(data)
    # The name is a hash of everything the table holds (values, column names and types,
    # categories): of its numbers in memory when it holds only numbers, so a table already
    # stored is not written again; else of its Parquet file (the same table, the same bytes).
    digest = _numeric_digest(frame)
    payload = None
    if digest is None:
        payload = parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False))
        digest = hashlib.sha256(payload).hexdigest()
    frames = private_dir(cache_dir() / "frames")
    if frames is None:
        raise SpecError.one("HPCML_CACHE_DIR", str(cache_dir()), "has no directory only you can write to keep "
                            "the frame in; set HPCML_CACHE_DIR")
    path = frames / f"{FRAME_PREFIX}{digest[:24]}.parquet"
    if not trusted_file(path):  # in a directory only this user writes: a file there is this frame
        if payload is None:
            payload = parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False))
        atomic_write_bytes(path, payload)
    return str(path)
