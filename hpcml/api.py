"""The Python API: ``hpcml.run`` a job spec (a YAML path or a mapping), optionally on an
in-memory DataFrame, with keyword arguments that override the spec."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcml.drivers.finish import RunResult


def run(spec: str | Path | dict, *, backend: str | None = None, workers: int | None = None,
        out: str | Path | None = None, chunk_size: int | None = None, resume: bool = False,
        overwrite: bool = False, progress: bool = True, plots: bool = True, data: Any = None,
        **backend_options: Any) -> RunResult:
    """Run a job from a YAML path or a mapping; keyword arguments override the spec.

    ``data``: a pandas DataFrame or 2-D NumPy array to use instead of the spec's data source
    (stored once by content under the cache directory, see :mod:`hpcml.data.frames`).
    Under an MPI launcher with ``backend="mpi"`` every rank calls this; rank 0 gets the
    result, the other ranks None.
    """
    from hpcml.spec import load_job  # import hpcml stays light: loaded on the first run

    overrides = {"backend.name": backend, "backend.workers": workers, "backend.chunk_size": chunk_size,
                 "output": str(out) if out is not None else None}
    if data is not None:
        from hpcml.data.frames import frame_source  # import hpcml stays light: loaded on the first run

        overrides["data.source"] = frame_source(data)
    overrides.update({f"backend.{k}": v for k, v in backend_options.items()})
    job = load_job(spec, **overrides)
    from hpcml.drivers.dispatch import run_job  # import hpcml stays light: loaded on the first run

    return run_job(job, resume=resume, overwrite=overwrite, progress=progress, plots=plots)
