"""Local processes: a process pool on this machine (the laptop backend).

Warm workers: a process that runs several jobs (an R session, a notebook, ``hpcml.map`` in a
loop) keeps its pool and each worker's caches between jobs, as loky's reusable executor
does, and shuts the pool down when it exits. ``reuse_workers: false`` starts a fresh pool.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from hpcml.tasks.worker import ChunkResult, WorkOrder
from hpcml.backends.base import Backend
from hpcml.backends.procpool import WorkerPool


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # forkserver: fast worker start without forking a driver that may hold threads (torch, BLAS).
    start_method: Literal["forkserver", "spawn", "fork"] = "forkserver"
    reuse_workers: bool = Field(True, description="keep the worker pool for the next job in this process")
    in_driver: bool = Field(True, description="run a job of one chunk of a built-in kind (ols, logistic, naive_bayes, "
                                              "kmeans, pca, svd), or a small vectorized hpcml.bootstrap, in the driver process, "
                                              "starting no worker")


log = logging.getLogger("hpcml")


# Pools kept for the next job of this process, by (workers, start method, directory); every
# pool, kept or not, is closed at exit (``procpool``).
_WARM: dict[tuple[int, str, str], WorkerPool] = {}


class LocalBackend(Backend):
    name = "local"
    Options = LocalOptions

    def __init__(self, workers=None, options=None):
        super().__init__(workers, options)
        self._pool: WorkerPool | None = None
        self._job_json: str | None = None
        self._clean = False  # the last run() ended with nothing left running in the pool

    def start(self, job_json: str, log_dir: Path) -> None:
        self._job_json = job_json
        warm = _WARM.pop(self._key(), None) if self.options.reuse_workers else None
        if warm is not None and not warm.healthy():
            warm.close()
            warm = None
        self._pool = warm if warm is not None else self._new_pool()
        self._clean = False

    def may_run_in_driver(self) -> bool:
        return self.options.in_driver

    def _method(self) -> str:
        # Any driver, a script read from stdin too: workers never import its __main__
        # (backends/without_main.py).
        return self.options.start_method

    def _key(self) -> tuple[int, str, str]:
        # A warm pool serves only a job started from the same directory: its workers resolved
        # (and cached) relative paths there.
        return self.workers, self._method(), os.getcwd()

    def _new_pool(self) -> WorkerPool:
        return WorkerPool(self.workers, self._method(), self._job_json, os.getcwd())

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        assert self._pool is not None, "start() first"
        self._pool.submit(orders)
        yield from self._collect()

    def run_helped(self, orders: Iterable[WorkOrder],
                   run_here: Callable[[WorkOrder], ChunkResult]) -> Iterator[ChunkResult]:
        """A fresh pool's workers take a second or more to start (each a process that imports
        the libraries and loads the data). They get one chunk each at once; meanwhile the
        driver runs chunks itself, one at a time from the end of the list, until a worker
        hands a chunk back, and the workers then get the rest. A small job is done before the
        workers are up, and a long chunk never waits behind the driver's. Who runs a chunk
        does not change its numbers."""
        assert self._pool is not None, "start() first"
        if self._pool.started():
            yield from self.run(orders)
            return
        queue = deque(orders)
        self._clean = False
        self._pool.submit([queue.popleft() for _ in range(min(self.workers, len(queue)))])
        while queue:
            back = self._pool.results(timeout=0)
            if back:
                yield from back
                break
            yield run_here(queue.pop())
        self._pool.submit(queue)
        yield from self._collect()

    def _collect(self) -> Iterator[ChunkResult]:
        self._clean = False
        while self._pool.pending:
            yield from self._pool.results()
        self._clean = True

    def stop(self) -> None:
        if self._pool is None:
            return
        if self.options.reuse_workers and self._clean:
            old = _WARM.pop(self._key(), None)
            if old is not None:
                old.close()
            _WARM[self._key()] = self._pool  # kept warm for this process's next job
        else:
            self._pool.close()
        self._pool = None
