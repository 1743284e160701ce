"""Files a ``fit`` task saves beside its record: per-row results (PCA scores, k-means clusters)
and tables (PCA loadings), as Parquet under the task's artifact directory
``<run>/artifacts/fit-000000/``. Other plans' tasks save none: a bootstrap of 10,000
replicates must not write 10,000 copies of the scores."""
from __future__ import annotations

from pathlib import Path

from hpcml.models.base import FitContext


def is_fit_task(ctx: FitContext) -> bool:
    """The task of a ``fit`` plan, with an artifact directory to write to."""
    return ctx.scratch is not None and str(ctx.task_id or "").startswith("fit/")


def write_parquet_artifact(path: Path, frame) -> None:
    """A pandas DataFrame as a Parquet file, written atomically."""
    import pyarrow as pa

    from hpcml.rundir.store import atomic_write_table

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_table(path, pa.Table.from_pandas(frame, preserve_index=False))
