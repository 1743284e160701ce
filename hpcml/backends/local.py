"""Local processes: a process pool on this machine (the laptop backend).

Warm workers: a process that runs several jobs (an R session, a notebook, ``hpcml.map`` in a
loop) keeps its pool and each worker's caches between jobs, as loky's reusable executor
does, and shuts the pool down when it exits. ``reuse_workers: false`` starts a fresh pool.
"""
from __future__ import annotations

import atexit
from collections import deque
import logging
import multiprocessing as mp
import os
import sys
from pathlib import Path
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from hpcml.tasks.worker import ChunkResult, WorkOrder, execute_chunk, warm_cache
from hpcml.backends.base import Backend
from hpcml.backends.lifeline import die_with, ignore_interrupts


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # forkserver: fast worker start without forking a driver that may hold threads (torch, BLAS).
    start_method: Literal["forkserver", "spawn", "fork"] = "forkserver"
    reuse_workers: bool = Field(True, description="keep the worker pool for the next job in this process")
    in_driver: bool = Field(True, description="run a job of one chunk of a built-in kind (ols, logistic, kmeans, "
                                              "pca, svd) in the driver process, starting no worker")


log = logging.getLogger("hpcml")


def _main_reloadable() -> bool:
    """Whether forkserver/spawn workers can re-import the driver's ``__main__``.

    A driver script read from standard input has ``__file__ == '<stdin>'``: every spawned
    worker would die re-running it, so such drivers get forked workers instead.
    """
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


def _healthy(pool: ProcessPoolExecutor) -> bool:
    """Whether a kept pool still answers (a worker may have died since its last job)."""
    try:
        pool.submit(os.getpid).result(timeout=60)
        return True
    except Exception:
        pool.shutdown(wait=False, cancel_futures=True)
        return False


# Pools kept for the next job of this process, by (workers, start method).
_WARM: dict[tuple[int, str, str], ProcessPoolExecutor] = {}


def _shutdown_warm() -> None:
    for pool in _WARM.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _WARM.clear()


atexit.register(_shutdown_warm)


def start_worker(job_json: str, driver_pid: int, driver_dir: str) -> None:
    """Pool initializer: die with the driver, leave Ctrl-C to it, work in the driver's
    directory (relative data, code and output paths mean what they mean to the driver),
    load the data once."""
    die_with(driver_pid)
    ignore_interrupts()
    os.chdir(driver_dir)
    warm_cache(job_json)


class LocalBackend(Backend):
    name = "local"
    Options = LocalOptions

    def __init__(self, workers=None, options=None):
        super().__init__(workers, options)
        self._pool: ProcessPoolExecutor | None = None
        self._job_json: str | None = None
        self._clean = False  # the last run() ended with nothing left running in the pool
        self._starting = False  # the pool is new and none of its workers has answered yet

    def start(self, job_json: str, log_dir: Path) -> None:
        self._job_json = job_json
        warm = _WARM.pop(self._key(), None) if self.options.reuse_workers else None
        self._starting = warm is None or not _healthy(warm)  # a fresh pool: its workers are still starting
        self._pool = self._new_pool() if self._starting else warm
        self._clean = False

    def may_run_in_driver(self) -> bool:
        return self.options.in_driver

    def _method(self) -> str:
        method = self.options.start_method
        if method != "fork" and not _main_reloadable():
            log.info("the driver's __main__ cannot be re-imported (read from stdin); using forked workers")
            method = "fork"
        return method

    def _key(self) -> tuple[int, str, str]:
        # A warm pool serves only a job started from the same directory: its workers resolved
        # (and cached) relative paths there.
        return self.workers, self._method(), os.getcwd()

    def _new_pool(self) -> ProcessPoolExecutor:
        method = self._method()
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["hpcml.tasks.worker", "hpcml.data", "hpcml.spec"])
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=start_worker,
                                   initargs=(self._job_json, os.getpid(), os.getcwd()))

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        assert self._pool is not None, "start() first"
        yield from self._collect(self._submit(orders))

    def run_helped(self, orders: Iterable[WorkOrder],
                   run_here: Callable[[WorkOrder], ChunkResult]) -> Iterator[ChunkResult]:
        """A fresh pool's workers take a second or more to start (each a process that imports
        the libraries and loads the data). They get one chunk each at once; meanwhile the
        driver runs chunks itself, one at a time from the end of the list, until a worker
        hands a chunk back, and the workers then get the rest. A small job is done before the
        workers are up, and a long chunk never waits behind the driver's. Who runs a chunk
        does not change its numbers."""
        assert self._pool is not None, "start() first"
        if not self._starting:
            yield from self.run(orders)
            return
        queue = deque(orders)
        pending = self._submit([queue.popleft() for _ in range(min(self.workers, len(queue)))])
        self._clean = False
        while queue and not any(future.done() for future in pending):
            yield run_here(queue.pop())
        self._starting = False
        pending.update(self._submit(queue))
        yield from self._collect(pending)

    def _submit(self, orders: Iterable[WorkOrder]) -> dict:
        return {self._pool.submit(execute_chunk, order): order for order in orders}

    def _collect(self, pending: dict) -> Iterator[ChunkResult]:
        self._clean = False
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                order = pending.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    # A worker died (killed, segfault, out of memory). The pool cannot tell
                    # which chunk it held, so every unfinished chunk is reported lost and a
                    # fresh pool serves later rounds (the driver's retries rerun them).
                    yield ChunkResult.lost(order.chunk, "worker process died")
                    for other in pending.values():
                        yield ChunkResult.lost(other.chunk, "worker process died")
                    pending.clear()
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
                    break
                except Exception as err:  # unpicklable result and the like
                    yield ChunkResult.lost(order.chunk, f"{type(err).__name__}: {err}")
        self._clean = True

    def stop(self) -> None:
        if self._pool is None:
            return
        if self.options.reuse_workers and self._clean:
            old = _WARM.pop(self._key(), None)
            if old is not None:
                old.shutdown(wait=False, cancel_futures=True)
            _WARM[self._key()] = self._pool  # kept warm for this process's next job
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
