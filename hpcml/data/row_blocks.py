"""Data read block by block for a fit over row blocks: each task reads only its rows.

A Parquet file or set, a CSV or a .npy file, read through the same readers as the shards
plan (``lazy_rows``): Parquet opens only the files and row groups that hold the block. No
process reads the whole target column either; a classifier's classes come from a pass
over the blocks. Rows are checked as they are read: a NaN or a text feature stops the run
with one line naming the column and the row.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from hpcml.data.lazy_rows import LazyRows, reader_for, to_matrix
from hpcml.data.parts import is_file_set, set_files
from hpcml.errors import SpecError
from hpcml.models.base import Dataset
from hpcml.spec import DataSpec


def source_bytes(spec: DataSpec) -> int | None:
    """The size on disk of a file source that can be read by row blocks; None for any other."""
    return None if spec.dropna else file_bytes(spec.source)


def file_bytes(source: str) -> int | None:
    """The size on disk of a file source (a file or a set of part files); None for a
    generated or built-in source."""
    if ":" in source.split("/")[0]:
        return None
    if is_file_set(source):
        files = set_files(source)
        return sum(p.stat().st_size for p in files) if files else None
    path = Path(source)
    if path.suffix.lower() in (".parquet", ".csv", ".npy") and path.is_file():
        return path.stat().st_size
    return None


def numeric_features(spec: DataSpec, features: list[str] | None) -> bool:
    """Whether the used features are all numbers, from the file's schema (or first rows): text
    features need their levels from every row, which only an in-memory load has."""
    reader = reader_for(spec)
    if reader is None:
        return False
    used = features or [c for c in reader.columns if c != spec.target]
    return all(c in reader.columns for c in used) and not reader.categorical(list(used))


class BlockReader:
    """Rows [start, stop) of the used columns as (X float64, target values or None)."""

    def __init__(self, spec: DataSpec, features: list[str] | None, needs_target: bool):
        self.source = spec.source
        reader = reader_for(spec)
        if reader is None:
            raise SpecError.one("data.source", spec.source, "cannot be read by row blocks (a .parquet file or "
                                "set, .csv or .npy file is needed)")
        self.reader, self.n = reader, reader.n
        target = spec.target if needs_target else None
        if needs_target and target is None:
            raise SpecError.one("data.target", None, "this model needs a target column")
        columns = list(reader.columns)
        self.features = [str(c) for c in (features or [c for c in columns if c != spec.target])]
        for name, value in [("model.features", f) for f in self.features] + ([("data.target", target)] if target else []):
            if value not in columns:
                raise SpecError.one(name, value, f"no such column (the data has {', '.join(map(str, columns[:12]))})")
        if reader.categorical(self.features):
            raise SpecError.one("model.features", self.features, "a fit over row blocks takes numeric features "
                                "only (encode text columns first)")
        self.target = target

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        used = self.features + ([self.target] if self.target else [])
        frame = self.reader.read(start, stop, used)
        X = to_matrix(frame, self.features)
        bad = np.isnan(X)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise SpecError.one("data.source", self.source, f"column {self.features[col]!r} is missing/NaN at row "
                                f"{start + row} (drop or impute such rows first)")
        y = None
        if self.target:
            y = _target_values(frame[self.target])
            if y.dtype.kind == "f" and np.isnan(y).any():
                raise SpecError.one("data.source", self.source, f"column {self.target!r} is missing/NaN at row "
                                    f"{start + int(np.flatnonzero(np.isnan(y))[0])} (drop or impute such rows first)")
        return X, y


def _target_values(column: pd.Series) -> np.ndarray:
    """Numbers as float64, anything else as text (labels compare as strings)."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return column.astype(str).to_numpy(dtype=str)


@functools.lru_cache(maxsize=4)
def _cached(spec_json: str, features_json: str, needs_target: bool) -> BlockReader:
    return BlockReader(DataSpec.model_validate_json(spec_json), json.loads(features_json), needs_target)


def block_reader(spec: DataSpec, features: list[str] | None, needs_target: bool) -> BlockReader:
    """The reader of ``spec``'s rows (cached per process: a worker reads the footers once)."""
    return _cached(spec.model_dump_json(), json.dumps(features), needs_target)


def block_dataset(spec: DataSpec, features: list[str] | None, needs_target: bool) -> Dataset:
    """The data as a worker of a fit over row blocks holds it: nothing but the reader."""
    reader = block_reader(spec, features, needs_target)
    return Dataset(X=LazyRows(reader.n, len(reader.features), lambda a, b: reader.read(a, b)[0]), y=None,
                   features=reader.features, target=reader.target, meta={"blocks": reader})
