"""Per-shard reading for the ``shards`` plan: a task reads only its own rows of a data file.

For a Parquet, CSV or .npy source (or a set of Parquet files: a directory, a glob) the job's
data is a lazy table: the row count comes from file metadata and rows are read only when a
task slices its shard (Parquet: the files and row groups that overlap the shard; .npy: a
memory map; CSV: skip to the first row, read ``nrows``).
The target column alone is read in full, so labels are encoded exactly as a full load
encodes them. Rows go through the same pandas -> float64 conversion as a full load (``validate.py``), so a
shard's numbers are bit-for-bit those of slicing the fully loaded data.

Everything else (other plans, other sources, ``dropna``) uses the ordinary full load.
Validation (missing columns, NaN, non-numeric features) still happens once on the driver.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a frame is built (a map's driver builds none)
    import pandas as pd

from hpcml.data.parts import ParquetRows, is_file_set, parquet_parts
from hpcml.data.sources import array_columns, frame_to_dataset, is_categorical
from hpcml.models.base import Dataset
from hpcml.spec import DataSpec

SUFFIXES = (".parquet", ".csv", ".npy")


class LazyRows:
    """A read-on-slice stand-in for ``Dataset.X``: ``rows[a:b]`` reads rows a..b-1 from the file."""

    def __init__(self, n_rows: int, n_cols: int, read: Callable[[int, int], np.ndarray]):
        self.shape = (n_rows, n_cols)
        self._read = read

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("lazily read data supports contiguous row slices only")
        start, stop, _ = key.indices(self.shape[0])
        return self._read(start, max(start, stop))


def to_matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    # The same conversion as data.frame_to_dataset, row block by row block.
    return np.ascontiguousarray(frame[features].to_numpy(dtype=np.float64))


class _Parquet(ParquetRows):
    """One Parquet file, or a set of them (a directory, a glob): only a shard's row groups are read."""

    def __init__(self, path: Path):
        super().__init__(parquet_parts(str(path)) if is_file_set(str(path)) else [path])


class _Csv:
    def __init__(self, path: Path):
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        self.path = path
        self.columns = list(pd.read_csv(path, nrows=0).columns)
        self.n = _count_records(path)

    def read(self, start: int, stop: int, columns: list[str]) -> pd.DataFrame:
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        return pd.read_csv(self.path, skiprows=range(1, start + 1), nrows=stop - start, usecols=columns)

    def column(self, name: str) -> pd.DataFrame:
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        return pd.read_csv(self.path, usecols=[name])

    def categorical(self, columns: list[str]) -> bool:
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        sample = pd.read_csv(self.path, nrows=1000, usecols=columns)
        return any(is_categorical(sample[c]) for c in columns)


class _Npy:
    def __init__(self, path: Path):
        self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        if self.array.ndim != 2:
            raise ValueError("not 2-D")  # the full load reports it properly
        self.n = self.array.shape[0]
        self.columns = array_columns(self.array.shape[1])

    def read(self, start: int, stop: int, columns: list[str]) -> pd.DataFrame:
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        frame = pd.DataFrame(np.asarray(self.array[start:stop]), columns=self.columns)
        return frame[columns]

    def column(self, name: str) -> pd.DataFrame:
        import pandas as pd  # loaded with the first frame: a map's driver builds none

        return pd.DataFrame({name: np.asarray(self.array[:, self.columns.index(name)])})

    def categorical(self, columns: list[str]) -> bool:
        return False  # a .npy array is numbers


def _count_records(path: Path) -> int:
    """Data lines of a CSV (one record per line, header first), counted without parsing."""
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(0, lines - 1)


_READERS = {".parquet": _Parquet, ".csv": _Csv, ".npy": _Npy}


def reader_for(spec: DataSpec):
    if spec.dropna or ":" in spec.source.split("/")[0]:
        return None
    path = Path(spec.source)
    kind = ".parquet" if is_file_set(spec.source) else path.suffix.lower()
    if kind not in SUFFIXES or not (path.is_file() or kind == ".parquet"):
        return None
    try:
        return _READERS[kind](path)
    except Exception:
        return None  # let the full load say what is wrong


@functools.lru_cache(maxsize=4)
def _lazy_cached(spec_json: str, features_json: str, needs_target: bool) -> Dataset | None:
    spec = DataSpec.model_validate_json(spec_json)
    reader = reader_for(spec)
    if reader is None:
        return None
    features = json.loads(features_json)
    target = spec.target
    if features is None:
        features = [c for c in reader.columns if c != target]
    if any(f not in reader.columns for f in features) or (target is not None and target not in reader.columns):
        return None
    # Categorical features need their levels from every row: such data takes the full load.
    if reader.categorical(list(features)):
        return None
    y, classes = None, None
    if target is not None and needs_target:
        # One column in full, encoded by the same code as a full load (labels sorted the same).
        labels = frame_to_dataset(reader.column(target), spec, [], True)
        y, classes = labels.y, labels.classes
    used = list(features)

    def read(start: int, stop: int) -> np.ndarray:
        return to_matrix(reader.read(start, stop, used), used)

    return Dataset(X=LazyRows(reader.n, len(features), read), y=y, features=[str(f) for f in features],
                   target=target, classes=classes)


def lazy_rows(spec: DataSpec, features: list[str] | None, needs_target: bool) -> Dataset | None:
    """A lazy dataset of the file behind ``spec`` (cached per process), or None where only a
    full load will do (other sources, ``dropna``, columns not found: the full load says why)."""
    return _lazy_cached(spec.model_dump_json(), json.dumps(features), needs_target)
