"""A run's records as Arrow columns: the latest record of each task, which tasks have an ``ok``
record, and how many tasks are done, failed or missing.

A run may hold millions of tasks, so nothing here builds a Python object per task: records
stay in Arrow buffers and NumPy arrays until a caller asks for a pandas frame.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:  # Arrow is imported by the functions that use it: a map's driver needs none
    import pyarrow as pa

from hpcml.rundir.columns import BOOKKEEPING, FAILURE_ONLY, REQUIRED, param_columns

# Schema metadata of results.parquet: how many chunk files it was consolidated from.
CHUNK_COUNT_KEY = b"hpcml.chunk_files"


def read_chunk_table(path: Path, columns: Iterable[str] | None = None) -> pa.Table:
    """One chunk file (only ``columns`` it has, if given); raises if it is not a chunk of records."""
    import pyarrow as pa  # loaded with the first table: a map's driver reads none
    import pyarrow.parquet as pq  # (as above)

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
    import pyarrow as pa  # loaded with the first table: a map's driver reads none

    return pa.concat_tables(tables, promote_options="permissive")


def empty() -> pa.Table:
    import pyarrow as pa  # loaded with the first table: a map's driver reads none

    return pa.table({"task_id": pa.array([], pa.string()), "task_index": pa.array([], pa.int64()),
                     "status": pa.array([], pa.string()), "attempt": pa.array([], pa.int64())})


def latest(table: pa.Table, file_rows: np.ndarray, file_times: np.ndarray) -> pa.Table:
    """One row per task, in task order: an ``ok`` record if any exists, else its latest failure
    (``file_rows``, ``file_times``: the row count and modification time of each file the rows
    came from, in order; the later file wins)."""
    import pyarrow as pa  # loaded with the first table: a map's driver reads none
    import pyarrow.compute as pc  # (as above)

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
    task is ok has no all-empty ``error``/``traceback`` columns; a sweep's mapping one column
    per key (``split_mapping_params``)."""
    import pyarrow.compute as pc  # loaded with the first table: a map's driver reads none

    table = split_mapping_params(table)
    if table.num_rows and pc.all(pc.equal(table["status"], "ok")).as_py():
        table = table.drop_columns([c for c in FAILURE_ONLY if c in table.column_names
                                    and table[c].null_count == table.num_rows])
    names = table.column_names
    head = [c for c in BOOKKEEPING if c in names]
    tail = [c for c in FAILURE_ONLY if c in names]
    return table.select(head + [c for c in names if c not in head and c not in tail] + tail)


def split_mapping_params(table: pa.Table) -> pa.Table:
    """Chunk files written before a sweep recorded a mapping one column per key hold it as
    JSON text in one column (``param_arch_params``: '{"c1": 8}'): such a column becomes the
    columns a sweep writes now (``param_arch_params.c1``), merged with those of chunk files
    written since, so a run resumed across the change has one column per key."""
    import pyarrow as pa  # loaded with the first table: a map's driver reads none
    import pyarrow.compute as pc  # (as above)

    for name in [c for c in table.column_names if c.startswith("param_")]:
        column = table[name]
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        if not pc.any(pc.starts_with(column, "{")).as_py():  # (no Python string per task unless so)
            continue
        try:
            values = [None if t is None else json.loads(t) for t in column.to_pylist()]
        except ValueError:
            continue  # text that is no JSON mapping: a string parameter as it is
        if not all(v is None or isinstance(v, dict) for v in values):
            continue
        rows = [{} if v is None else param_columns({name[len("param_"):]: v}) for v in values]
        at = table.column_names.index(name)
        table = table.remove_column(at)
        for key in dict.fromkeys(k for row in rows for k in row):
            new = pa.array([row.get(key) for row in rows])
            if key in table.column_names:  # written since by the same sweep: theirs where set
                old = table[key]
                try:
                    new = pc.coalesce(old, new.cast(old.type)) if old.type != pa.null() else new
                except pa.ArrowException:
                    new = pc.coalesce(old.cast(pa.string()), new.cast(pa.string()))
                table = table.set_column(table.column_names.index(key), key, new)
            else:
                table = table.add_column(at, key, new)
                at += 1
    return table


def with_int_params(frame, schema: pa.Schema):
    """``frame`` (the table of ``schema`` in pandas) with each integer ``param_`` column that
    has empty cells (a key some grid points' mappings lack) as pandas' nullable Int64, so a
    summary names 8, not 8.0, as results.parquet holds it. (Not for the frames users get:
    pandas reads such a Parquet column as float, and R's reticulate cannot convert Int64.)"""
    import pyarrow as pa  # loaded with the first table: a map's driver reads none

    for field in schema:
        if field.name.startswith("param_") and pa.types.is_integer(field.type) and field.name in frame \
                and frame[field.name].dtype.kind == "f":
            frame[field.name] = frame[field.name].astype("Int64")
    return frame


def ok_indices(table: pa.Table) -> np.ndarray:
    """The task indices with an ``ok`` record (sorted, each once)."""
    import pyarrow.compute as pc  # loaded with the first table: a map's driver reads none

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
    import pyarrow.compute as pc  # loaded with the first table: a map's driver reads none

    if table.num_rows == 0:
        return 0, table
    ok = pc.equal(table["status"], "ok")
    done = int(pc.sum(ok).as_py() or 0)
    return done, table.filter(pc.invert(ok))
