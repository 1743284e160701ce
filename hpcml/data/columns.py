"""Data files as tables read one column at a time (see ``validate.py``).

Parquet: each column is read on its own (every row group's chunk of that column); .npy: a
memory map whose columns are copied one at a time; CSV: streamed by pyarrow, one block of rows
at a time, into a temporary Parquet file read as above (``csv_columns``). No full pandas copy of
the data is ever made, and each column goes through the same pandas conversion a full read gives.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a frame is built (a map's driver builds none)
    import pandas as pd

from hpcml.data.validate import FrameColumns, is_categorical


def array_columns(width: int) -> list[str]:
    """Column names of a bare 2-D array (a .npy file, an in-memory array): x0, x1, ..."""
    return [f"x{j}" for j in range(width)]


class ParquetColumns:
    def __init__(self, source):  # a path, or an open file
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(source)
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
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        return pd.Series(np.array(self.array[:, self.names.index(name)]), name=name)

    def numeric(self, name: str) -> bool | None:
        return self.array.dtype.kind in "iuf"


# pandas.read_csv's missing-value spellings (its default na_values), in text columns too.
_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
       "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _widened(kind) -> "object":
    """The next type to try for a column whose later rows do not fit the type its first block
    suggested: int -> float (pandas' int column with a fractional value), else text."""
    import pyarrow as pa

    if pa.types.is_null(kind) or pa.types.is_integer(kind):
        return pa.float64() if pa.types.is_integer(kind) else pa.int64()
    return pa.string()


def csv_columns(path: Path, block_bytes: int = 1 << 20):
    """A CSV file, streamed block by block (``pyarrow.csv.open_csv``) into a temporary Parquet
    file whose columns are then read one at a time. Column types are inferred from the first
    block; a column whose later values do not fit is widened (empty -> int -> float -> text)
    and the file streamed again."""
    import re
    import tempfile

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    types: dict[str, object] = {}
    while True:
        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block_bytes),
                               convert_options=pcsv.ConvertOptions(column_types=types, null_values=_NA,
                                                                   strings_can_be_null=True))
        # Dates, times and decimals pandas.read_csv never infers: such a column is text, as there.
        text = {f.name: pa.string() for f in reader.schema
                if f.name not in types and (pa.types.is_temporal(f.type) or pa.types.is_decimal(f.type))}
        if text:
            types.update(text)
            continue
        fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="hpcml-csv-")
        os.close(fd)
        try:
            with pq.ParquetWriter(tmp, reader.schema) as out:
                for batch in reader:
                    out.write_batch(batch)
            handle = open(tmp, "rb")
        except pa.ArrowInvalid as err:
            found = re.search(r"column #(\d+)", str(err))
            if found is None:
                raise
            field = reader.schema.field(int(found.group(1)))
            if pa.types.is_string(field.type):
                raise
            types[field.name] = _widened(field.type)
            continue
        finally:
            os.unlink(tmp)  # the open handle keeps the file until its columns are read
        return ParquetColumns(handle)


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
        return csv_columns(path)
    return None


__all__ = ["array_columns", "file_columns", "FrameColumns", "is_categorical"]
