"""A data set of many Parquet files: a directory (what Spark writes) or a glob (``big/*.parquet``).

The files are one table, their rows in the order of their sorted paths, read with
``pyarrow.dataset`` one column at a time (the same pandas conversion as a single file), so a
set and the one file holding the same rows give the same numbers. Files and directories whose
names start with ``_`` or ``.`` (Spark's ``_SUCCESS``, ``.crc`` checksums) are not data.
Partition directories (``key=value/``) are read as files: their keys are not columns.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a frame is built (a map's driver builds none)
    import pandas as pd

from hpcml.errors import SpecError


def is_file_set(source: str) -> bool:
    """Whether ``source`` names many files (a directory, or a pattern with ``*``, ``?``, ``[``)."""
    if ":" in source.split("/")[0]:
        return False  # sklearn:, synthetic:, idx:, hdfs://
    return Path(source).is_dir() or glob.has_magic(source)


def _data_file(path: Path, root: Path | None) -> bool:
    parts = path.relative_to(root).parts if root is not None else (path.name,)
    return path.is_file() and not any(p.startswith(("_", ".")) for p in parts)


def set_files(source: str, suffixes: tuple[str, ...] = (".parquet",)) -> list[Path]:
    """The data files of a directory or glob, sorted by path (empty when none match)."""
    path = Path(source)
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.suffix.lower() in suffixes and _data_file(p, path))
    else:
        found = (Path(p) for p in glob.glob(source) if _data_file(Path(p), None))
    return sorted(found, key=str)


def parquet_parts(source: str) -> list[Path]:
    """The Parquet files of a set, or one line saying why there are none to read."""
    files = set_files(source)
    if not files:
        where = "in this directory" if Path(source).is_dir() else "match this pattern"
        raise SpecError.one("data.source", source, f"no Parquet files {where}")
    other = next((p for p in files if p.suffix.lower() != ".parquet"), None)
    if other is not None:
        raise SpecError.one("data.source", source, f"{other} is not a .parquet file; a set of files must be Parquet")
    return files


def _index_columns(schema) -> set[str]:
    pandas_meta = schema.pandas_metadata or {}
    return {c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)}


class ParquetSetColumns:
    """The columns of a set of Parquet files, read one at a time across every file."""

    def __init__(self, files: list[Path]):
        import pyarrow.dataset as ds

        self.dataset = ds.dataset([str(p) for p in files], format="parquet")
        schema = self.dataset.schema
        index_cols = _index_columns(schema)
        self.names = [c for c in schema.names if c not in index_cols]
        self.n = self.dataset.count_rows()

    def column(self, name: str) -> pd.Series:
        # Through the set's pandas metadata (the first file's), as pandas reads one file.
        table = self.dataset.to_table(columns=[name])
        return table.to_pandas()[name].reset_index(drop=True)

    def numeric(self, name: str) -> bool | None:
        import pyarrow as pa

        kind = self.dataset.schema.field(name).type
        return True if pa.types.is_integer(kind) or pa.types.is_floating(kind) else None


def row_groups_for(row_counts: list[int], start: int, stop: int) -> tuple[list[int], int]:
    """Row groups (of rows ``row_counts`` each, in order) overlapping rows [start, stop), and the
    first row of the first one."""
    groups, first, offset = [], None, 0
    for g, count in enumerate(row_counts):
        if offset < stop and offset + count > start:
            groups.append(g)
            first = offset if first is None else first
        offset += count
    return groups, (start if first is None else first)


class ParquetRows:
    """Rows of one Parquet file or a set, read by row group: ``read(start, stop)`` opens only the
    files, and reads only the row groups, that hold rows [start, stop). The row counts come
    from the files' footers."""

    def __init__(self, files: list[Path]):
        import pyarrow.parquet as pq

        self.files = list(files)
        self.pieces: list[tuple[int, int]] = []  # (file, row group) in row order
        self.counts: list[int] = []
        for f, path in enumerate(self.files):
            meta = pq.read_metadata(path)
            for g in range(meta.num_row_groups):
                self.pieces.append((f, g))
                self.counts.append(meta.row_group(g).num_rows)
        self.n = sum(self.counts)
        self.schema = pq.read_schema(self.files[0])
        index_cols = _index_columns(self.schema)
        self.columns = [c for c in self.schema.names if c not in index_cols]

    def read(self, start: int, stop: int, columns: list[str]) -> pd.DataFrame:
        """Rows [start, stop) of ``columns``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pieces, first = row_groups_for(self.counts, start, stop)
        by_file: dict[int, list[int]] = {}
        for k in pieces:
            f, g = self.pieces[k]
            by_file.setdefault(f, []).append(g)
        tables = [pq.ParquetFile(self.files[f]).read_row_groups(groups, columns=columns, use_pandas_metadata=False)
                  for f, groups in sorted(by_file.items())]
        table = pa.concat_tables(tables) if tables else self.schema.empty_table().select(columns)
        return table.slice(start - first, stop - start).to_pandas()

    def column(self, name: str) -> pd.DataFrame:
        import pandas as pd  # loaded with the first frame: a map's driver builds none
        import pyarrow.parquet as pq

        return pd.concat([pq.read_table(p, columns=[name], use_pandas_metadata=False).to_pandas() for p in self.files],
                         ignore_index=True)

    def categorical(self, columns: list[str]) -> bool:
        """Whether any of the columns is a factor (text, bool, dictionary), from the schema alone."""
        import pyarrow as pa

        return any(not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))
                   for t in (self.schema.field(c).type for c in columns))
