"""The job's data: one ``load_dataset`` for every source and plan.

- ``sources``: files (CSV, Parquet, .npy; a directory or glob of Parquet files: ``parts``),
  scikit-learn sets, generators -> a validated
  :class:`~hpcml.models.base.Dataset`, loaded once per process and cached;
- ``columns`` and ``validate``: a source read and checked one column at a time;
- ``mapped``: large data written once per machine as a read-only file every process maps;
- ``shards``: for a ``shards`` plan on a file, lazy rows (a task reads only its own);
- ``frames``: an in-memory DataFrame or array stored once, by content, as Parquet;
- ``images``: IDX (MNIST / Fashion-MNIST) files.
"""
from __future__ import annotations

from hpcml.data.mapped import map_stats
from hpcml.data.sources import array_columns, full_load, load_stats
from hpcml.models.base import Dataset

__all__ = ["load_dataset", "array_columns", "load_stats", "map_stats", "Dataset"]


def load_dataset(job, *, lazy: bool = True, keep: bool = True) -> Dataset:
    """The job's data, cached per process (a worker loads it once, then reuses it).

    Large data is one read-only file per machine that every process maps (``mapped.py``).
    With ``lazy`` (workers), a ``shards`` plan on a file gets lazy rows, so each task reads
    only its own; ``lazy=False`` (the driver's checks) always validates the full data.
    ``keep=False`` leaves it out of the cache (the driver does not hold it during the run).
    """
    spec = job.spec
    features, needs_target = spec.model.features, job.model.needs_target
    if lazy and job.plan_kind == "shards":
        from hpcml.data.lazy_rows import lazy_rows

        rows = lazy_rows(spec.data, features, needs_target)
        if rows is not None:
            return rows
    return full_load(spec.data, features, needs_target, keep=keep)
