"""Files written whole or not at all (temp file, fsync, rename), and content digests: what a
run records of its data and code, so that a resume or a warm worker never runs with a file that
changed under it."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyarrow is imported by the functions that write Parquet, not with this module
    import pyarrow as pa

_BLOCK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's content, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def current_digest(path: str | Path) -> str:
    """``file_digest``, read once per version of the file in this process: a worker checks the
    job's code files before every chunk, and a large ``items`` pickle must not be read again
    each time. Keyed by inode, size, mtime and ctime: every write changes ctime, which no one
    can set back (unlike mtime)."""
    st = os.stat(path)
    return _digest_of(str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    return file_digest(path)


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, until: float | None = None) -> bool:
    """Write ``data`` to ``path`` all at once or not at all. ``until``: a wall-clock time
    after which the file must not appear (checked last, just before the rename); False then."""
    return _atomic_write(path, lambda fh: fh.write(data), until)


def _atomic_write(path: Path, write, until: float | None = None) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if until is not None and time.time() > until:
            Path(tmp).unlink(missing_ok=True)
            return False
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


def atomic_write_json(path: Path, obj: Any, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n").encode())


def parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet file of ``table``, in memory (the same table gives the same bytes)."""
    import pyarrow as pa  # a map's first call writes no Parquet: pyarrow is loaded when a table is
    import pyarrow.parquet as pq  # (as above)

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def atomic_write_table(path: Path, table: pa.Table) -> None:
    """The Parquet file of ``table``, written atomically and streamed to disk (a big table's
    file is never held in memory as well)."""
    import pyarrow.parquet as pq  # a map's first call writes no Parquet: pyarrow is loaded when a table is

    _atomic_write(path, lambda fh: pq.write_table(table, fh, row_group_size=1 << 16))
