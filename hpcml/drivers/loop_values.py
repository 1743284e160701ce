"""An R loop's values as the R package reads them back: one array per field, not one row per task.

A loop of the R package (``foreach`` on ``registerDoHpcml``, ``hpcml_lapply``, ``hpcml_boot``)
keeps each iteration's value serialized by R in its record's ``result``. R reads them back
as a handful of vectors (whether each task is ok, every value's bytes in one array and their
lengths, and the failed tasks' errors): a few conversions through reticulate for the whole
loop instead of a table whose every column is converted element by element.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from hpcml.drivers.in_memory import execute_in_memory
from hpcml.spec import load_job


def values_of(records: Iterable[dict[str, Any]], n: int) -> tuple:
    """``(ok, blob, lengths, failed, errors, tracebacks)`` of a loop of ``n`` tasks: ``ok`` (n
    booleans), the ok values' bytes in task order as one uint8 array with their ``lengths``,
    and the failed tasks' indices with their ``error`` and ``traceback`` (a task without a
    record is neither ok nor listed). A later record of a task replaces an earlier one."""
    latest = {int(r["task_index"]): r for r in records}
    ok = np.zeros(n, dtype=bool)
    blobs: list[bytes] = []
    failed: list[int] = []
    errors: list[str | None] = []
    tracebacks: list[str | None] = []
    for i in sorted(latest):
        record = latest[i]
        if record.get("status") == "ok":
            ok[i] = True
            value = record.get("result")
            blobs.append(value if isinstance(value, (bytes, bytearray)) else b"")
        else:
            failed.append(i)
            errors.append(_text(record.get("error")))
            tracebacks.append(_text(record.get("traceback")))
    blob = np.frombuffer(b"".join(blobs) or b"\0", dtype=np.uint8)
    lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
    return ok, blob, lengths.astype(np.int32), np.asarray(failed, dtype=np.int32), errors, tracebacks


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def run_loop(spec: dict[str, Any]) -> tuple:
    """Run a loop whose records stay in memory (no ``out``) and return ``values_of`` them."""
    job = load_job(spec)
    return values_of(execute_in_memory(job).ordered(), job.n_tasks)


def table_values(table, n: int) -> tuple:
    """``values_of`` a kept run's results table (a pandas frame, as ``hpcml.run`` returns it)."""
    columns = [c for c in ("task_index", "status", "result", "error", "traceback") if c in table.columns]
    return values_of(table[columns].to_dict("records"), n)
