"""The BLAS/OpenMP thread pools of this process, scanned once and scanned again only after a
module has been imported.

``threadpool_limits`` rescans every loaded library on each call (over a millisecond each: a
chunk's worth of a small task's bookkeeping, twice in a small bootstrap, once for its tasks
and once for its summary). A native library comes into a process with the import of the module
that needs it (a model kind, a data reader, the user's statistic), so the scan is kept until
``sys.modules`` grows: a chunk run after the model kind and the data are loaded sees the pools
they brought in, as a fresh scan would.
"""
from __future__ import annotations

import functools
import sys


def thread_pools():
    """A ``threadpoolctl.ThreadpoolController`` of the libraries loaded now."""
    return _scanned(len(sys.modules))


@functools.lru_cache(maxsize=1)
def _scanned(modules: int):
    from threadpoolctl import ThreadpoolController  # a worker that limits no pool never loads it

    return ThreadpoolController()
