"""Summary tables shared by the plans: which columns are outputs, JSON-safe numbers, mean/sd rows."""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported with the first table, not with the plans (a map builds none)
    import pandas as pd

from hpcml.rundir.columns import not_outputs


def json_number(x: Any) -> Any:
    pd = sys.modules.get("pandas")  # pd.NA exists only once pandas is loaded
    if pd is not None and x is pd.NA:  # an empty cell of an Arrow-backed column (a key some grid points lack)
        return None
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def output_columns(results: pd.DataFrame) -> list[str]:
    """The numeric columns that are outputs: not bookkeeping, nor a plan's own (cv's fold), nor
    a model parameter (``param_<name>``)."""
    from pandas.api.types import is_numeric_dtype  # loaded with ``results``; the plans import this module without it

    meta = not_outputs()
    return [c for c in results.columns
            if c not in meta and not c.startswith("param_") and is_numeric_dtype(results[c])]


def ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    if "status" not in results:
        return results
    ok = results["status"] == "ok"
    return results if ok.all() else results.loc[ok]  # no copy of a run whose every task is ok


def mean_sd_table(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return [{"output": c, "mean": json_number(frame[c].mean()),
             "sd": json_number(frame[c].std(ddof=1)) if len(frame) > 1 else None,
             "min": json_number(frame[c].min()), "max": json_number(frame[c].max())} for c in columns]
