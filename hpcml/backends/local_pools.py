"""The local backend's options and the worker pools a process keeps between its jobs.

Warm workers: a process that runs several jobs (an R session, a notebook, ``hpcml.map`` in a
loop) keeps its pool and each worker's caches between jobs, as loky's reusable executor does;
every pool, kept or not, is closed at exit (``procpool``). An R session's loop starts its pool
ahead of the job (``prestart``). This module imports nothing heavy (no pandas, no model kinds),
so that a pool can start before the driver has imported them.
"""
from __future__ import annotations

import os
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hpcml.backends.procpool import WorkerPool


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # forkserver: fast worker start without forking a driver that may hold threads (torch, BLAS).
    start_method: Literal["forkserver", "spawn", "fork"] = "forkserver"
    reuse_workers: bool = Field(True, description="keep the worker pool for the next job in this process")
    in_driver: bool = Field(True, description="run a job of one chunk of a built-in kind (ols, logistic, naive_bayes, "
                                              "kmeans, pca, svd; a one-task cnn fit of a built-in net), or a small "
                                              "vectorized hpcml.bootstrap, in the driver process, starting no worker")


PoolKey = tuple[int, str, str]


def pool_key(workers: int, options: LocalOptions) -> PoolKey:
    """A kept pool serves only a job started from the same directory, with as many workers and
    the same start method: its workers resolved (and cached) relative paths there."""
    return workers, options.start_method, os.getcwd()


# Pools kept for the next job of this process, and pools being started ahead of their job.
_WARM: dict[PoolKey, WorkerPool] = {}
_STARTING: dict[PoolKey, threading.Thread] = {}


def take(key: PoolKey) -> WorkerPool | None:
    """The pool kept (or being started) for this key, if it is still usable; it is no longer kept."""
    starting = _STARTING.pop(key, None)
    if starting is not None:
        starting.join()
    pool = _WARM.pop(key, None)
    if pool is not None and not pool.healthy():
        pool.close()
        pool = None
    return pool


def keep(key: PoolKey, pool: WorkerPool) -> None:
    """Keep ``pool`` for this process's next job of this key (closing any pool kept before)."""
    old = _WARM.pop(key, None)
    if old is not None:
        old.close()
    _WARM[key] = pool


def prestart(backend: dict, warm: str | None = None) -> None:
    """Start the local pool that a job with this ``backend`` section will use, in the background,
    so that its workers start (and, with ``warm="r"``, start R) while the driver still prepares
    the job: an R session's first loop then waits for its workers once, not after its own
    set-up. Anything but a local backend that keeps its workers, or options the spec would
    refuse, starts nothing: the job itself reports them."""
    if backend.get("name", "local") != "local":
        return
    try:
        options = LocalOptions(**{k: v for k, v in backend.items() if k not in ("name", "workers", "chunk_size")})
        workers = int(backend.get("workers") or os.cpu_count() or 1)
    except Exception:
        return
    key = pool_key(workers, options)
    if not options.reuse_workers or workers < 1 or key in _WARM or key in _STARTING:
        return

    def start() -> None:
        _WARM[key] = WorkerPool(workers, options.start_method, None, key[2], warm=warm)

    thread = threading.Thread(target=start, name="hpcml-prestart", daemon=True)
    _STARTING[key] = thread
    thread.start()
