"""Where hpcml keeps what it stores once and reuses: in-memory tables written as Parquet
(``frames/``), user inputs, and the memory-mapped data sets every worker shares (``mapped/``)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$HPCML_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpcml``, else ``~/.cache/hpcml``."""
    if os.environ.get("HPCML_CACHE_DIR"):
        return Path(os.environ["HPCML_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpcml"
