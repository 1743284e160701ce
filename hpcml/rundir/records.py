"""A run's records as Arrow columns: the latest record of each task, which tasks have an ``ok``
record, and how many tasks are done, failed or missing.

A run may hold millions of tasks, so nothing here builds a Python object per task: records
stay in Arrow buffers and NumPy arrays until a caller asks for a pandas frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hpcml.rundir.columns import BOOKKEEPING, FAILURE_ONLY, REQUIRED

# Schema metadata of results.parquet: how many chunk files it was consolidated from.
CHUNK_COUNT_KEY = b"hpcml.chunk_files"


def read_chunk_table(path: Path, columns: Iterable[str] | None = None) -> pa.Table:
    """One chunk file (only ``columns`` it has, if given); raises if it is not a chunk of records."""
    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    columns = None if columns is None else list(columns)
    wanted = None if columns is None else [c for c in columns if c in names]
    if not set(REQUIRED) <= set(names) and not (wanted and len(wanted) == len(columns)):
        raise ValueError(f"not a chunk of records (columns: {', '.join(sorted(names)[:5])})")
    table = f.read(columns=wanted, use_threads=False)
    if "task_index" in table.column_names and table.schema.field("task_index").type != pa.int64():
        table = table.set_column(table.column_names.index("task_index"), "task_index",
                                 table["task_index"].cast(pa.int64()))
    return table


def concat(tables: list[pa.Table]) -> pa.Table:
    """Chunk tables with different columns (a failure record has no outputs) as one table;
    an integer output next to a float one becomes float, as pandas would make it."""
    return pa.concat_tables(tables, promote_options="permissive")


def empty() -> pa.Table:
    return pa.table({"task_id": pa.array([], pa.string()), "task_index": pa.array([], pa.int64()),
                     "status": pa.array([], pa.string()), "attempt": pa.array([], pa.int64())})


def latest(table: pa.Table, file_rows: np.ndarray, file_times: np.ndarray) -> pa.Table:
    """One row per task, in task order: an ``ok`` record if any exists, else its latest failure
    (``file_rows``, ``file_times``: the row count and modification time of each file the rows
    came from, in order; the later file wins)."""
    if table.num_rows == 0:
        return table
    index = table["task_index"].to_numpy()
    ok = pc.equal(table["status"], "ok").to_numpy(zero_copy_only=False)
    if ok.all() and bool(np.all(index[1:] > index[:-1])):  # the usual run: nothing retried
        return table
    order = np.lexsort((np.repeat(file_times, file_rows), ok, index))  # stable: by task, failures first, then by time
    ranked = index[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ranked[1:] != ranked[:-1]
    return table.take(pa.array(order[last]))


def tidy(table: pa.Table) -> pa.Table:
    """Bookkeeping columns first, then outputs, then the failure columns; a run whose every
    task is ok has no all-empty ``error``/``traceback`` columns."""
    if table.num_rows and pc.all(pc.equal(table["status"], "ok")).as_py():
        table = table.drop_columns([c for c in FAILURE_ONLY if c in table.column_names
                                    and table[c].null_count == table.num_rows])
    names = table.column_names
    head = [c for c in BOOKKEEPING if c in names]
    tail = [c for c in FAILURE_ONLY if c in names]
    return table.select(head + [c for c in names if c not in head and c not in tail] + tail)


def ok_indices(table: pa.Table) -> np.ndarray:
    """The task indices with an ``ok`` record (sorted, each once)."""
    if table.num_rows == 0:
        return np.empty(0, dtype=np.int64)
    mask = pc.equal(table["status"], "ok")
    return np.unique(table["task_index"].filter(mask).to_numpy())


def missing(n_tasks: int, done: np.ndarray) -> list[int] | range:
    """The tasks of ``range(n_tasks)`` not in ``done``: a range when none is done (no list of
    a million indices for a fresh run), else a list of the missing ones only."""
    if len(done) == 0:
        return range(n_tasks)
    return np.setdiff1d(np.arange(n_tasks, dtype=np.int64), done, assume_unique=True).tolist()


def counts(table: pa.Table) -> tuple[int, pa.Table]:
    """(tasks done, the latest records of the tasks that are not) of a table from ``latest``."""
    if table.num_rows == 0:
        return 0, table
    ok = pc.equal(table["status"], "ok")
    done = int(pc.sum(ok).as_py() or 0)
    return done, table.filter(pc.invert(ok))
