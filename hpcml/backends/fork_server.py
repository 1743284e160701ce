"""The local backend's fork server, started early.

With the ``forkserver`` start method (the default) every worker is forked from one server
process that has imported ``PRELOAD`` once. Starting that server is cheap for the driver (one
process spawned, nothing waited for), but the server's imports take about a second. A call
that will need workers, ``hpcml.map`` on a fresh process, starts it first, so those imports
run on another core while the driver imports and checks what it needs itself; the pool then
forks its workers from a server already warm. Nothing else changes: the same server, preload
and workers as when the pool starts it.

An ``hpcml.map`` without ``out`` starts it with ``MAP_PRELOAD``, without pandas and pyarrow:
its driver and its workers build no table, and the pool's first fork waits for the server's
imports, which would then take longer than the driver's own. A job of the same process that
does need them later (data, a run directory) imports them in each of its workers.
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing import forkserver

from hpcml.backends.without_main import starting_without_main

# What the fork server imports before it forks the first worker. An in-memory map's workers:
# the python kind on ``data.source: none``, records sent back by pipe.
MAP_PRELOAD = ["hpcml.backends.procpool", "hpcml.tasks.worker", "hpcml.data", "hpcml.spec",
               "hpcml.models.python_function"]
# Any other job's: pandas and pyarrow are named because hpcml's modules import them only where
# a table is built, and every worker of a job with data or a run directory needs them
# (imported once here, not once per worker).
PRELOAD = [*MAP_PRELOAD, "pandas", "pyarrow.parquet"]


def start_fork_server(preload: list[str] = PRELOAD) -> None:
    """The fork server of this process, started if it is not running (with ``preload``; a
    running one keeps its own); returns at once."""
    mp.get_context("forkserver").set_forkserver_preload(preload)
    with starting_without_main():  # the server never runs the user's script again
        forkserver.ensure_running()
