"""A table -> a validated :class:`Dataset`, one column at a time.

The table is any :class:`Columns` (a Parquet file read column by column, a memory-mapped .npy
file, a pandas DataFrame): no step holds more than one column besides the design matrix
itself, which is written into the array ``allocate`` gives (in memory, or a file every worker
maps: see ``mapped.py``). Checks (missing values, types, finiteness) run per column, so they
copy nothing whole. The numbers are those of R's ``model.matrix`` as before: numeric columns
converted to float64 as pandas converts them, categorical ones as treatment dummies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a frame is built (a map's driver builds none)
    import pandas as pd

from hpcml.errors import SpecError
from hpcml.models.base import Dataset
from hpcml.spec import DataSpec

# A categorical feature with more levels than this is almost surely an identifier column.
MAX_LEVELS = 1000

# Numeric columns bound for a memory-mapped matrix are gathered up to this many bytes and
# written together: the matrix is row-major, so writing one column touches every page of the
# file once, and 2,000 columns written one by one would pass over a 12 GB file 2,000 times.
GATHER_BYTES = 128 << 20


class _Gather:
    """Numeric columns written into a mapped ``X`` in groups of adjacent columns."""

    def __init__(self, X: np.ndarray):
        self.X = X
        self.width = max(1, GATHER_BYTES // (8 * max(X.shape[0], 1))) if isinstance(X, np.memmap) else 1
        self.buf: np.ndarray | None = None
        self.start, self.count = 0, 0

    def add(self, j: int, column: np.ndarray) -> None:
        if self.width == 1:
            self.X[:, j] = column
            return
        if self.count and j != self.start + self.count:
            self.flush()
        if self.buf is None:
            self.buf = np.empty((self.X.shape[0], min(self.width, self.X.shape[1])))
        if not self.count:
            self.start = j
        self.buf[:, self.count] = column
        self.count += 1
        if self.count == self.buf.shape[1]:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.X[:, self.start : self.start + self.count] = self.buf[:, : self.count]
            self.count = 0


class Columns(Protocol):
    """A table read one column at a time."""

    names: list[str]
    n: int

    def column(self, name: str) -> pd.Series: ...

    def numeric(self, name: str) -> bool | None:
        """True where the stored type alone says numeric (so no read is needed to know it)."""


class FrameColumns:
    """The columns of a pandas DataFrame already in memory."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.names, self.n = frame, list(frame.columns), frame.shape[0]

    def column(self, name: str) -> pd.Series:
        return self.frame[name]

    def numeric(self, name: str) -> bool | None:
        return not is_categorical(self.frame[name])


class NoColumns:
    """The table of ``data.source: none`` (kinds that make their own data): one row, no
    columns, and no pandas frame to build for it."""

    names: list[str] = []
    n = 1

    def column(self, name: str) -> pd.Series:
        raise KeyError(name)

    def numeric(self, name: str) -> bool | None:
        raise KeyError(name)


def is_categorical(col: pd.Series) -> bool:
    """Strings, booleans, pandas categories (anything non-numeric): expanded to dummies."""
    import pandas as pd  # loaded with the first frame: a map's driver builds none

    return isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(col) \
        or not pd.api.types.is_numeric_dtype(col)


def factor_levels(col: pd.Series, name: str) -> list[Any] | None:
    """The levels of a categorical column in R's order, None for a numeric column.

    A pandas category keeps its declared categories (R's factor levels, unused ones included);
    booleans are FALSE, TRUE; strings are sorted (by code point: R sorts by the locale).
    """
    import pandas as pd  # loaded with the first frame: a map's driver builds none

    if not is_categorical(col):
        return None
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = list(col.cat.categories)
    elif pd.api.types.is_bool_dtype(col):
        levels = [False, True]
    else:
        text_in_numbers(col, "model.features", name)
        values = col.dropna().unique().tolist()
        kinds = {type(v) for v in values}
        if not kinds <= {str} and not kinds <= {bool}:
            bad = next(v for v in values if not isinstance(v, str))
            raise SpecError.one("model.features", name, f"column mixes text and other values ({bad!r}); "
                                "a categorical feature needs text, booleans or a pandas category")
        levels = sorted(values)
    if len(levels) < 2:
        raise SpecError.one("model.features", name, f"categorical column has {len(levels)} level(s); "
                            "treatment dummies need at least 2 (R: contrasts need 2 or more levels)")
    if len(levels) > MAX_LEVELS:
        raise SpecError.one("model.features", name, f"categorical column has {len(levels)} levels (more than "
                            f"{MAX_LEVELS}): an identifier? List the features to use in model.features")
    return levels


def text_in_numbers(col: pd.Series, field: str, name: str) -> None:
    """A text column whose cells are mostly numbers is a numeric column with a typo: one line
    naming the column, the first bad row (1 = the first data row) and its value, instead of
    treatment dummies for every distinct number."""
    import pandas as pd  # loaded with the first frame: a map's driver builds none

    present = col.notna().to_numpy()
    numbers = pd.to_numeric(col, errors="coerce").notna().to_numpy()
    bad = present & ~numbers
    if bad.any() and numbers.sum() > bad.sum():
        row = int(np.flatnonzero(bad)[0])
        raise SpecError.one(field, name, f"column is numeric but row {row + 1} holds {col.iloc[row]!r} "
                            f"({int(bad.sum())} non-numeric cell(s)); fix the cell (or empty it and set "
                            "data.dropna: true)")


def level_label(level: Any) -> str:
    """A level as R prints it in a dummy's name: TRUE/FALSE for booleans."""
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    return str(level)


