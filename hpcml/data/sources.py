"""Data sources -> :class:`Dataset`, loaded once per process and cached.

Workers receive only the (small) data spec and load the data themselves, so a task never
carries the data with it. Every problem is a :class:`SpecError` naming field and value.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcml.errors import SpecError
from hpcml.models.base import Dataset
from hpcml.spec import DataSpec

SKLEARN_SETS = ("diabetes", "iris", "breast_cancer", "wine", "digits", "linnerud")
SYNTHETIC = ("regression", "classification", "blobs", "lowrank")


def array_columns(width: int) -> list[str]:
    """Column names of a bare 2-D array (a .npy file, an in-memory array): x0, x1, ..."""
    return [f"x{j}" for j in range(width)]


def _sklearn_frame(name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    import sklearn.datasets as skd

    if name not in SKLEARN_SETS:
        raise SpecError.one("data.source", f"sklearn:{name}", f"unknown sklearn data set; choose one of {', '.join(SKLEARN_SETS)}")
    bunch = getattr(skd, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    meta: dict[str, Any] = {}
    if name == "digits":
        meta["image_shape"] = (1, 8, 8)
        meta["scale"] = 16.0  # pixel values 0..16 -> [0, 1]
    return frame, meta


def _synthetic_frame(kind: str, options: dict[str, Any]) -> pd.DataFrame:
    import sklearn.datasets as skd

    opts = dict(options)
    seed = opts.pop("seed", 0)
    n = opts.pop("n_samples", 1000)
    p = opts.pop("n_features", 10)
    for field, value in (("n_samples", n), ("n_features", p)):
        if not isinstance(value, int) or value < 1:
            raise SpecError.one(f"data.options.{field}", value, "must be a positive integer")
    try:
        if kind == "regression":
            X, y = skd.make_regression(n_samples=n, n_features=p, random_state=seed, noise=opts.pop("noise", 1.0), **opts)
        elif kind == "classification":
            X, y = skd.make_classification(n_samples=n, n_features=p, random_state=seed, **opts)
        elif kind == "blobs":
            X, y = skd.make_blobs(n_samples=n, n_features=p, random_state=seed, **opts)
        elif kind == "lowrank":
            X = skd.make_low_rank_matrix(n_samples=n, n_features=p, random_state=seed, **opts)
            y = np.zeros(n)
        else:
            raise SpecError.one("data.source", f"synthetic:{kind}", f"unknown generator; choose one of {', '.join(SYNTHETIC)}")
    except TypeError as err:
        raise SpecError.one("data.options", options, str(err)) from None
    frame = pd.DataFrame(X, columns=array_columns(X.shape[1]))
    frame["y"] = y
    return frame


def _file_frame(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise SpecError.one("data.source", str(path), "file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2:
                raise SpecError.one("data.source", str(path), f"a .npy source must be 2-D, found shape {arr.shape}")
            return pd.DataFrame(arr, columns=array_columns(arr.shape[1]))
    except SpecError:
        raise
    except Exception as err:  # a corrupt file: say which and why, in one line
        raise SpecError.one("data.source", str(path), f"cannot read: {type(err).__name__}: {err}".splitlines()[0]) from None
    raise SpecError.one("data.source", str(path), "unsupported file type; use .csv, .parquet or .npy")


def read_frame(spec: DataSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    source = spec.source
    if source == "none":  # kinds that make their own data (rscript, bayesm): one row, no columns
        return pd.DataFrame(index=range(1)), {}
    if source.startswith("sklearn:"):
        return _sklearn_frame(source.split(":", 1)[1])
    if source.startswith("synthetic:"):
        return _synthetic_frame(source.split(":", 1)[1], spec.options), {}
    return _file_frame(Path(source)), {}


# A categorical feature with more levels than this is almost surely an identifier column.
MAX_LEVELS = 1000


def is_categorical(col: pd.Series) -> bool:
    """Strings, booleans, pandas categories (anything non-numeric): expanded to dummies."""
    return isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(col) \
        or not pd.api.types.is_numeric_dtype(col)


def factor_levels(col: pd.Series, name: str) -> list[Any] | None:
    """The levels of a categorical column in R's order, None for a numeric column.

    A pandas category keeps its declared categories (R's factor levels, unused ones included);
    booleans are FALSE, TRUE; strings are sorted (by code point: R sorts by the locale).
    """
    if not is_categorical(col):
        return None
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = list(col.cat.categories)
    elif pd.api.types.is_bool_dtype(col):
        levels = [False, True]
    else:
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


def level_label(level: Any) -> str:
    """A level as R prints it in a dummy's name: TRUE/FALSE for booleans."""
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    return str(level)


def design_matrix(frame: pd.DataFrame, features: list[str], levels: dict[str, list[Any] | None]
                  ) -> tuple[np.ndarray, list[str]]:
    """R's ``model.matrix`` without the intercept column: numeric columns as they are, each
    categorical one as treatment dummies (first level the reference), named column + level
    (``afamyes``, ``singleTRUE``)."""
    blocks, names = [], []
    for col in features:
        lv = levels[col]
        if lv is None:
            blocks.append(frame[col].to_numpy(dtype=np.float64)[:, None])
            names.append(str(col))
            continue
        codes = pd.Categorical(frame[col], categories=lv).codes
        blocks.append((codes[:, None] == np.arange(1, len(lv))[None, :]).astype(np.float64))
        names += [f"{col}{level_label(v)}" for v in lv[1:]]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SpecError.one("model.features", dup, "a dummy column of a categorical feature has the name of "
                            "another column; rename one of them")
    return np.ascontiguousarray(np.hstack(blocks)), names


def frame_to_dataset(frame: pd.DataFrame, spec: DataSpec, features: list[str] | None, needs_target: bool,
                     meta: dict[str, Any] | None = None) -> Dataset:
    meta = dict(meta or {})
    if frame.shape[0] == 0:
        raise SpecError.one("data.source", spec.source, "the data has no rows")
    target = spec.target
    if target is not None and target not in frame.columns:
        raise SpecError.one("data.target", target, f"unknown column; available: {', '.join(map(str, frame.columns))}")
    if features is None:
        features = [c for c in frame.columns if c != target]
    unknown = [f for f in features if f not in frame.columns]
    if unknown:
        raise SpecError.one("model.features", unknown[0], f"unknown column; available: {', '.join(map(str, frame.columns))}")
    if target is not None and target in features:
        raise SpecError.one("model.features", target, "the target cannot also be a feature")
    if len(set(features)) != len(features):
        dup = next(f for f in features if features.count(f) > 1)
        raise SpecError.one("model.features", dup, "listed twice")
    # Levels of categorical features come from every row of the data, before any row is
    # dropped, so every replicate, fold and shard has the same columns.
    levels = {col: factor_levels(frame[col], col) for col in features}
    used = features + ([target] if target is not None and needs_target else [])
    nan_rows = frame[used].isna()
    if nan_rows.to_numpy().any():
        if spec.dropna:
            frame = frame.loc[~nan_rows.any(axis=1)]
        else:
            col = nan_rows.sum().idxmax()
            count = int(nan_rows[col].sum())
            raise SpecError.one("data.source", spec.source, f"column {col!r} has {count} missing/NaN values (set data.dropna: true to drop those rows)")
    if any(lv is not None for lv in levels.values()):
        X, columns = design_matrix(frame, features, levels)
        meta["factors"] = {col: [level_label(v) for v in lv] for col, lv in levels.items() if lv is not None}
    else:
        X, columns = np.ascontiguousarray(frame[features].to_numpy(dtype=np.float64)), list(features)
    if not np.isfinite(X).all():
        bad = columns[int(np.nonzero(~np.isfinite(X).all(axis=0))[0][0])]
        raise SpecError.one("model.features", bad, "column has infinite values")
    if "scale" in meta:
        X = X / meta.pop("scale")
    y, classes = None, None
    if target is not None and needs_target:
        col = frame[target]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            y = col.to_numpy(dtype=np.float64)
            if not np.isfinite(y).all():
                raise SpecError.one("data.target", target, f"column has {int(np.sum(~np.isfinite(y)))} infinite values")
        else:
            codes, uniques = pd.factorize(col, sort=True)
            y, classes = codes.astype(np.float64), list(uniques)
    return Dataset(X=X, y=y, features=[str(f) for f in columns], target=target,
                   image_shape=meta.pop("image_shape", None), classes=classes, meta=meta)


@functools.lru_cache(maxsize=4)
def _load_cached(spec_json: str, features_json: str, needs_target: bool) -> Dataset:
    spec = DataSpec.model_validate_json(spec_json)
    features = json.loads(features_json)
    _LOADS[spec_json] = _LOADS.get(spec_json, 0) + 1
    if spec.source.startswith("idx:"):
        from hpcml.data.images import load_image_source

        data = load_image_source(spec.source, spec.options)
    else:
        frame, meta = read_frame(spec)
        data = frame_to_dataset(frame, spec, features, needs_target, meta)
    # How often this process has loaded this source: a worker kept for several jobs
    # (warm workers) still loads each job's data once.
    data.meta["loads"] = _LOADS[spec_json]
    return data


_LOADS: dict[str, int] = {}


def full_load(spec: DataSpec, features: list[str] | None, needs_target: bool) -> Dataset:
    """The whole data set in memory, validated, cached per process."""
    return _load_cached(spec.model_dump_json(), json.dumps(features), needs_target)


def load_stats() -> tuple[int, int]:
    """(full loads, cache reuses) of this process: proof that a worker loads its data once."""
    info = _load_cached.cache_info()
    return info.misses, info.hits
