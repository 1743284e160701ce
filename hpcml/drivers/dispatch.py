"""Which driver runs a job: the one decision every front end (``hpcml run``, ``hpcml.run``,
``python -m hpcml.pack``) takes here, so the same spec goes to the same driver from each.

- ``engine: spark``: one distributed MLlib fit (``spark_engine``), whatever the backend
  runs tasks on; but not with ``backend: mpi``, whose ranks run independent tasks (refused);
- ``backend: mpi``: every rank of the MPI launch (``mpi``; static or dynamic mode; a fit over
  row blocks in dynamic mode);
- a ``fit`` or ``bootstrap`` of data larger than ``data.blocks_above_mb``: passes over row
  blocks (``over_blocks``);
- anything else: this process drives the backend (``run``).
"""
from __future__ import annotations

from hpcml.errors import SpecError
from hpcml.drivers import mpi, row_blocks, run, spark_engine

DRIVERS = ("spark", "mpi", "over_blocks", "run")


def driver_for(job) -> str:
    """The name of the driver that runs ``job`` (one of ``DRIVERS``), or SpecError."""
    spec = job.spec
    if spec.engine == "spark":
        if spec.backend.name == "mpi":
            raise SpecError.one("engine", "spark", "backend mpi packs independent tasks onto MPI ranks; "
                                "engine: spark runs one Spark fit: use backend spark (or engine: hpcml)")
        return "spark"
    if spec.backend.name == "mpi":
        return "mpi"
    return "over_blocks" if row_blocks.uses_row_blocks(job) else "run"


def run_job(job, *, resume: bool = False, overwrite: bool = False, progress: bool = True, plots: bool = True):
    """Run ``job`` with its driver: the RunResult (None on an MPI rank other than 0)."""
    driver = driver_for(job)
    if driver == "spark":
        return spark_engine.execute_mllib(job, resume=resume, overwrite=overwrite, progress=progress)
    if driver == "mpi":
        return mpi.run_under_mpi(job, resume=resume, overwrite=overwrite, progress=progress)
    if driver == "over_blocks":
        return row_blocks.execute_over_row_blocks(job, resume=resume, overwrite=overwrite, progress=progress,
                                                  plots=plots)
    return run.execute(job, resume=resume, overwrite=overwrite, progress=progress, plots=plots)
