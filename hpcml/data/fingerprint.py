"""A fingerprint of the job's data files, so ``--resume`` never mixes fits of two data sets.

A run records, per file of its data source, the size, the modification time and a SHA-256 of
the content (``data.json`` in the run directory). A resume compares: a different size or
content is refused, naming the file; a file only touched (same size and content, new mtime)
is the same data, and one whose content changed is refused even with its size and mtime
restored (the content is read again at every resume). An in-memory frame is stored under a name made from its content
(``frames.py``), so its fingerprint is that of its file. Generated and scikit-learn sets are
decided by the spec itself and have no files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcml.data.parts import is_file_set, set_files
from hpcml.errors import SpecError
from hpcml.files import file_digest

def source_files(source: str) -> list[Path]:
    """The files a data source reads (empty for generated data)."""
    if source == "none" or source.startswith(("sklearn:", "synthetic:")):
        return []
    if source.startswith("idx:"):
        root = Path(source[4:])
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    if is_file_set(source):  # what a load reads (Spark also reads a directory of CSV parts)
        return set_files(source, suffixes=(".parquet", ".csv"))
    path = Path(source)
    return [path] if path.is_file() else []


def fingerprint(source: str) -> dict[str, Any]:
    files = {}
    for p in source_files(source):
        st = p.stat()
        files[str(p)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_digest(p)}
    return {"source": source, "files": files}


def check_same_data(old: dict[str, Any], source: str) -> None:
    """SpecError naming the first file whose content differs from the run's record."""
    # A run recorded before paths were made absolute names its files as given: as the driver reads them.
    old_files: dict[str, dict] = {os.path.abspath(k): v for k, v in old.get("files", {}).items()}
    now = [str(p) for p in source_files(source)]
    gone, new = sorted(set(old_files) - set(now)), sorted(set(now) - set(old_files))
    if gone:
        raise SpecError.one("data.source", gone[0], "this file of the run's data is gone; a resume needs the same "
                            "data (start a new run with another --out)")
    if new:
        raise SpecError.one("data.source", new[0], "this file was not part of the run's data; a resume needs the "
                            "same data (start a new run with another --out)")
    for name in now:
        # Always the content: a size and a modification time can both be restored after an
        # edit in place (cp -p, touch -r), so they never prove a file unchanged.
        rec, st = old_files[name], Path(name).stat()
        if st.st_size != rec["size"] or file_digest(Path(name)) != rec["sha256"]:
            raise SpecError.one("data.source", name, "the data file changed since the run started; a resume would mix "
                                "results of two data sets: start a new run with another --out (or restore the file)")
