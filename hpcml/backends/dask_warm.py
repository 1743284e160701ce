"""Dask LocalClusters kept warm between the jobs of one process (``reuse_workers: true``).

Starting a LocalCluster costs seconds (a scheduler, worker processes that import the
libraries); a session that runs loop after loop (the R package's foreach loops, hpcml_lapply)
pays it once, as the local backend's pool does. A kept cluster serves only a job asking for
the same workers from the same working directory, and only while every worker is alive; it is
closed when the process exits (``close_warm``; the R package calls it when R quits, since
reticulate's Python never exits on its own).
"""
from __future__ import annotations

import atexit
import logging
import os

log = logging.getLogger("hpcml.dask")

# (workers, local directory, dashboard, working directory) -> (client, cluster)
_WARM: dict[tuple, tuple] = {}


def warm_key(workers: int, local_directory: str | None, dashboard: bool) -> tuple:
    return workers, local_directory, dashboard, os.getcwd()


def take_warm(key: tuple):
    """A kept (client, cluster) for ``key`` whose workers are all alive, or None."""
    kept = _WARM.pop(key, None)
    if kept is None:
        return None
    client, cluster = kept
    try:
        alive = client.status == "running" and len(client.scheduler_info(n_workers=-1)["workers"]) == key[0]
    except Exception:
        alive = False
    if alive:
        return kept
    _close(kept)
    return None


def keep_warm(key: tuple, client, cluster) -> None:
    """Keep (client, cluster) for the next job of ``key`` (closing any kept before it)."""
    old = _WARM.pop(key, None)
    if old is not None:
        _close(old)
    _WARM[key] = (client, cluster)


def _close(kept) -> None:
    """Close a kept cluster. Never raises: distributed's own close can (a KeyError from its
    worker-status watcher for a worker that left), and a run that replaces a cluster which
    lost a worker, or the interpreter's exit, must not fail for it."""
    client, cluster = kept
    try:
        try:
            client.close(timeout=30)
        finally:
            cluster.close(timeout=60)
    except Exception as err:
        log.debug("closing a warm dask cluster: %s", err)


def close_warm() -> None:
    """Close every kept cluster (at exit)."""
    while _WARM:
        _, kept = _WARM.popitem()
        _close(kept)


atexit.register(close_warm)