def _check_names(cols: Columns, spec: DataSpec, features: list[str] | None) -> list[str]:
    target, available = spec.target, ", ".join(map(str, cols.names))
    if cols.n == 0:
        raise SpecError.one("data.source", spec.source, "the data has no rows")
    if target is not None and target not in cols.names:
        raise SpecError.one("data.target", target, f"unknown column; available: {available}")
    if features is None:
        features = [c for c in cols.names if c != target]
    unknown = [f for f in features if f not in cols.names]
    if unknown:
        raise SpecError.one("model.features", unknown[0], f"unknown column; available: {available}")
    if target is not None and target in features:
        raise SpecError.one("model.features", target, "the target cannot also be a feature")
    if len(set(features)) != len(features):
        raise SpecError.one("model.features", next(f for f in features if features.count(f) > 1), "listed twice")
    return list(features)


def _dummy_names(features: list[str], levels: dict[str, list[Any] | None]) -> list[str]:
    names: list[str] = []
    for col in features:
        lv = levels[col]
        names += [str(col)] if lv is None else [f"{col}{level_label(v)}" for v in lv[1:]]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None and any(levels.values()):
        raise SpecError.one("model.features", dup, "a dummy column of a categorical feature has the name of "
                            "another column; rename one of them")
    return names


def _missing(col: pd.Series) -> np.ndarray:
    return np.asarray(col.isna(), dtype=bool)


def _block(col: pd.Series, levels: list[Any] | None, keep: np.ndarray | None) -> np.ndarray:
    """One feature's columns of the design matrix, over the kept rows."""
    import pandas as pd  # loaded with the first frame: a map's driver builds none

    if levels is None:
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return values if keep is None else values[keep]
    codes = pd.Categorical(col, categories=levels).codes
    codes = codes if keep is None else codes[keep]
    return codes[:, None] == np.arange(1, len(levels))[None, :]


def _target(col: pd.Series, target: str) -> tuple[np.ndarray, list[Any] | None]:
    import pandas as pd  # loaded with the first frame: a map's driver builds none

    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        y = col.to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise SpecError.one("data.target", target, f"column has {int(np.sum(~np.isfinite(y)))} infinite values")
        return y, None
    codes, uniques = pd.factorize(col, sort=True)
    return codes.astype(np.float64), list(uniques)


def to_dataset(cols: Columns, spec: DataSpec, features: list[str] | None, needs_target: bool,
               meta: dict[str, Any] | None = None,
               allocate: Callable[[tuple[int, int]], np.ndarray] = np.empty) -> Dataset:
    """Validate ``cols`` and write its design matrix into ``allocate((rows, columns))``."""
    meta = dict(meta or {})
    features = _check_names(cols, spec, features)
    target = spec.target if spec.target is not None and needs_target else None
    used = features + ([target] if target is not None else [])
    # Levels of categorical features come from every row of the data, before any row is
    # dropped, so every replicate, fold and shard has the same columns. With dropna, a first
    # pass finds the rows to keep.
    levels: dict[str, list[Any] | None] = {}
    keep: np.ndarray | None = None
    for name in used:
        reads = (name in features and not cols.numeric(name)) or spec.dropna
        col = cols.column(name) if reads else None
        if name in features:
            levels[name] = factor_levels(col, name) if col is not None else None
        if spec.dropna:
            gone = _missing(col)
            keep = ~gone if keep is None else keep & ~gone
        del col
    if keep is not None and keep.all():
        keep = None
    columns = _dummy_names(features, levels)
    n_rows = cols.n if keep is None else int(keep.sum())
    X = allocate((n_rows, len(columns)))
    gather = _Gather(X)
    missing: dict[str, int] = {}
    infinite: str | None = None
    j = 0
    for name in features:
        col = cols.column(name)
        if not spec.dropna:
            missing[name] = int(_missing(col).sum())
        width = 1 if levels[name] is None else len(levels[name]) - 1
        if not any(missing.values()):  # a matrix that will be refused is not written further
            block = _block(col, levels[name], keep)
            if levels[name] is None:
                gather.add(j, block)
                if infinite is None and not np.isfinite(block).all():
                    infinite = str(name)
            else:
                X[:, j : j + width] = block
            del block
        j += width
        del col
    gather.flush()
    del gather
    y, classes = None, None
    if target is not None:
        import pandas as pd  # a target column is a pandas Series: pandas is loaded already

        col = cols.column(target)
        if is_categorical(col) and not pd.api.types.is_bool_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
            text_in_numbers(col, "data.target", target)  # rows numbered as in the file: before dropna
        if not spec.dropna:
            missing[target] = int(_missing(col).sum())
        if keep is not None:
            col = col[keep]
    if any(missing.values()):
        worst = max(missing, key=lambda c: missing[c])  # the first of the most missing, as pandas' idxmax
        raise SpecError.one("data.source", spec.source, f"column {worst!r} has {missing[worst]} missing/NaN values "
                            "(set data.dropna: true to drop those rows)")
    if infinite is not None:
        raise SpecError.one("model.features", infinite, "column has infinite values")
    if "scale" in meta:
        X /= meta.pop("scale")
    if any(lv is not None for lv in levels.values()):
        meta["factors"] = {c: [level_label(v) for v in lv] for c, lv in levels.items() if lv is not None}
    if target is not None:
        y, classes = _target(col, target)
    return Dataset(X=X, y=y, features=columns, target=spec.target, image_shape=meta.pop("image_shape", None),
                   classes=classes, meta=meta)


def frame_to_dataset(frame: pd.DataFrame, spec: DataSpec, features: list[str] | None, needs_target: bool,
                     meta: dict[str, Any] | None = None) -> Dataset:
    """A DataFrame in memory -> a validated Dataset in memory."""
    return to_dataset(FrameColumns(frame), spec, features, needs_target, meta)
