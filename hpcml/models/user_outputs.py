"""What a user's function returned -> one task record: a number (column ``value``), a mapping
of numbers, a pandas Series or a 1-D array (one column each, up to ``MAX_COLUMNS``; a longer
one is saved as the task's ``value.npy`` artifact and ``value`` holds its path); arrays and
frames inside a mapping are saved as the task's artifacts and the record holds their path."""
from __future__ import annotations

import math
import numbers
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

# A longer vector is an array artifact, not columns: 200,000 columns cost minutes and GBs in
# Parquet and pandas, and no summary reads them one by one.
MAX_COLUMNS = 256


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.number):
        return float(value)
    return None


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    text = type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")
    return text


def _save_artifact(name: str, value: Any, scratch: Path | None) -> str | None:
    import pandas as pd

    if scratch is None:
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    if isinstance(value, pd.DataFrame):
        path = scratch / f"{safe}.parquet"
        value.to_parquet(path)
    else:
        path = scratch / f"{safe}.npy"
        np.save(path, np.asarray(value), allow_pickle=False)
    return str(path)


def to_record(value: Any, scratch_factory: Callable[[], Path | None]) -> dict[str, Any]:
    """What the function returned, as a flat record (raises TypeError for anything else)."""
    import pandas as pd

    number = _number(value)
    if number is not None:
        return {"value": number}
    if isinstance(value, pd.Series) and len(value) > MAX_COLUMNS:
        value = value.to_numpy()
    if isinstance(value, pd.Series):
        value = {str(k): v for k, v in value.items()}
    elif isinstance(value, (np.ndarray, list, tuple)) and np.ndim(value) == 1:
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise TypeError(f"the function returned a 1-D {type(value).__name__} of {arr.dtype}, not of numbers")
        if arr.size > MAX_COLUMNS:
            path = _save_artifact("value", arr, scratch_factory())
            if path is None:
                raise TypeError(f"the function returned {arr.size} numbers, more than the {MAX_COLUMNS} a record "
                                "holds as columns, and this run has no run directory to save them as an array")
            return {"value": path}
        return {f"value_{i}": float(v) for i, v in enumerate(arr)}
    if isinstance(value, dict):
        if not value:
            raise TypeError("the function returned an empty mapping")
        record: dict[str, Any] = {}
        for key, item in value.items():
            key = str(key)
            number = _number(item)
            if number is not None:
                record[key] = number
            elif isinstance(item, (np.ndarray, pd.DataFrame, pd.Series)):
                if isinstance(item, pd.Series):
                    item = item.to_frame()
                if isinstance(item, np.ndarray) and not (np.issubdtype(item.dtype, np.number) or item.dtype == bool):
                    raise TypeError(f"output {key!r} is an array of {item.dtype}; arrays must hold numbers")
                record[key] = _save_artifact(key, item, scratch_factory())
            elif item is None:
                record[key] = math.nan
            else:
                raise TypeError(f"output {key!r} is a {_describe(item)}; expected a number, an array or a frame")
        return record
    raise TypeError(f"the function returned a {_describe(value)}; expected a number, a mapping of numbers, "
                    "a pandas Series or a 1-D array")


def pickled(value: Any) -> bytes:
    """Any value as bytes (``hpcml.map``'s results), by value where pickle alone cannot."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
