"""The backend contract: start, run chunks, stop. Nothing else.

Backends know nothing of retries, timeouts, progress or the store layout: the driver does.
``run`` yields a :class:`ChunkResult` per chunk as each finishes; a failure (even a dead
worker) is a value, never an exception that ends the run.
"""
from __future__ import annotations

import os
from pathlib import Path
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Iterable, Iterator

from pydantic import BaseModel, ConfigDict

from hpcml.tasks.worker import ChunkResult, WorkOrder


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    name: ClassVar[str]
    # Options beyond name/workers/chunk_size, validated with the spec.
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Workers can write into the run directory (shared filesystem); else records come back.
    shares_filesystem: ClassVar[bool] = True

    def __init__(self, workers: int | None = None, options: dict[str, Any] | None = None):
        self.options = self.Options(**(options or {}))
        self._workers = workers

    @property
    def workers(self) -> int:
        return self._workers or os.cpu_count() or 1

    def start(self, job_json: str, log_dir: Path) -> None:
        """Bring workers up; ``job_json`` lets them load the job's data ahead of the first chunk.
        ``log_dir``: where the backend's own logs go (the driver names it)."""

    @abstractmethod
    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        ...

    def stop(self) -> None:
        """Release workers and anything ``start`` created."""

    def run_helped(self, orders: Iterable[WorkOrder],
                   run_here: Callable[[WorkOrder], ChunkResult]) -> Iterator[ChunkResult]:
        """``run``, where the driver may run chunks itself (``run_here``) while this backend's
        workers are still starting. Backends that cannot tell run every chunk on workers."""
        return self.run(orders)

    def may_run_in_driver(self) -> bool:
        """Whether a job of one chunk, of a model kind that allows it, may run in the driver
        process instead of on this backend's workers (one chunk gains nothing from them)."""
        return False
