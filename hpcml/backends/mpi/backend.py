"""The ``mpi`` backend: rank 0's side of dynamic mode, driven by the one driver loop.

The MPI session (every rank's communicators and heartbeats) is given by the MPI driver,
which starts every rank; alone (no launcher), the backend makes a one-rank session itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from hpcml.backends.base import Backend
from hpcml.backends.mpi.liveness import mpi
from hpcml.backends.mpi.options import MPIOptions
from hpcml.backends.mpi.scheduler import Scheduler
from hpcml.backends.mpi.session import Session
from hpcml.errors import SpecError
from hpcml.tasks.worker import ChunkResult, WorkOrder


class MPIBackend(Backend):
    """Dynamic master/worker scheduling, driven by the driver on rank 0."""

    name = "mpi"
    Options = MPIOptions

    def __init__(self, workers=None, options=None, session: Session | None = None):
        super().__init__(workers, options)
        self._session = session  # every rank's, from the MPI driver
        self._owned = False
        self._scheduler: Scheduler | None = None

    @property
    def workers(self) -> int:
        return self._session.size if self._session else 1

    def start(self, job_json: str, log_dir: Path) -> None:
        if self._session is None:
            if mpi().COMM_WORLD.Get_size() > 1:
                raise SpecError.one("backend.name", "mpi", "under an MPI launcher start the run on every rank with "
                                    "`hpcml run --backend mpi`, `python -m hpcml.pack` or `scripts/pack_tasks.py`")
            self._session, self._owned = Session(self.options), True  # one process: rank 0 does everything
        self._scheduler = Scheduler(self._session, job_json)

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        assert self._scheduler is not None, "start() first"
        yield from self._scheduler.run(list(orders))

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None
        if self._owned and self._session is not None:
            self._session.close()
            self._session, self._owned = None, False
