"""hpcml: write a parallel analysis once; run it on a laptop, Dask, Slurm/PBS, MPI or Spark.

    >>> import hpcml
    >>> result = hpcml.run("bootstrap.yaml", backend="local", workers=2)
    >>> result.results      # pandas DataFrame, one row per task
    >>> result.summary      # dict: SE, percentile and BCa intervals, ...
    >>> hpcml.map(simulate, range(500), backend="dask")        # your own function, in order
    >>> hpcml.bootstrap(np.median, x, replicates=2000).bca     # any statistic, any backend

Names are imported on first use, so ``import hpcml`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "run": "hpcml.api",
    "map": "hpcml.user_code",
    "bootstrap": "hpcml.user_code",
    "BootstrapResult": "hpcml.user_code",
    "RunFailed": "hpcml.errors",
    "RunResult": "hpcml.drivers.finish",
    "load_job": "hpcml.spec",
    "Job": "hpcml.spec",
    "json_schema": "hpcml.spec",
    "SpecError": "hpcml.errors",
    "register_model": "hpcml.models.base",
    "ModelKind": "hpcml.models.base",
    "ModelParams": "hpcml.models.base",
    "register_backend": "hpcml.backends",
    "register_plan": "hpcml.plans",
    "Plan": "hpcml.plans",
    "PlanOptions": "hpcml.plans",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpcml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
