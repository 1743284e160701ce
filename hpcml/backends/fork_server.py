"""The local backend's fork server, started early.

With the ``forkserver`` start method (the default) every worker is forked from one server
process that has imported ``PRELOAD`` once. Starting that server is cheap for the driver (one
process spawned, nothing waited for), but the server's imports take about a second. A call
that will need workers, ``hpcml.map`` on a fresh process, starts it first, so those imports
run on another core while the driver imports and checks what it needs itself; the pool then
forks its workers from a server already warm. Nothing else changes: the same server, preload
and workers as when the pool starts it.
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing import forkserver

from hpcml.backends.without_main import starting_without_main

# What the fork server imports before it forks the first worker (the python kind: hpcml.map's).
PRELOAD = ["hpcml.backends.procpool", "hpcml.tasks.worker", "hpcml.data", "hpcml.spec", "hpcml.models.python_function"]


def start_fork_server() -> None:
    """The fork server of this process, started if it is not running; returns at once."""
    mp.get_context("forkserver").set_forkserver_preload(PRELOAD)
    with starting_without_main():  # the server never runs the user's script again
        forkserver.ensure_running()
