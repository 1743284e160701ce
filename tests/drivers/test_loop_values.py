"""An R loop's values as the R package reads them back (hpcml.drivers.loop_values)."""
import numpy as np
import pandas as pd

from hpcml.drivers.loop_values import table_values, values_of


def _records():
    return [
        {"task_index": 2, "status": "ok", "result": b"ccc"},
        {"task_index": 0, "status": "ok", "result": b"a"},
        {"task_index": 1, "status": "failed", "error": "RError: boom", "traceback": "tb"},
        {"task_index": 3, "status": "failed", "error": "first try", "traceback": None},
        {"task_index": 3, "status": "ok", "result": b""},  # a later record replaces an earlier one
    ]


def test_values_come_back_in_task_order_with_the_failures_listed():
    ok, blob, lengths, failed, errors, tracebacks = values_of(_records(), 5)
    assert ok.tolist() == [True, False, True, True, False]  # task 4 has no record: neither ok nor listed
    assert bytes(blob) == b"accc"
    assert lengths.tolist() == [1, 3, 0]
    assert failed.tolist() == [1]
    assert errors == ["RError: boom"] and tracebacks == ["tb"]


def test_no_ok_task_still_gives_an_array():
    ok, blob, lengths, failed, errors, _ = values_of([{"task_index": 0, "status": "failed", "error": None}], 1)
    assert ok.tolist() == [False] and lengths.size == 0 and blob.dtype == np.uint8
    assert failed.tolist() == [0] and errors == [None]


def test_a_kept_runs_table_gives_the_same_values():
    table = pd.DataFrame(_records()[:3])  # a results table: one row per task, NaN where a column is empty
    got, want = table_values(table, 3), values_of(_records()[:3], 3)
    for a, b in zip(got, want):
        assert (a.tolist() if isinstance(a, np.ndarray) else a) == (b.tolist() if isinstance(b, np.ndarray) else b)
