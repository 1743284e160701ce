"""Files a kind saves beside one fit of the whole data (``save_whole_data_files``): per-row
results (PCA scores, k-means clusters) and tables (PCA loadings), as Parquet in that task's
artifact directory (``<run>/artifacts/<task>/``). Fits of resamples or parts save none: a
bootstrap of 10,000 replicates must not write 10,000 copies of the scores."""
from __future__ import annotations

from pathlib import Path
from hpcml.files import atomic_write_table


def write_parquet_artifact(path: Path, frame) -> None:
    """A pandas DataFrame as a Parquet file, written atomically."""
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_table(path, pa.Table.from_pandas(frame, preserve_index=False))


def read_parquet_artifact(path: Path, columns: list[str] | None = None):
    """Such a file (only ``columns``, if given) as a pandas DataFrame, as ``pandas.read_parquet``
    reads it, without importing Arrow's dataset layer (the one file is all there is to read)."""
    import pyarrow.parquet as pq  # with the first artifact read: a kind that reads none never loads it

    return pq.ParquetFile(path).read(columns=columns, use_pandas_metadata=True).to_pandas()
