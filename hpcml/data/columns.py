"""Data files as tables read one column at a time (see ``validate.py``).

Parquet: each column is read on its own (every row group's chunk of that column); .npy: a
memory map whose columns are copied one at a time. A CSV file has no columnar layout, so it is
parsed whole by pandas as before. Either way no full pandas copy of a Parquet or .npy file is
ever made, and each column goes through the same pandas conversion a full read gives.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hpcml.data.validate import FrameColumns, is_categorical


def array_columns(width: int) -> list[str]:
    """Column names of a bare 2-D array (a .npy file, an in-memory array): x0, x1, ..."""
    return [f"x{j}" for j in range(width)]


class ParquetColumns:
    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        pandas_meta = self.file.schema_arrow.pandas_metadata or {}
        index_cols = {c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)}
        self.names = [c for c in self.file.schema_arrow.names if c not in index_cols]
        self.n = self.file.metadata.num_rows

    def column(self, name: str) -> pd.Series:
        # With the pandas metadata, as pandas.read_parquet reads it (categories, extension types).
        table = self.file.read(columns=[name], use_pandas_metadata=True)
        return table.to_pandas()[name].reset_index(drop=True)

    def numeric(self, name: str) -> bool | None:
        import pyarrow as pa

        kind = self.file.schema_arrow.field(name).type
        return True if pa.types.is_integer(kind) or pa.types.is_floating(kind) else None


class NpyColumns:
    def __init__(self, path: Path):
        self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        if self.array.ndim != 2:
            raise ValueError(f"a .npy source must be 2-D, found shape {self.array.shape}")
        self.n = self.array.shape[0]
        self.names = array_columns(self.array.shape[1])

    def column(self, name: str) -> pd.Series:
        return pd.Series(np.array(self.array[:, self.names.index(name)]), name=name)

    def numeric(self, name: str) -> bool | None:
        return self.array.dtype.kind in "iuf"


def _unique_header(path: Path) -> None:
    """pandas renames a repeated CSV column (``a``, ``a.1``): say so instead of guessing."""
    import csv

    with open(path, newline="") as fh:
        header = next(csv.reader(fh), [])
    seen = set()
    for name in header:
        if name in seen:
            raise ValueError(f"column {name!r} appears twice in the header")
        seen.add(name)


def file_columns(path: Path):
    """The columns of a data file (raises on a file that cannot be read; the caller says why)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return ParquetColumns(path)
    if suffix == ".npy":
        return NpyColumns(path)
    if suffix == ".csv":
        _unique_header(path)
        return FrameColumns(pd.read_csv(path))
    return None


__all__ = ["array_columns", "file_columns", "FrameColumns", "is_categorical"]
