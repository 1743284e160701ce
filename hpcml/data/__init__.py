"""The job's data: one ``load_dataset`` for every source and plan.

- ``sources``: files (CSV, Parquet, .npy; a directory or glob of Parquet files: ``parts``),
  scikit-learn sets, generators -> a validated
  :class:`~hpcml.models.base.Dataset`, loaded once per process and cached;
- ``columns`` and ``validate``: a source read and checked one column at a time;
- ``mapped``: large data written once per machine as a read-only file every process maps;
- ``lazy_rows``: for a plan whose tasks read only their own rows (``shards``), lazy rows of a file;
- ``row_blocks``: a fit over row blocks (data larger than a node): each pass's task reads its block;
- ``frames``: an in-memory DataFrame or array stored once, by content, as Parquet;
- ``images``: IDX (MNIST / Fashion-MNIST) files.
"""
from __future__ import annotations

from hpcml.data.mapped import map_stats
from hpcml.data.sources import array_columns, full_load, load_stats
from hpcml.models.base import Dataset
from hpcml.data.lazy_rows import lazy_rows as read_lazy_rows  # the module keeps its name here

__all__ = ["load_dataset", "array_columns", "load_stats", "map_stats", "Dataset"]


def load_dataset(job, *, lazy: bool = True, keep: bool = True) -> Dataset:
    """The job's data, cached per process (a worker loads it once, then reuses it).

    Large data is one read-only file per machine that every process maps (``mapped.py``).
    With ``lazy`` (workers), a plan whose tasks read only their own rows
    (``Plan.reads_rows_lazily``) gets lazy rows of a file; ``lazy=False`` (the driver's checks)
    always validates the full data. ``keep=False`` leaves it out of the cache (the driver does
    not hold it during the run). ``meta["map_stats"]`` tells how this process got its data
    sets (the ``sleep`` kind reports it).
    """
    spec = job.spec
    features, needs_target = spec.model.features, job.model.needs_target
    data = None
    if lazy and job.plan.reads_blocks:  # a pass of a fit over row blocks: each task reads its block
        from hpcml.data.row_blocks import block_dataset  # import hpcml stays light

        data = block_dataset(spec.data, features, needs_target)
        data.meta["map_stats"] = map_stats
        return data
    if lazy and job.plan.reads_rows_lazily:
        data = read_lazy_rows(spec.data, features, needs_target)
    if data is None:
        data = full_load(spec.data, features, needs_target, keep=keep)
    data.meta["map_stats"] = map_stats
    return data
