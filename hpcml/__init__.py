"""hpcml: write a parallel analysis once; run it on a laptop, Dask, Slurm/PBS, MPI or Spark.

    >>> import hpcml
    >>> result = hpcml.run("bootstrap.yaml", backend="local", workers=2)
    >>> result.results      # pandas DataFrame, one row per task
    >>> result.summary      # dict: SE, percentile and BCa intervals, ...
"""
from hpcml.errors import RunFailed, SpecError
from hpcml.runner import RunResult, run
from hpcml.spec import Job, json_schema, load_job

__all__ = ["run", "RunResult", "load_job", "Job", "json_schema", "SpecError", "RunFailed", "__version__"]
__version__ = "0.1.0"
